"""The every-minute micro-batch update: champion + new events -> gated candidate.

Steps: load the champion -> refresh the store and extract the batch after the champion's
watermark -> grow the item tower for new items -> score the champion (test) -> fine-tune a
copy on the new events plus replay (train) -> score the candidate -> register it -> gate ->
move the aliases -> apply retention.

Crash safety comes from where the watermark lives: it is a tag of the champion version. A run
that dies anywhere before the alias move leaves the champion, and so the watermark, as they
were; the next run repeats the batch from the same champion, so no event is skipped and none
enters the champion's lineage twice. An orphaned candidate is only pruned by retention.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
import torch

from recsys import privacy
from recsys.config import GateConfig, Paths, RetentionConfig, TrackingConfig, UpdateConfig
from recsys.data.features import open_store
from recsys.data.microbatch import BatchPlan, FineTuneData, MicroBatch, extract, plan_batch, refresh
from recsys.faults import crash_point
from recsys.models import io
from recsys.registry import tracking
from recsys.registry.registry import Registry, now_iso
from recsys.timeutil import LapClock, seconds_since, utc_now
from recsys.training.finetune import device_for, fine_tune
from recsys.training.gate import SetScore, Verdict, compare, figures_of, sanity, score_set

log = logging.getLogger(__name__)


class IncompatibleStore(RuntimeError):
    """The feature store no longer matches the champion (rebuilt ids, other text encoder)."""


@dataclass
class UpdateResult:
    status: str  # no_champion | no_events | waiting | promoted | rejected | stale
    reason: str
    champion: str | None  # champion version when the update started
    version: str | None = None  # the registered candidate
    plan: BatchPlan | None = None
    figures: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model_age_s: float | None = None
    run_id: str | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"

    def summary(self) -> str:
        parts = [f"update {self.status}: {self.reason}"]
        if self.plan and not self.plan.empty:
            p = self.plan
            parts.append(f"batch seq ({p.low}, {p.cut}] trained, ({p.cut}, {p.high}] held out: "
                         f"{p.train_events} + {p.holdout_events} events")
        if self.version:
            parts.append(f"candidate version {self.version} (parent {self.champion})")
        if self.timings:
            parts.append("time " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        if self.model_age_s is not None:
            parts.append(f"champion model age {self.model_age_s:.0f}s")
        return "; ".join(parts)

    def markdown(self) -> str:
        """The decision and its figures, champion against challenger, for run summaries."""
        lines = [f"**{self.status}**: {self.reason}", ""]
        if self.version:
            lines.append(f"candidate version {self.version}, parent (champion) {self.champion}")
        sets = sorted({k.split(".")[0] for k in self.figures if k.count(".") >= 2})
        if sets:
            lines += ["", "| set | champion NDCG@10 | challenger NDCG@10 | champion HR@10 | "
                      "challenger HR@10 | cases |", "|---|---|---|---|---|---|"]
        for name in sets:
            cells = [self._figure(name, role, metric) for metric in ("ndcg@10", "hr@10")
                     for role in ("champion", "challenger")]
            n = self.figures.get(f"{name}.champion.n", 0)
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {n:.0f} |")
        if self.timings:
            lines += ["", "time: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())]
        if self.model_age_s is not None:
            lines.append(f"champion model age: {self.model_age_s:,.0f} s")
        return "\n".join(lines)

    def _figure(self, name: str, role: str, metric: str) -> str:
        v = self.figures.get(f"{name}.{role}.{metric}")
        return "" if v is None else f"{v:.4f}"

    def as_record(self) -> dict:
        out = asdict(self)
        out["at"] = now_iso()
        return out


def record(paths: Paths, result: UpdateResult) -> None:
    """Append the outcome to ``updates.jsonl``: every run, even one that changed nothing."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / "updates.jsonl", "a") as fh:
        fh.write(json.dumps(result.as_record(), default=str) + "\n")


def _scores(net, batch: MicroBatch, guard, device) -> dict[str, SetScore]:
    return {"holdout": score_set(net, batch.holdout, device),
            "guard": score_set(net, guard, device)}


def update(paths: Paths | None = None, cfg: UpdateConfig | None = None,
           gate_cfg: GateConfig | None = None, retention: RetentionConfig | None = None,
           tracking_cfg: TrackingConfig | None = None) -> UpdateResult:
    paths, cfg = paths or Paths(), cfg or UpdateConfig()
    gate_cfg, retention = gate_cfg or GateConfig(), retention or RetentionConfig()
    tracking_cfg = tracking_cfg or TrackingConfig()
    clock = LapClock()
    registry = Registry(paths, tracking_cfg)
    champion = registry.champion()
    if champion is None:
        result = UpdateResult("no_champion", "no champion yet: run a full retrain first", None)
        record(paths, result)
        return result
    with registry.model_folder(champion.version) as folder:
        net, item_ids, meta = io.load(folder)
        guard = io.load_guard(folder)
    clock.lap("load")

    data_read_at = utc_now()
    with open_store(paths) as con:
        refresh(con, paths)
        plan = plan_batch(con, champion.watermark, cfg)
        batch = None if plan.empty else extract(
            con, plan, cfg, net.cfg.max_len, guard.user_idx if guard is not None else None)
    clock.lap("extract")
    crash_point("update.after_extract")
    age = seconds_since(champion.newest_event_ts)
    if batch is None:
        result = UpdateResult("no_events", f"no events after watermark {champion.watermark}",
                              champion.version, plan=plan, timings=clock.timings,
                              model_age_s=age)
        record(paths, result)
        log.info(result.summary())
        return result
    _check_compatible(batch, item_ids, meta)

    device = device_for(cfg.accelerator)
    base = net  # the loaded champion is ours alone: grown in place, copied once for training
    base.items.grow(batch.n_items, torch.from_numpy(batch.text) if batch.text.shape[1] else None)
    base.to(device).eval()
    before = _scores(base, batch, guard, device)
    clock.lap("eval")
    if not plan.trainable or plan.train_events < cfg.min_events:
        reason = (f"only {plan.train_events} events to train on (min_events {cfg.min_events})"
                  if plan.trainable else
                  f"one landing part ({plan.holdout_events} events) after watermark "
                  f"{plan.low}: held out to test on; it is trained on by the next update")
        figures = {f"{k}.champion.{m}": v for k, s in before.items()
                   for m, v in s.as_dict("").items()}
        result = UpdateResult("waiting", reason, champion.version, plan=plan, figures=figures,
                              timings=clock.timings, model_age_s=age)
        record(paths, result)
        log.info(result.summary())
        return result

    candidate = copy.deepcopy(base).to(device)
    counts = torch.from_numpy(batch.item_counts).float()
    report = fine_tune(candidate, FineTuneData.concat(batch.new, batch.replay), cfg, counts)
    clock.lap("train")
    problem = sanity(candidate, report.finite, device)
    if problem:  # a broken model is not even scored
        verdict = Verdict(False, problem, figures_of(before, "champion"))
    else:
        verdict = compare(before, _scores(candidate, batch, guard, device), gate_cfg)
    clock.lap("eval")

    result = UpdateResult("rejected", verdict.reason, champion.version, plan=plan,
                          figures={**verdict.figures, **report.as_dict(),
                                   "new_items": float(batch.n_items - len(item_ids))})
    _register(result, candidate.cpu(), batch, champion, verdict, cfg, tracking_cfg, paths,
              data_read_at,
              registry, guard, clock)
    result.status = "rejected"
    if verdict.promote:
        moved = registry.promote(result.version, verdict.reason,
                                 expected_champion=champion.version)
        result.status = "promoted" if moved else "stale"
        if not moved:
            result.reason = "the champion moved while this candidate was trained"
    else:
        registry.reject(result.version, verdict.reason)
    crash_point("update.after_promote")
    now_champion = registry.champion()
    result.model_age_s = seconds_since(now_champion.newest_event_ts) if now_champion else age
    client = registry.client
    client.set_tag(result.run_id, "decision", result.status)
    client.set_tag(result.run_id, "decision_reason", result.reason)
    if result.model_age_s is not None:
        client.log_metric(result.run_id, "model_age_s", result.model_age_s)
    client.log_text(result.run_id, result.markdown(), "decision.md")
    registry.prune(retention)
    clock.lap("register")
    result.timings = clock.timings
    record(paths, result)
    log.info(result.summary())
    return result


def _check_compatible(batch: MicroBatch, item_ids: list[str], meta: dict) -> None:
    if batch.item_ids[: len(item_ids)] != item_ids:
        raise IncompatibleStore(
            "the feature store's item ids no longer extend the champion's (the store was "
            "rebuilt?): run a full retrain")
    encoder = meta.get("text_encoder")
    if encoder and encoder != batch.text_encoder:
        raise IncompatibleStore(
            f"the champion was trained with text encoder {encoder!r} but the store holds "
            f"{batch.text_encoder!r} embeddings: run a full retrain")


def _register(result: UpdateResult, net, batch: MicroBatch, champion, verdict: Verdict,
              cfg: UpdateConfig, tracking_cfg: TrackingConfig, paths: Paths,
              data_read_at: dt.datetime, registry: Registry, guard, clock: LapClock) -> None:
    plan = batch.plan
    fingerprint = hashlib.sha256(
        f"{champion.version}:{plan.low}:{plan.cut}:{plan.train_events}".encode()).hexdigest()[:16]
    tags = {"kind": "incremental", "parent_version": champion.version,
            "lineage_root": champion.tags.get("lineage_root", champion.version),
            "watermark": str(plan.cut), "previous_watermark": str(plan.low),
            "newest_event_ts": batch.newest_seen_ts.isoformat() if batch.newest_seen_ts else "",
            "data_fingerprint": fingerprint, "git_commit": tracking.git_commit(),
            "train_events": str(plan.train_events),
            "decision_pending": verdict.reason}
    with tracking.session(paths, tracking_cfg) as (_, experiment_id), \
            mlflow.start_run(experiment_id=experiment_id,
                             run_name=f"micro-batch {plan.low}->{plan.cut}") as run, \
            tempfile.TemporaryDirectory(prefix="recsys-candidate-") as tmp:
        result.run_id = run.info.run_id
        mlflow.log_params(tracking.flatten("update", cfg.model_dump()))
        mlflow.set_tags({k: v for k, v in tags.items() if k != "decision_pending"})
        tracking.log_metrics({**result.figures, "train_events": plan.train_events,
                              "holdout_events": plan.holdout_events,
                              "backlog_events": plan.backlog_events,
                              **{f"seconds_{k}": v for k, v in clock.timings.items()}})
        folder = io.save(net, Path(tmp) / "model", batch.item_ids,
                         extra={"text_encoder": batch.text_encoder, "watermark": plan.cut,
                                "parent_version": champion.version,
                                "newest_event_ts": tags["newest_event_ts"]}, guard=guard)
        example = batch.item_ids[:1]
        tags["run_id"] = run.info.run_id
        # A fine-tune keeps what its parent learnt, a forgotten user's data included.
        inherited = [r for r in champion.tags.get(privacy.TAG, "").split(",") if r]
        forgotten = privacy.requests_after(paths, data_read_at, plan.cut)
        if requests := list(dict.fromkeys(inherited + forgotten)):
            tags[privacy.TAG] = ",".join(requests)
        del tags["decision_pending"]
        tags |= {tracking.safe_key(f"gate.{k}"): f"{v:.5f}" for k, v in verdict.figures.items()
                 if k.endswith("ndcg@10")}
        _, result.version = tracking.log_model(folder, example, tracking_cfg.registered_model,
                                               tags, input_example=False)
    crash_point("update.after_register")
    registry.set_challenger(result.version)
    crash_point("update.after_challenger")
