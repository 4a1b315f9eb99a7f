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

import mlflow
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from recsys import privacy
from recsys.config import (
    EvalConfig,
    FeatureConfig,
    GateConfig,
    ModelConfig,
    Paths,
    TrackingConfig,
    TrainConfig,
)
from recsys.data.datamodule import SequenceDataModule
from recsys.data.features import read_store
from recsys.data.sequences import TrainingData, load_training_data
from recsys.evaluation.evaluator import EvalSet, evaluate
from recsys.evaluation.report import metrics_table, training_curves
from recsys.faults import crash_point
from recsys.models import io
from recsys.models.baselines import ItemCF, Popularity
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec
from recsys.registry import tracking
from recsys.registry.registry import Registry
from recsys.timeutil import utc_now
from recsys.training.gate import decide_full
from recsys.training.trainer import build_trainer, peak_memory_mb, resolve_precision

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
    con = read_store(paths)
    try:
        data = load_training_data(con, train_cfg.protocol, model_cfg.max_len,
                                  (feature_cfg or FeatureConfig()).popularity_window_days)
    finally:
        con.close()
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
    rank_zero = rank_zero_only.rank == 0

    data_read_at = utc_now()
    data = read_training_data(paths, train_cfg, model_cfg, feature_cfg)
    pl.seed_everything(train_cfg.seed, workers=True, verbose=False)
    net = SeqRec(model_cfg, data.n_items, torch.from_numpy(data.text))
    module = SeqRecModule(net, model_cfg, train_cfg, torch.from_numpy(data.catalogue.counts),
                          exclude_seen=eval_cfg.exclude_seen)
    datamodule = SequenceDataModule(
        data, train_cfg.batch_size, train_cfg.seed, eval_cfg.batch_size,
        train_cfg.max_val_users, train_cfg.max_steps_per_epoch, train_cfg.num_workers,
        train_cfg.bucket_window)
    fp = {**data.fingerprint, "id": fingerprint_id(data.fingerprint)}

    with contextlib.ExitStack() as stack:
        run_id, logger = None, None
        if rank_zero:
            uri, experiment_id = stack.enter_context(tracking.session(paths, tracking_cfg))
            run = stack.enter_context(mlflow.start_run(
                experiment_id=experiment_id, run_name=f"full-retrain {data.protocol}"))
            run_id = run.info.run_id
            mlflow.log_params({
                **tracking.flatten("model", model_cfg.model_dump()),
                **tracking.flatten("train", train_cfg.model_dump()),
                **tracking.flatten("eval", eval_cfg.model_dump()),
                **tracking.flatten("data", fp),
                "train.resolved_precision": resolve_precision(train_cfg.precision,
                                                              train_cfg.accelerator),
                "data.text_encoder": data.text_encoder,
            })
            mlflow.set_tags({"kind": "full", "git_commit": tracking.git_commit(),
                             "watermark": str(fp["watermark"]), "data_fingerprint": fp["id"]})
            logger = MLFlowLogger(experiment_name=tracking_cfg.experiment, tracking_uri=uri,
                                  run_id=run_id)
            log.info("MLflow run %s at %s", run_id, tracking.redact(uri))
        ckpt_dir = paths.checkpoints / (run_id or "run")
        trainer, history, checkpoint = build_trainer(train_cfg, ckpt_dir, logger)
        trainer.fit(module, datamodule=datamodule)
        crash_point("train.after_fit")
        if not trainer.is_global_zero:
            return None

        if checkpoint.best_model_path:
            state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
        net = module.net.eval()
        device = next(net.parameters()).device
        best = history.best()
        baselines = fit_baselines(data, train_cfg)
        valid, test = evaluate_all(net, baselines, data, eval_cfg, device)
        memory = peak_memory_mb()
        result = TrainResult(
            run_id=run_id, model_uri=None, version=None, valid=valid, test=test,
            history=history.history, best_epoch=int(best.get("epoch", 0)),
            time_to_best_s=float(best.get("wall_s", float("nan"))),
            positions_per_s=history.positions_per_s, memory=memory, fingerprint=fp,
            data_read_at=data_read_at)
        log.info("\n%s", result.summary())
        _log_run(result, net.cpu(), data, eval_cfg, train_cfg, tracking_cfg, paths)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the registered artifacts are the durable copy
        if result.version and promote:
            promote_full(result, paths, tracking_cfg, gate_cfg, net)
        return result


def promote_full(result: TrainResult, paths: Paths, tracking_cfg: TrackingConfig | None = None,
                 gate_cfg: GateConfig | None = None, net: SeqRec | None = None) -> None:
    """A full retrain starts a new lineage, promoted over any champion if it passes its gate.

    The micro-batches then continue from its watermark.
    """
    tracking_cfg, gate_cfg = tracking_cfg or TrackingConfig(), gate_cfg or GateConfig()
    if net is None:
        net, _, _ = io.load(result.model_dir)
    registry = Registry(paths, tracking_cfg)
    registry.tag(result.version, {"lineage_root": result.version})
    registry.set_challenger(result.version)
    verdict = decide_full(result.test[MODEL_NAME]["ndcg@10"],
                          result.test["popularity"]["ndcg@10"], net, gate_cfg)
    if verdict.promote:
        registry.promote(result.version, verdict.reason)
        result.decision = "promoted"
    else:
        registry.reject(result.version, verdict.reason)
        result.decision = "rejected"
    result.decision_reason = verdict.reason
    registry.client.set_tag(result.run_id, "decision", result.decision)
    registry.client.set_tag(result.run_id, "decision_reason", verdict.reason)


def _log_run(result: TrainResult, net: SeqRec, data: TrainingData, eval_cfg: EvalConfig,
             train_cfg: TrainConfig, tracking_cfg: TrackingConfig, paths: Paths) -> None:
    for split, results in (("valid", result.valid), ("test", result.test)):
        for name, metrics in results.items():
            tracking.log_metrics(metrics, prefix=f"{split}/{name}/")
    tracking.log_metrics({"best_epoch": result.best_epoch, "time_to_best_s": result.time_to_best_s,
                          "train_positions_per_s": result.positions_per_s, **result.memory})
    note = ("seen items excluded from rankings" if eval_cfg.exclude_seen
            else "seen items kept in rankings (re-consumption counts)")
    table = (metrics_table(result.test, f"test, {data.protocol}, full ranking; {note}")
             + "\n" + metrics_table(result.valid, "validation"))
    tracking.log_text_artifact(table, "metrics.md")
    tracking.log_text_artifact(json.dumps(result.history, indent=2), "history.json")
    if result.history:
        import matplotlib.pyplot as plt

        fig = training_curves(result.history)
        tracking.log_figure(fig, "training_curves.png")
        plt.close(fig)
    # One local copy of the newest full model (overwritten by the next): a temp folder per
    # run would leak tens of MB every night, and the registered artifacts are the durable copy.
    # (The folder's name, "model", is the artifact's name inside the logged pyfunc.)
    folder = paths.checkpoints / "latest-full" / "model"
    shutil.rmtree(folder.parent, ignore_errors=True)
    io.save(net, folder, data.item_ids,
            extra={"fingerprint": result.fingerprint, "protocol": data.protocol,
                   "text_encoder": data.text_encoder,
                   "watermark": result.fingerprint["watermark"],
                   "newest_event_ts": result.fingerprint.get("newest_event_ts", "")},
            guard=guard_set(data.test, train_cfg.guard_users, train_cfg.seed))
    result.model_dir = folder
    example = [data.item_ids[i - 1] for i in data.test.items[0].tolist() if i > 0][-5:] or \
        data.item_ids[:1]
    tags = {"kind": "full", "watermark": str(result.fingerprint["watermark"]),
            "data_fingerprint": result.fingerprint["id"], "run_id": result.run_id or "",
            "newest_event_ts": result.fingerprint.get("newest_event_ts", ""),
            "test_ndcg_at_10": f"{result.test[MODEL_NAME]['ndcg@10']:.5f}",
            "git_commit": tracking.git_commit()}
    if forgotten := privacy.requests_after(paths, result.data_read_at,
                                           int(result.fingerprint["watermark"])):
        tags[privacy.TAG] = ",".join(forgotten)  # a user was forgotten while this one trained
    registered = tracking_cfg.registered_model if tracking_cfg.register_model else None
    result.model_uri, result.version = tracking.log_model(folder, example, registered, tags)
    crash_point("train.after_register")
