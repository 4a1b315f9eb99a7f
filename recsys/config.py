"""Typed configuration with defaults that run.

Nothing here touches the disk at import time: paths are resolved when a
config object is built, so tests can point a whole pipeline at a temp folder
with ``Paths(root=tmp_path)``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.columns import EVENT_TYPES


def default_home() -> Path:
    """Project data folder: ``$RECSYS_HOME`` if set, else ``./data``."""
    return Path(os.environ.get("RECSYS_HOME", "data")).resolve()


def default_tracking_home() -> Path:
    """Folder of the local MLflow store: ``$RECSYS_TRACKING_HOME`` if set, else the project."""
    return Path(os.environ.get("RECSYS_TRACKING_HOME", ".")).resolve()


class Loss(StrEnum):
    """Training loss; one list of names shared by the config, the CLI and the benchmarks."""

    softmax = "softmax"
    sampled = "sampled"


class Protocol(StrEnum):
    """Evaluation split."""

    leave_last_out = "leave_last_out"
    temporal = "temporal"


class LrSchedule(StrEnum):
    """Learning-rate schedule over a full retrain."""

    constant = "constant"
    cosine = "cosine"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Config):
    """Where every piece of state lives, all under one root folder."""

    root: Path = Field(default_factory=default_home)
    # The MLflow store (SQLite database + mlruns/ artifacts) lives in the project folder by
    # default, apart from the data, as the repository layout promises.
    tracking_home: Path = Field(default_factory=default_tracking_home)

    @property
    def landing_events(self) -> Path:
        return self.root / "landing" / "events"

    @property
    def landing_items(self) -> Path:
        return self.root / "landing" / "items"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def features_db(self) -> Path:
        return self.root / "features.duckdb"

    @property
    def mlflow_db(self) -> Path:
        return self.tracking_home / "mlflow.db"

    @property
    def mlruns(self) -> Path:
        return self.tracking_home / "mlruns"

    @property
    def recommendations_db(self) -> Path:
        """Batch top-K lists: written by the batch scorer only, read by consumers."""
        return self.root / "recommendations.duckdb"

    @property
    def recommendations_export(self) -> Path:
        return self.root / "exports" / "recommendations.parquet"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def raw(self) -> Path:
        """Default output folder of ``recsys generate``."""
        return self.root / "raw"


class IngestConfig(_Config):
    """Validation limits applied to every incoming row."""

    max_id_len: int = 256
    max_text_len: int = 4096
    # Clock skew we tolerate before calling a timestamp "in the future".
    max_future_seconds: int = 24 * 3600
    # Anything before this is a unit bug (ms read as s) or a placeholder date.
    min_ts: str = "1990-01-01"
    event_types: tuple[str, ...] = EVENT_TYPES


class FeatureConfig(_Config):
    """Feature extraction knobs."""

    max_seq_len: int = 200
    # Popularity window (days, ending at the newest event) for item stats.
    popularity_window_days: float = 7.0
    # Users need at least this many interactions to enter the splits
    # (leave-last-out needs a history, a validation and a test item).
    min_user_events: int = 3
    # Temporal split: the validation period starts at this quantile of event time,
    # the test period at the second one.
    temporal_valid_quantile: float = 0.8
    temporal_test_quantile: float = 0.9
    # Text encoder for item titles/categories/descriptions: "wordllama" (offline, default),
    # "sentence-transformers:<model>" (optional extra) or "none" (id-only item tower).
    text_encoder: str = "wordllama"


class ModelConfig(_Config):
    """Size and shape of the sequential recommender (SASRec user tower, id+text item tower)."""

    d_model: int = 64
    n_blocks: int = 2
    n_heads: int = 2
    # Longest behaviour sequence the user tower reads (most recent items kept).
    max_len: int = 50
    dropout: float = 0.2
    # Add the text projection to the item tower; items with no text simply get none.
    use_text: bool = True
    # Drop an item's id embedding with this probability while training, so the text part
    # alone must carry meaning: this is what makes never-clicked items recommendable.
    id_dropout: float = 0.1
    # Every weight matrix and embedding starts at N(0, init_std), as in SASRec's reference code
    # and GPT-2; None keeps PyTorch's per-layer defaults. 0.02 lifted test NDCG@10 on Amazon
    # Beauty from 0.0244 to 0.0271 and on the synthetic demo from 0.354 to 0.376 (README).
    init_std: float | None = 0.02
    # Learned event-type embedding (view/click/cart/purchase/rating) added to each position.
    use_event_types: bool = True
    # "softmax": full cross-entropy over the catalogue (best quality); "sampled": sampled
    # softmax with log-Q correction, for catalogues too large for a full softmax.
    loss: Loss = Loss.softmax
    n_negatives: int = 1024
    # Share of the full softmax's target spread evenly over all items (F.cross_entropy's
    # label_smoothing): a regulariser against over-confident scores on sparse data.
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _smoothing_needs_the_full_softmax(self) -> ModelConfig:
        if self.label_smoothing and self.loss != Loss.softmax:
            raise ValueError(f"label_smoothing={self.label_smoothing} needs loss='softmax', "
                             f"not {self.loss.value!r}: sampled softmax sees only some items")
        return self


class TrainConfig(_Config):
    """How a full retrain runs. Every field is logged as an MLflow parameter."""

    protocol: Protocol = Protocol.leave_last_out
    max_epochs: int = 30
    batch_size: int = 128
    # Higher than SASRec's 1e-3: with pre-norm blocks it converges in a third of the epochs
    # (measured on ml-100k, bench/model_quality.py) with no loss in quality.
    lr: float = 3e-3
    # "constant", or "cosine": per step from lr down to 0 at max_epochs, so the last epochs
    # take small steps (early stopping may end the run before the bottom). On Amazon Beauty with
    # averaged weights it tested NDCG@10 0.0374 against constant's 0.0377 (README), so the
    # default stays constant.
    lr_schedule: LrSchedule = LrSchedule.constant
    # AdamW's decoupled decay, on weight matrices and embeddings only (module.make_optimizer).
    weight_decay: float = Field(0.0, ge=0.0)
    # Early stopping on validation NDCG@10.
    patience: int = 3
    seed: int = 42
    # Deterministic kernels (torch.use_deterministic_algorithms, warn-only where an op has none).
    # Without them, bf16 training on 2 CPU threads gave different test NDCG@10 from run to run
    # (0.26920 / 0.26926 after 4 epochs of the demo data); with them, the same figure each time
    # and no measurable cost in throughput.
    deterministic: bool = True
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    # "auto": bf16 mixed precision on CUDA and on CPUs with AMX tiles, else fp32 (see trainer.py).
    precision: str = "auto"
    # Limit validation to this many users per epoch (0 = all); the test set is always complete.
    max_val_users: int = 0
    # Batches are cut from windows of this many batches sorted by length, so little work goes
    # to padding; 1 = plain random batches. Bucketing gives each batch, not each position, an
    # equal step, which costs quality: random batches lifted test NDCG@10 from 0.0271 to 0.0308
    # on Amazon Beauty and from 0.376 to 0.404 on the synthetic demo, at ~15-30% more time per
    # epoch (README, "Model quality"). Raise it (50) when epochs must be fast.
    bucket_window: int = Field(1, ge=1)
    # Cap on optimizer steps per epoch (0 = a full pass), for smoke runs and fine-tunes.
    max_steps_per_epoch: int = 0
    # Validate, checkpoint and ship an exponential moving average of the weights (decay per
    # optimizer step, e.g. 0.999 averages over ~1,000 steps); 0 = the raw weights. Lightning's
    # EMAWeightAveraging does the averaging.
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    num_workers: int = 0
    # Popularity baseline window in days before the training cut-off (None = all time).
    popularity_window_days: float | None = 7.0
    # Item-to-item CF: co-occurrence window (positions) and neighbours kept per item.
    cf_window: int = 3
    cf_neighbours: int = 100
    # Users of the test split saved with the model as the guard set: every micro-batch
    # descendant must still rank their held-out items (catches forgetting).
    guard_users: int = 1000
    progress_bar: bool = True


class EvalConfig(_Config):
    """Full-ranking evaluation settings, shared by the model and every baseline."""

    ks: tuple[int, ...] = (10, 20)
    # Remove items already in the user's history from the ranking. SASRec-style benchmarks keep
    # them (False): re-consumption is a legitimate next item. Reported with every result.
    exclude_seen: bool = False
    batch_size: int = 512


class TrackingConfig(_Config):
    """MLflow tracking: ``$MLFLOW_TRACKING_URI`` wins over the local SQLite default."""

    experiment: str = "recsys"
    registered_model: str = "recsys-seqrec"
    register_model: bool = True


class GateConfig(_Config):
    """When a candidate may replace the champion.

    Both are scored, test-then-train, on events neither was trained on: the newest events of
    the batch and a fixed guard set from older data (forgetting shows up there).
    """

    # The challenger may be worse than the champion by at most this fraction of the champion's
    # NDCG@10, on the held-out batch events and on the guard set alike.
    tolerance: float = Field(0.05, ge=0.0, le=1.0)
    # ... and the drop must also exceed this many standard errors of the paired per-case
    # difference: with a few thousand cases NDCG@10 moves by several percent on noise alone,
    # and a gate that reacts to noise stalls the pipeline. 0 compares point estimates only.
    z: float = Field(2.0, ge=0.0)
    # Recommendations have collapsed when the top-10 lists of the evaluated users hold fewer
    # than this fraction of the distinct items the champion's lists hold.
    min_distinct_ratio: float = Field(0.5, ge=0.0, le=1.0)
    # A full retrain must beat the popularity baseline on its own test split by this factor.
    full_min_lift_over_popularity: float = 1.0


class UpdateConfig(_Config):
    """The every-minute micro-batch fine-tune of the champion."""

    # Optimiser steps per update; the fine-tune stops earlier when the batch is used up.
    max_steps: int = Field(40, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = 1e-3
    # Passes over the batch; the first always covers every new event, later ones stop at
    # max_steps. More than one helps when updates are rare and large (hours of events).
    epochs: int = Field(1, ge=1)
    # Replayed older sequences per sequence of new events, so the model does not forget.
    replay_ratio: float = Field(1.0, ge=0.0)
    # As TrainConfig.bucket_window: 1 = plain random batches, which mix new and replayed
    # sequences in every step; larger windows group them by length.
    bucket_window: int = Field(1, ge=1)
    # Share of the batch's newest events (whole ingestion parts) held out to judge the
    # candidate; they are trained on by the next update, after being tested on.
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # At most this many held-out events are scored (a seeded sample).
    max_eval_events: int = 2000
    # At most this many events per update; a bigger backlog is worked off over several runs.
    max_batch_events: int = 200_000
    # Seeds the sampler and dropout; with deterministic kernels the same batch and champion
    # give the same candidate (as TrainConfig.deterministic).
    seed: int = 42
    deterministic: bool = True
    accelerator: str = "auto"
    precision: str = "auto"
    # Skip the update when the batch has fewer new events than this (0 = any).
    min_events: int = 0


class RetentionConfig(_Config):
    """What the registry keeps when a version is added every minute.

    Aliased versions (champion, previous-champion, challenger) are always kept. Older versions
    lose their model artifacts and registry entry; their MLflow runs (metrics, lineage tags)
    stay, so the history remains browsable at a few KB per update.
    """

    keep_incremental: int = Field(10, ge=0)
    keep_full: int = Field(5, ge=1)


class BacktestConfig(_Config):
    """Prequential replay: test each window on every model, then let each learn it."""

    # Share of events (by time) the static model is trained on before the replay starts.
    initial_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    windows: int = Field(10, ge=1)
    # Ingestion parts per window: the micro-batch holds out only the newest part, so more
    # parts means a fresher incremental model.
    parts_per_window: int = Field(4, ge=2)
    # A full retrain every this many windows (0 = never).
    full_every: int = Field(5, ge=0)
    max_eval_events: int = 2000


class ScoreConfig(_Config):
    """Batch scoring of active users with the champion."""

    k: int = Field(10, ge=1)
    # Users with an event in this many days before the newest event are scored.
    window_days: float = Field(30.0, gt=0)
    # Remove items the user purchased or rated (not mere views: re-viewing is normal).
    exclude_purchased: bool = True
    exclude_seen: bool = False
    exclude_categories: tuple[str, ...] = ()
    # Only items already released (created_at <= now) are recommended.
    only_released: bool = True
    chunk_size: int = Field(512, ge=1)
    progress_bar: bool = True
