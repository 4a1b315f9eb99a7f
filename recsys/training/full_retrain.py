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
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

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
from recsys.training.gate import decide_full
from recsys.training.trainer import (
    TrainingHistory,
    build_trainer,
    peak_memory_mb,
    resolve_precision,
)

log = logging.getLogger(__name__)

MODEL_NAME = "seqrec"


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
    decision: str = ""  # promoted | rejected | "" (not registered)
    decision_reason: str = ""
    data_read_at: dt.datetime | None = None  # when the training data was read (forget-user)

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def summary(self) -> str:
        return metrics_table(self.test, "test (full ranking)")


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
        ckpt_dir = paths.checkpoints / (run.id if run else "run")
        history = _fit(module, datamodule, train_cfg, ckpt_dir, run, tracking_cfg.experiment)
        if history is None:  # a DDP rank other than zero
            return None
        net = module.net.eval()
        result = _evaluate(net, history, data, train_cfg, eval_cfg)
        result.run_id, result.fingerprint, result.data_read_at = run.id, fp, data_read_at
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
    run.log_params({
        **tracking.flatten("model", model_cfg.model_dump()),
        **tracking.flatten("train", train_cfg.model_dump()),
        **tracking.flatten("eval", eval_cfg.model_dump()),
        **tracking.flatten("data", fp),
        "train.resolved_precision": resolve_precision(train_cfg.precision,
                                                      train_cfg.accelerator),
        "data.text_encoder": data.text_encoder,
    })
    run.set_tags(lineage.full_tags(fp["watermark"], fp["id"]))
    log.info("MLflow run %s at %s", run.id, tracking.redact(run.uri))


def _fit(module: SeqRecModule, datamodule: SequenceDataModule, train_cfg: TrainConfig,
         ckpt_dir: Path, run: runs.Run | None, experiment: str) -> TrainingHistory | None:
    """Fit, then load the best validated weights into ``module``; None on other DDP ranks."""
    logger = run.lightning_logger(experiment) if run else None
    trainer, history, checkpoint = build_trainer(train_cfg, ckpt_dir, logger)
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
    """A full retrain starts a new lineage, promoted over any champion if it passes its gate.

    The gate reads validation figures only. The micro-batches then continue from its
    watermark.
    """
    tracking_cfg, gate_cfg = tracking_cfg or TrackingConfig(), gate_cfg or GateConfig()
    if net is None:
        net, _, _ = io.load(result.model_dir)
    verdict = decide_full(result.valid[MODEL_NAME]["ndcg@10"],
                          result.valid["popularity"]["ndcg@10"], net, gate_cfg)
    registry = Registry(paths, tracking_cfg)
    registry.tag(result.version, {"lineage_root": result.version,
                                  **lineage.gate_tags(verdict.figures)})
    registry.set_challenger(result.version)
    if verdict.promote:
        registry.promote(result.version, verdict.reason)
        result.decision = "promoted"
    else:
        registry.reject(result.version, verdict.reason)
        result.decision = "rejected"
    result.decision_reason = verdict.reason
    runs.attach(paths, tracking_cfg, result.run_id).record_decision(result.decision,
                                                                     verdict.reason)


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
