"""The every-minute micro-batch update: champion + new events -> gated candidate.

Steps: load the champion -> refresh the store and extract the batch after the champion's
watermark -> grow the item tower for new items -> score the champion (test) -> fine-tune a
copy on the new events plus replay (train) -> score the candidate -> register it -> gate ->
move the aliases -> apply retention.

Crash safety comes from where the watermark lives: it is a tag of the champion version. A run
that dies anywhere before the alias move leaves the champion, and so the watermark, as they
were; the next run repeats the batch from the same champion, so no event is skipped and none
enters the champion's lineage twice. An orphaned candidate (registered, never decided: it has
no ``decision`` tag) is only pruned by retention.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from recsys.config import GateConfig, Paths, RetentionConfig, TrackingConfig, UpdateConfig
from recsys.data import forget_log
from recsys.data.containers import EvalSet
from recsys.data.features import open_store
from recsys.data.microbatch import BatchPlan, FineTuneData, MicroBatch, extract, plan_batch, refresh
from recsys.faults import crash_point
from recsys.models import io
from recsys.models.seqrec import SeqRec
from recsys.registry import lineage, runs, tracking
from recsys.registry.registry import Registry, Version
from recsys.timeutil import LapClock, human_age, seconds_since, utc_now
from recsys.training import PREDICTOR
from recsys.training.finetune import FineTuneReport, device_for, fine_tune
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
    # Share of the fine-tune's sequences (new and replayed) it trained on: below 1 when
    # UpdateConfig.time_budget_s ran out first (also figures["finetune_share"]).
    trained_share: float | None = None

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
            parts.append(f"champion model age {human_age(self.model_age_s)}")
        return "; ".join(parts)

    def markdown(self) -> str:
        """The decision and its figures, champion against challenger, for run summaries.

        Blocks (the decision, the candidate, the table, timings, model age) are separated by a
        blank line: a line right after a table would be read as one more row of it.
        """
        blocks = [f"**{self.status}**: {self.reason}"]
        if self.version:
            blocks.append(f"candidate version {self.version}, parent (champion) {self.champion}")
        sets = sorted({k.split(".")[0] for k in self.figures if k.count(".") >= 2})
        if sets:
            rows = ["| set | champion NDCG@10 | challenger NDCG@10 | champion HR@10 | "
                    "challenger HR@10 | cases |", "|---|---|---|---|---|---|"]
            for name in sets:
                cells = [self._figure(name, role, metric) for metric in ("ndcg@10", "hr@10")
                         for role in ("champion", "challenger")]
                n = self.figures.get(f"{name}.champion.n", 0)
                rows.append(f"| {name} | " + " | ".join(cells) + f" | {n:.0f} |")
            blocks.append("\n".join(rows))
        if self.timings:
            blocks.append("time: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()))
        if self.model_age_s is not None:
            blocks.append(f"champion model age: {human_age(self.model_age_s)}")
        return "\n\n".join(blocks) + "\n"

    def _figure(self, name: str, role: str, metric: str) -> str:
        v = self.figures.get(f"{name}.{role}.{metric}")
        return "" if v is None else f"{v:.4f}"

    def as_record(self) -> dict:
        out = asdict(self)
        out["at"] = utc_now().isoformat(timespec="seconds")
        return out


def record(paths: Paths, result: UpdateResult) -> None:
    """Append the outcome to ``updates.jsonl``: every run, even one that changed nothing."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / "updates.jsonl", "a") as fh:
        fh.write(json.dumps(result.as_record(), default=str) + "\n")


@dataclass
class _Update:
    """One update's settings, and what its steps have found so far."""

    paths: Paths
    cfg: UpdateConfig
    gate_cfg: GateConfig
    tracking_cfg: TrackingConfig
    registry: Registry
    clock: LapClock = field(default_factory=LapClock)
    champion: Version | None = None
    net: SeqRec | None = None  # the champion's weights, grown in place for new items
    item_ids: list[str] = field(default_factory=list)  # the champion's items
    meta: dict = field(default_factory=dict)  # the champion's model folder metadata
    guard: EvalSet | None = None
    data_read_at: dt.datetime | None = None
    plan: BatchPlan | None = None
    batch: MicroBatch | None = None

    def result(self, status: str, reason: str, **kwargs) -> UpdateResult:
        return UpdateResult(status, reason, self.champion.version if self.champion else None,
                            plan=self.plan, **kwargs)


def update(paths: Paths | None = None, cfg: UpdateConfig | None = None,
           gate_cfg: GateConfig | None = None, retention: RetentionConfig | None = None,
           tracking_cfg: TrackingConfig | None = None) -> UpdateResult:
    """One micro-batch update; every outcome is appended to ``updates.jsonl`` and logged."""
    paths, tracking_cfg = paths or Paths(), tracking_cfg or TrackingConfig()
    u = _Update(paths, cfg or UpdateConfig(), gate_cfg or GateConfig(), tracking_cfg,
                Registry(paths, tracking_cfg))
    result = _steps(u)
    if result.version is not None:
        u.registry.prune(retention or RetentionConfig())
        u.clock.lap("register")
    result.timings = u.clock.timings
    record(paths, result)
    log.info(result.summary())
    return result


def _steps(u: _Update) -> UpdateResult:
    """The update's steps in order; an early return is an update that registered nothing."""
    u.champion = u.registry.champion()
    if u.champion is None:
        return u.result("no_champion", "no champion yet: run a full retrain first")
    _load_champion(u)
    _read_batch(u)
    age = seconds_since(u.champion.newest_event_ts)
    if u.batch is None:
        return u.result("no_events", f"no events after watermark {u.champion.watermark}",
                        model_age_s=age)
    _check_compatible(u.batch, u.item_ids, u.meta)
    device = device_for(u.cfg.accelerator)
    before = _score_champion(u, device)
    if reason := _waiting_reason(u.plan, u.cfg):
        return u.result("waiting", reason, figures=figures_of(before, "champion"),
                        model_age_s=age)
    candidate, report = _fine_tune(u, device)
    verdict = _judge(u, candidate, report, before, device)
    result = u.result("rejected", verdict.reason, figures={
        **verdict.figures, **report.as_dict(),
        "new_items": float(u.batch.n_items - len(u.item_ids))}, trained_share=report.share)
    _register(u, result, candidate.cpu(), verdict)
    _decide(u, result, verdict, age)
    return result


def _load_champion(u: _Update) -> None:
    with u.registry.model_folder(u.champion.version) as folder:
        u.net, u.item_ids, u.meta = io.load(folder)
        u.guard = io.load_guard(folder)
    u.clock.lap("load")


def _read_batch(u: _Update) -> None:
    """Refresh the store and extract the events after the champion's watermark, if any."""
    u.data_read_at = utc_now()
    with open_store(u.paths) as con:
        refresh(con, u.paths)
        u.plan = plan_batch(con, u.champion.watermark, u.cfg)
        if not u.plan.empty:
            u.batch = extract(con, u.plan, u.cfg, u.net.cfg.max_len,
                              u.guard.user_idx if u.guard is not None else None)
    u.clock.lap("extract")
    crash_point("update.after_extract")


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


def _scores(net: SeqRec, batch: MicroBatch, guard: EvalSet | None,
            device: torch.device) -> dict[str, SetScore]:
    return {"holdout": score_set(net, batch.holdout, device),
            "guard": score_set(net, guard, device)}


def _score_champion(u: _Update, device: torch.device) -> dict[str, SetScore]:
    """Grow the champion's item tower for the batch's new items, then test it.

    In place: the loaded champion is ours alone, and is copied once for training.
    """
    text = torch.from_numpy(u.batch.text) if u.batch.text.shape[1] else None
    u.net.items.grow(u.batch.n_items, text)
    u.net.to(device).eval()
    before = _scores(u.net, u.batch, u.guard, device)
    u.clock.lap("eval")
    return before


def _waiting_reason(plan: BatchPlan, cfg: UpdateConfig) -> str | None:
    """Why the batch is not trained on yet; None when it is."""
    if not plan.trainable:
        return (f"one landing part ({plan.holdout_events} events) after watermark "
                f"{plan.low}: held out to test on; it is trained on by the next update")
    if plan.train_events < cfg.min_events:
        return f"only {plan.train_events} events to train on (min_events {cfg.min_events})"
    return None


def _weight_decay(meta: dict) -> float:
    """The lineage's weight decay: its full retrain's, kept in every model folder since."""
    return float(meta.get("weight_decay", 0.0))


def _fine_tune(u: _Update, device: torch.device) -> tuple[SeqRec, FineTuneReport]:
    """A copy of the champion, trained on the new events plus replay."""
    candidate = copy.deepcopy(u.net).to(device)
    counts = torch.from_numpy(u.batch.item_counts).float()
    report = fine_tune(candidate, FineTuneData.concat(u.batch.new, u.batch.replay), u.cfg,
                       counts, weight_decay=_weight_decay(u.meta))
    u.clock.lap("train")
    return candidate, report


def _judge(u: _Update, candidate: SeqRec, report: FineTuneReport,
           before: dict[str, SetScore], device: torch.device) -> Verdict:
    problem = sanity(candidate, report.finite, device)
    if problem:  # a broken model is not even scored
        verdict = Verdict(False, problem, figures_of(before, "champion"))
    else:
        verdict = compare(before, _scores(candidate, u.batch, u.guard, device), u.gate_cfg)
    u.clock.lap("eval")
    return verdict


def _register(u: _Update, result: UpdateResult, net: SeqRec, verdict: Verdict) -> None:
    """Log the candidate's run and model, register it as a version, alias it ``candidate``.

    The version carries its lineage tags, the gate's figures and the forget requests whose
    data it may hold; its decision tags come in ``_decide``. A crash in between leaves a
    version without a ``decision`` tag, which nothing serves and retention prunes.
    """
    plan, batch, champion = u.plan, u.batch, u.champion
    tags = lineage.incremental_tags(champion, plan.low, plan.cut, plan.train_events,
                                    batch.newest_seen_ts)
    with runs.start_run(u.paths, u.tracking_cfg, f"micro-batch {plan.low}->{plan.cut}") as run, \
            tempfile.TemporaryDirectory(prefix="recsys-candidate-") as tmp:
        result.run_id = run.id
        run.log_params(tracking.flatten("update", u.cfg.model_dump()))
        run.set_tags(tags)
        run.log_metrics({**result.figures, "train_events": plan.train_events,
                         "holdout_events": plan.holdout_events,
                         "backlog_events": plan.backlog_events,
                         **{f"seconds_{k}": v for k, v in u.clock.timings.items()}})
        folder = io.save(net, Path(tmp) / "model", batch.item_ids,
                         extra={"text_encoder": batch.text_encoder, "watermark": plan.cut,
                                "parent_version": champion.version,
                                "newest_event_ts": tags["newest_event_ts"],
                                "weight_decay": _weight_decay(u.meta)}, guard=u.guard)
        tags |= {"run_id": run.id, **_forget_tags(u), **lineage.gate_tags(verdict.figures)}
        _, result.version = run.log_model(folder, PREDICTOR, batch.item_ids[:1],
                                          u.tracking_cfg.registered_model, tags,
                                          input_example=False)
    crash_point("update.after_register")
    u.registry.set_candidate(result.version)
    crash_point("update.after_candidate")


def _forget_tags(u: _Update) -> dict[str, str]:
    """Forget requests whose data the candidate may hold.

    A fine-tune keeps what its parent learnt, a forgotten user's data included; and a request
    may finish after this update read its data.
    """
    inherited = [r for r in u.champion.tags.get(forget_log.TAG, "").split(",") if r]
    forgotten = forget_log.requests_after(u.paths, u.data_read_at, u.plan.cut)
    requests = list(dict.fromkeys(inherited + forgotten))
    return {forget_log.TAG: ",".join(requests)} if requests else {}


def _decide(u: _Update, result: UpdateResult, verdict: Verdict, age: float | None) -> None:
    """Move the aliases (or not), then record the outcome on the candidate's run."""
    if verdict.promote:
        moved = u.registry.promote(result.version, verdict.reason,
                                   expected_champion=u.champion.version)
        result.status = "promoted" if moved else "stale"
        if not moved:
            result.reason = "the champion moved while this candidate was trained"
    else:
        u.registry.reject(result.version, verdict.reason)
    crash_point("update.after_promote")
    now_champion = u.registry.champion()
    result.model_age_s = seconds_since(now_champion.newest_event_ts) if now_champion else age
    metrics = {"model_age_s": result.model_age_s} if result.model_age_s is not None else None
    runs.attach(u.paths, u.tracking_cfg, result.run_id).record_decision(
        result.status, result.reason, metrics, note=result.markdown())
