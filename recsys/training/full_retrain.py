"""A full retrain: features -> train -> evaluate against baselines -> MLflow run -> registry."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from recsys import console, sql
from recsys.config import (
    EvalConfig,
    FeatureConfig,
    GateConfig,
    ModelConfig,
    Paths,
    TrackingConfig,
    TrainConfig,
)
from recsys.data import forget_log
from recsys.data.containers import EvalSet
from recsys.data.datamodule import SequenceDataModule
from recsys.data.features import read_store
from recsys.data.sequences import TrainingData, load_training_data
from recsys.evaluation.evaluator import evaluate
from recsys.evaluation.report import metrics_table, training_curves
from recsys.faults import crash_point
from recsys.models import io
from recsys.models.baselines import ItemCF, Popularity
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec
from recsys.registry import lineage, runs, tracking
from recsys.registry.registry import Registry
from recsys.timeutil import utc_now
from recsys.training import PREDICTOR
from recsys.training.challenge import SET, Challenge, challenge, held_out_keys
from recsys.training.gate import decide_full
from recsys.training.precision import TrainShape
from recsys.training.sizing import OPTION, fit_to_data
from recsys.training.trainer import (
    TrainingHistory,
    build_trainer,
    peak_memory_mb,
    precision_figures,
    resolve_precision,
)

log = logging.getLogger(__name__)

MODEL_NAME = "seqrec"
REPORT_METRICS = ("ndcg@10", "hr@10", "mrr@10", "coverage@10")


@dataclass
class TrainResult:
    run_id: str | None
    model_uri: str | None
    version: str | None
    valid: dict[str, dict[str, float]]  # model name -> metrics on the validation split
    test: dict[str, dict[str, float]]  # model name -> metrics on the test split
    history: list[dict[str, float]]
    best_epoch: int
    time_to_best_s: float
    positions_per_s: float
    memory: dict[str, float]
    fingerprint: dict = field(default_factory=dict)
    model_dir: Path | None = None
    decision: str = ""  # promoted | challenger | rejected | "" (not registered)
    decision_reason: str = ""
    data_read_at: dt.datetime | None = None  # when the training data was read (forget-user)
    item_ids: list[str] = field(default_factory=list, repr=False)
    held_out: np.ndarray | None = field(default=None, repr=False)  # test-case keys (challenge)
    champion: str | None = None  # the champion it was compared with, if any
    comparison: dict[str, float] = field(default_factory=dict)  # challenge.SET figures

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def summary(self) -> str:
        return metrics_table(self.test, "test (full ranking)")

    def markdown(self) -> str:
        """The decision and its figures in narrow tables (at most 4 columns), for the UIs."""
        lines = [f"**version {self.version} {self.decision}**: {self.decision_reason}", ""]
        c = self.comparison
        if f"{SET}.champion.ndcg@10" in c:
            lines += [f"### Against champion version {self.champion}, on "
                      f"{c.get(f'{SET}.champion.n', 0):.0f} events neither has trained on", "",
                      "| model | NDCG@10 | HR@10 | distinct items in top-10 |",
                      "|---|---|---|---|"]
            for role, name in (("champion", f"champion (v{self.champion})"),
                               ("challenger", f"this retrain (v{self.version})")):
                lines.append(f"| {name} | {c[f'{SET}.{role}.ndcg@10']:.4f} | "
                             f"{c[f'{SET}.{role}.hr@10']:.4f} | "
                             f"{c[f'{SET}.{role}.distinct@10']:.0f} |")
            if f"{SET}.drop" in c:
                lines += ["", f"NDCG@10 drop {c[f'{SET}.drop']:.4f}, paired standard error "
                              f"{c[f'{SET}.drop_se']:.4f}"]
            lines.append("")
        models = list(self.valid)
        lines += ["### Validation (decides) and test (reports), full ranking", "",
                  "| metric | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
        for split, results in (("validation", self.valid), ("test", self.test)):
            for metric in REPORT_METRICS:
                if all(metric in results.get(m, {}) for m in models):
                    lines.append(f"| {split} {metric} | " + " | ".join(
                        f"{results[m][metric]:.4f}" for m in models) + " |")
        return "\n".join(lines) + "\n"


def fingerprint_id(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def read_training_data(paths: Paths, train_cfg: TrainConfig, model_cfg: ModelConfig,
                       feature_cfg: FeatureConfig | None = None) -> TrainingData:
    if not paths.features_db.exists():
        raise FileNotFoundError(
            f"no feature store at {paths.features_db}: run `recsys features` first")
    with read_store(paths) as con:
        data = load_training_data(con, train_cfg.protocol, model_cfg.max_len,
                                  (feature_cfg or FeatureConfig()).popularity_window_days)
    if len(data.train_items) == 0 or len(data.valid) == 0:
        raise ValueError(
            f"the {train_cfg.protocol} split has {len(data.train_items)} training sequences and "
            f"{len(data.valid)} validation users: ingest more events and rebuild features")
    return data


def fit_model_to_data(paths: Paths, train_cfg: TrainConfig,
                      model_cfg: ModelConfig) -> tuple[ModelConfig, dict[str, str]]:
    """``model_cfg`` with the settings the user left unset chosen from the training split.

    See ``recsys.training.sizing``; the second value says what was chosen and why.
    """
    if "max_len" in model_cfg.model_fields_set:  # the lengths decide nothing else
        return fit_to_data(model_cfg, np.empty(0, dtype=np.int64))
    if not paths.features_db.exists():
        return model_cfg, {}
    with read_store(paths) as con:
        rows = sql.query(con, "split_rows", protocol=train_cfg.protocol,
                         split="train").to_arrow_table()
    lengths = pc.list_value_length(rows["history"]).to_numpy(zero_copy_only=False)
    return fit_to_data(model_cfg, lengths[lengths >= 2])


def guard_set(test: EvalSet, n: int, seed: int) -> EvalSet:
    """A seeded sample of the test split, the lineage's fixed check against forgetting.

    It is held out from this training and, as every incremental descendant trains only on
    newer events, from theirs too.
    """
    if len(test) <= n:
        return test
    pick = np.sort(np.random.default_rng(seed).choice(len(test), n, replace=False))
    return test.subset(pick)


def fit_baselines(data: TrainingData, cfg: TrainConfig) -> dict[str, object]:
    return {
        "popularity": Popularity(data.recent_counts),
        "item_cf": ItemCF.fit(data.train_histories(), data.n_items, data.catalogue.counts,
                              window=cfg.cf_window, top_n=cfg.cf_neighbours),
    }


def evaluate_all(net: SeqRec, baselines: dict, data: TrainingData, eval_cfg: EvalConfig,
                 device) -> tuple[dict, dict]:
    models = {MODEL_NAME: net, **baselines}
    valid, test = {}, {}
    for name, model in models.items():
        dev = device if model is net else "cpu"
        valid[name] = evaluate(model, data.valid, data.catalogue, eval_cfg, dev)
        test[name] = evaluate(model, data.test, data.catalogue, eval_cfg, dev)
    return valid, test


def train(paths: Paths | None = None, model_cfg: ModelConfig | None = None,
          train_cfg: TrainConfig | None = None, eval_cfg: EvalConfig | None = None,
          tracking_cfg: TrackingConfig | None = None,
          gate_cfg: GateConfig | None = None, promote: bool = True,
          feature_cfg: FeatureConfig | None = None) -> TrainResult | None:
    """Run a full retrain; a registered version is gated and, if it passes, promoted.

    ``promote=False`` stops after registration: the caller gates and promotes with
    ``promote_full`` (the flow does, under the registry's concurrency limit). Returns None on
    DDP ranks other than zero.
    """
    paths, model_cfg = paths or Paths(), model_cfg or ModelConfig()
    gate_cfg = gate_cfg or GateConfig()
    train_cfg, eval_cfg = train_cfg or TrainConfig(), eval_cfg or EvalConfig()
    tracking_cfg = tracking_cfg or TrackingConfig()

    data_read_at = utc_now()
    model_cfg, chosen = fit_model_to_data(paths, train_cfg, model_cfg)
    for name, why in chosen.items():
        console.say(f"{name} {why} (from the data; set {OPTION[name]} to choose)")
    data = read_training_data(paths, train_cfg, model_cfg, feature_cfg)
    pl.seed_everything(train_cfg.seed, workers=True, verbose=False)
    module, datamodule = _build(data, model_cfg, train_cfg, eval_cfg)
    fp = {**data.fingerprint, "id": fingerprint_id(data.fingerprint)}
    with contextlib.ExitStack() as stack:
        run = None
        if rank_zero_only.rank == 0:
            run = stack.enter_context(
                runs.start_run(paths, tracking_cfg, f"full-retrain {data.protocol}"))
            _log_setup(run, data, fp, model_cfg, train_cfg, eval_cfg)
            run.log_params({f"model.{k}_chosen_from_data": v for k, v in chosen.items()})
        ckpt_dir = paths.checkpoints / (run.id if run else "run")
        history = _fit(module, datamodule, train_cfg, ckpt_dir, run, tracking_cfg.experiment)
        if history is None:  # a DDP rank other than zero
            return None
        net = module.net.eval()
        result = _evaluate(net, history, data, train_cfg, eval_cfg)
        result.run_id, result.fingerprint, result.data_read_at = run.id, fp, data_read_at
        result.item_ids, result.held_out = data.item_ids, held_out_keys(data.test)
        log.info("\n%s", result.summary())
        net = net.cpu()
        _log_report(run, result, data.protocol, eval_cfg)
        result.model_dir = _save_latest(net, result, data, train_cfg, paths)
        _register(run, result, data, tracking_cfg, paths)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the registered artifacts are the durable copy
    if result.version and promote:
        promote_full(result, paths, tracking_cfg, gate_cfg, net)
    return result


def _build(data: TrainingData, model_cfg: ModelConfig, train_cfg: TrainConfig,
           eval_cfg: EvalConfig) -> tuple[SeqRecModule, SequenceDataModule]:
    """The seeded network in its LightningModule, and the batches it trains on."""
    net = SeqRec(model_cfg, data.n_items, torch.from_numpy(data.text))
    module = SeqRecModule(net, model_cfg, train_cfg, torch.from_numpy(data.catalogue.counts),
                          exclude_seen=eval_cfg.exclude_seen)
    datamodule = SequenceDataModule(
        data, train_cfg.batch_size, train_cfg.seed, eval_cfg.batch_size,
        train_cfg.max_val_users, train_cfg.max_steps_per_epoch, train_cfg.num_workers,
        train_cfg.bucket_window)
    return module, datamodule


def _log_setup(run: runs.Run, data: TrainingData, fp: dict, model_cfg: ModelConfig,
               train_cfg: TrainConfig, eval_cfg: EvalConfig) -> None:
    """Every setting and the data's fingerprint, before training starts."""
    shape = TrainShape(model_cfg, data.n_items, data.text.shape[1])
    run.log_params({
        **tracking.flatten("model", model_cfg.model_dump()),
        **tracking.flatten("train", train_cfg.model_dump()),
        **tracking.flatten("eval", eval_cfg.model_dump()),
        **tracking.flatten("data", fp),
        "train.resolved_precision": resolve_precision(train_cfg.precision,
                                                      train_cfg.accelerator, shape),
        "data.text_encoder": data.text_encoder,
    })
    run.log_metrics(precision_figures(train_cfg, shape))  # what precision=auto measured
    run.set_tags(lineage.full_tags(fp["watermark"], fp["id"]))
    log.info("MLflow run %s at %s", run.id, tracking.redact(run.uri))


def _fit(module: SeqRecModule, datamodule: SequenceDataModule, train_cfg: TrainConfig,
         ckpt_dir: Path, run: runs.Run | None, experiment: str) -> TrainingHistory | None:
    """Fit, then load the best validated weights into ``module``; None on other DDP ranks."""
    logger = run.lightning_logger(experiment) if run else None
    trainer, history, checkpoint = build_trainer(train_cfg, ckpt_dir, logger,
                                                 shape=TrainShape.of(module.net))
    trainer.fit(module, datamodule=datamodule)
    crash_point("train.after_fit")
    if not trainer.is_global_zero:
        return None
    if checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(state["state_dict"])
    return history


def _evaluate(net: SeqRec, history: TrainingHistory, data: TrainingData,
              train_cfg: TrainConfig, eval_cfg: EvalConfig) -> TrainResult:
    """The model and the baselines on validation (which decides) and test (a report)."""
    device = next(net.parameters()).device
    valid, test = evaluate_all(net, fit_baselines(data, train_cfg), data, eval_cfg, device)
    best = history.best()
    return TrainResult(
        run_id=None, model_uri=None, version=None, valid=valid, test=test,
        history=history.history, best_epoch=int(best.get("epoch", 0)),
        time_to_best_s=float(best.get("wall_s", float("nan"))),
        positions_per_s=history.positions_per_s, memory=peak_memory_mb())


def promote_full(result: TrainResult, paths: Paths, tracking_cfg: TrackingConfig | None = None,
                 gate_cfg: GateConfig | None = None, net: SeqRec | None = None) -> None:
    """Gate a registered full retrain; it becomes champion only if not worse than the champion.

    First it must be sane and beat popularity on validation (else rejected). With no champion
    it is then promoted (the first model). Otherwise it is scored against the champion on
    events neither has trained on (``challenge.py``), with the micro-batch gate's tolerance and
    z rule: promoted if not worse, rejected if worse, kept waiting as ``challenger`` if there
    are too few such events. The decision and its figures go to the version's tags and the
    run (``decision.md``). A new champion starts a new lineage: the micro-batches continue
    from its watermark.
    """
    tracking_cfg, gate_cfg = tracking_cfg or TrackingConfig(), gate_cfg or GateConfig()
    if net is None or not result.item_ids:
        net, result.item_ids, _ = io.load(result.model_dir)
    verdict = decide_full(result.valid[MODEL_NAME]["ndcg@10"],
                          result.valid["popularity"]["ndcg@10"], net, gate_cfg)
    registry = Registry(paths, tracking_cfg)
    registry.tag(result.version, {"lineage_root": result.version,
                                  **lineage.gate_tags(verdict.figures)})
    champion = registry.champion()
    if verdict.promote and gate_cfg.full_retrain_online and champion is not None:
        result.champion = champion.version
        outcome = Challenge("challenger", (
            f"{verdict.reason}; waits as challenger for an online experiment against champion "
            f"version {champion.version} (`recsys experiment status`; `recsys promote` "
            f"overrides)"))
    elif verdict.promote:
        outcome = _against_champion(result, registry, net, gate_cfg, verdict.reason)
    else:
        outcome = Challenge("rejected", verdict.reason)
    if outcome.decision == "rejected":
        registry.reject(result.version, outcome.reason)
    elif outcome.decision == "challenger":
        # The tag first: it is what `waiting_challenger` reads; the alias is for the UI.
        registry.tag(result.version, {"decision": "challenger", "decision_reason": outcome.reason,
                                      "decided_at": utc_now()})
        registry.set_challenger(result.version)
    result.decision, result.decision_reason = outcome.decision, outcome.reason
    result.comparison = outcome.figures
    if outcome.figures:
        registry.tag(result.version, {"challenge.champion": result.champion or "",
                                      **lineage.gate_tags(outcome.figures),
                                      **{f"gate.{k}": f"{v:.0f}" for k, v in
                                         outcome.figures.items() if k.endswith("_events")}})
    runs.attach(paths, tracking_cfg, result.run_id).record_decision(
        result.decision, result.decision_reason, outcome.figures or None,
        note=result.markdown())


def _against_champion(result: TrainResult, registry: Registry, net: SeqRec,
                      gate_cfg: GateConfig, passed: str) -> Challenge:
    """Compare with the champion and move the alias if not worse; retried if it moves meanwhile.

    A micro-batch may promote while this one is compared (the CLI holds no Prefect limit):
    the alias moves only if the champion is still the one compared with.
    """
    watermark = int(result.fingerprint["watermark"])
    for _ in range(3):
        champion = registry.champion()
        outcome: Challenge | None = None
        if champion is not None and champion.version != result.version:
            result.champion = champion.version
            outcome = challenge(registry, champion, net, result.item_ids, watermark,
                                result.held_out, gate_cfg)
            if outcome is None:
                passed += (f"; not comparable with champion version {champion.version} (the "
                           f"store was rebuilt or re-encoded since), so it cannot be updated "
                           f"either and is replaced")
            elif outcome.decision != "promoted":
                return outcome
        outcome = outcome or Challenge("promoted", passed)
        if registry.promote(result.version, outcome.reason,
                            expected_champion=champion.version if champion else None):
            return outcome
    return Challenge("challenger", "waits as challenger: the champion kept moving while this "
                                   "retrain was compared with it (`recsys promote` overrides)")


def _log_report(run: runs.Run, result: TrainResult, protocol: str,
                eval_cfg: EvalConfig) -> None:
    """Figures of every split and model, the metric tables and the training curves."""
    for split, results in (("valid", result.valid), ("test", result.test)):
        for name, metrics in results.items():
            run.log_metrics(metrics, prefix=f"{split}/{name}/")
    run.log_metrics({"best_epoch": result.best_epoch, "time_to_best_s": result.time_to_best_s,
                     "train_positions_per_s": result.positions_per_s, **result.memory})
    note = ("seen items excluded from rankings" if eval_cfg.exclude_seen
            else "seen items kept in rankings (re-consumption counts)")
    table = (metrics_table(result.test, f"test, {protocol}, full ranking; {note}")
             + "\n" + metrics_table(result.valid, "validation"))
    run.log_text(table, "metrics.md")
    run.log_text(json.dumps(result.history, indent=2), "history.json")
    if result.history:
        import matplotlib.pyplot as plt

        fig = training_curves(result.history)
        run.log_figure(fig, "training_curves.png")
        plt.close(fig)


def _save_latest(net: SeqRec, result: TrainResult, data: TrainingData, train_cfg: TrainConfig,
                 paths: Paths) -> Path:
    """One local copy of the newest full model (overwritten by the next).

    A temp folder per run would leak tens of MB every night, and the registered artifacts are
    the durable copy. The folder's name, "model", is the artifact's name inside the pyfunc.
    The weight decay travels with the weights: every fine-tune of this lineage uses it.
    """
    folder = paths.checkpoints / "latest-full" / "model"
    shutil.rmtree(folder.parent, ignore_errors=True)
    io.save(net, folder, data.item_ids,
            extra={"fingerprint": result.fingerprint, "protocol": data.protocol,
                   "text_encoder": data.text_encoder,
                   "watermark": result.fingerprint["watermark"],
                   "newest_event_ts": result.fingerprint.get("newest_event_ts", ""),
                   "weight_decay": train_cfg.weight_decay},
            guard=guard_set(data.test, train_cfg.guard_users, train_cfg.seed))
    return folder


def _register(run: runs.Run, result: TrainResult, data: TrainingData,
              tracking_cfg: TrackingConfig, paths: Paths) -> None:
    """Log the saved model and, if registration is on, register it as a version."""
    fp = result.fingerprint
    example = [data.item_ids[i - 1] for i in data.test.items[0].tolist() if i > 0][-5:] or \
        data.item_ids[:1]
    tags = lineage.full_tags(fp["watermark"], fp["id"], fp.get("newest_event_ts", ""), run.id)
    tags["test_ndcg_at_10"] = f"{result.test[MODEL_NAME]['ndcg@10']:.5f}"  # reported, not gated
    if forgotten := forget_log.requests_after(paths, result.data_read_at, int(fp["watermark"])):
        tags[forget_log.TAG] = ",".join(forgotten)  # a user was forgotten while this one trained
    registered = tracking_cfg.registered_model if tracking_cfg.register_model else None
    result.model_uri, result.version = run.log_model(result.model_dir, PREDICTOR, example,
                                                     registered, tags)
    crash_point("train.after_register")
