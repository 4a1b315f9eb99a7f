"""Typed configuration with defaults that run.

Nothing here touches the disk at import time: paths are resolved when a
config object is built, so tests can point a whole pipeline at a temp folder
with ``Paths(root=tmp_path)``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


class BlockLayout(StrEnum):
    pre_norm = "pre_norm"
    sasrec = "sasrec"


class Protocol(StrEnum):
    """Evaluation split."""

    leave_last_out = "leave_last_out"
    temporal = "temporal"


class SyntheticPreset(StrEnum):
    """Size of a synthetic world (``recsys.data.synthetic.PRESETS``)."""

    tiny = "tiny"
    small = "small"
    medium = "medium"
    large = "large"


class DatasetFormat(StrEnum):
    """File formats the dataset loaders read (``recsys.data.loaders``)."""

    contract = "contract"
    movielens = "movielens"
    ml100k = "ml100k"
    retailrocket = "retailrocket"
    sasrec = "sasrec"


class LrSchedule(StrEnum):
    """Learning-rate schedule over a full retrain."""

    constant = "constant"
    cosine = "cosine"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Config):
    """Where every piece of state lives, all under one root folder."""

    root: Path = Field(default_factory=default_home,
                       description="Project data folder: $RECSYS_HOME if set, else ./data.")
    tracking_home: Path = Field(
        default_factory=default_tracking_home,
        description="Folder of the local MLflow store (SQLite database + mlruns/ artifacts), "
                    "apart from the data: $RECSYS_TRACKING_HOME if set, else the current folder.")

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
    def intake(self) -> Path:
        """The HTTP intake journal: fsynced segments not yet sealed into landing parts."""
        return self.root / "landing" / "intake"

    @property
    def experiments(self) -> Path:
        """One JSON record per online experiment (``recsys experiment``)."""
        return self.root / "experiments"

    @property
    def impressions(self) -> Path:
        """What was shown: immutable Parquet parts written by the real-time service."""
        return self.root / "impressions"

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
    """Validation limits applied to every incoming row.

    The accepted event types are not configurable: ``columns.EVENT_TYPES`` fixes them, as do
    the store's SQL enum and the model's event-type embedding.
    """

    max_id_len: int = 256
    max_text_len: int = 4096
    # Clock skew we tolerate before calling a timestamp "in the future".
    max_future_seconds: int = 24 * 3600
    # Anything before this is a unit bug (ms read as s) or a placeholder date.
    min_ts: str = "1990-01-01"


class FeatureConfig(_Config):
    """Feature extraction knobs."""

    max_seq_len: int = Field(200, ge=1, description="Events kept per user sequence.")
    popularity_window_days: float = Field(
        7.0, gt=0,
        description="Popularity window in days, ending at the newest event: item stats, the "
                    "popularity baseline (before the training cut-off) and the service's "
                    "cold-start list.")
    min_user_events: int = Field(
        3, ge=1,
        description="Interactions a user needs to enter the splits (leave-last-out needs a "
                    "history, a validation and a test item).")
    temporal_valid_quantile: float = Field(
        0.8, gt=0, lt=1,
        description="Temporal split: the validation period starts at this quantile of event time.")
    temporal_test_quantile: float = Field(
        0.9, gt=0, lt=1,
        description="Temporal split: the test period starts at this quantile of event time.")
    text_encoder: str = Field(
        "wordllama",
        description="Item text encoder: wordllama (offline), sentence-transformers:<model> "
                    "(optional extra), or none (id-only item tower).")


class ModelConfig(_Config):
    """Size and shape of the sequential recommender (SASRec user tower, id+text item tower)."""

    d_model: int = Field(64, ge=1, description="Embedding / hidden size.")
    n_blocks: int = Field(
        2, ge=1,
        description="Transformer blocks in the user tower. Left unset, a full retrain whose "
                    "max_len is over 50 takes 3 (recsys.training.sizing); in the Prefect form, "
                    "left at 2.")
    n_heads: int = Field(2, ge=1, description="Attention heads.")
    max_len: int = Field(
        50, ge=1,
        description="Most recent items the user tower reads. Left unset, a full retrain takes "
                    "the 90th percentile of the training sequences' lengths, rounded down to a "
                    "multiple of 50, within 50-200 (recsys.training.sizing); in the Prefect "
                    "form, left at 50.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout in the user tower.")
    attention_dropout: float | None = Field(
        None, ge=0.0, lt=1.0,
        description="Dropout on the attention weights (unset: the same as dropout). 0 lets "
                    "training use the fused attention kernel instead of materialising every "
                    "(query, key) weight: faster on long sequences (bench/train_step.py --long).")
    block_layout: BlockLayout = Field(
        BlockLayout.pre_norm,
        description="pre_norm: LayerNorm before attention and feed-forward (GELU), residuals "
                    "around both; sasrec: SASRec's reference layout (normalised query carries "
                    "the residual, ReLU feed-forward), to compare with the published recipe.")
    use_text: bool = Field(
        True, description="Add the text projection to the item tower (items with no text get "
                          "none).")
    id_dropout: float = Field(
        0.1, ge=0.0, lt=1.0,
        description="Probability of dropping an item's id embedding while training, so the text "
                    "part alone must carry meaning (makes never-clicked items recommendable).")
    init_std: float | None = Field(
        0.02, ge=0.0,
        description="Every weight matrix and embedding starts at N(0, init_std), as in SASRec's "
                    "reference code and GPT-2; 0 or None keeps PyTorch's per-layer defaults.")
    use_event_types: bool = Field(
        True, description="Add a learned event-type embedding (view/click/cart/purchase/rating) "
                          "to each position.")
    loss: Loss = Field(
        Loss.softmax,
        description="softmax: full cross-entropy over the catalogue; sampled: sampled softmax "
                    "with log-Q correction, for catalogues too large for a full softmax.")
    n_negatives: int = Field(1024, ge=1, description="Negatives per batch for the sampled loss.")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Share of the full softmax's target spread evenly over all items "
                    "(F.cross_entropy's label_smoothing); full softmax only.")

    @field_validator("init_std")
    @classmethod
    def _zero_std_means_pytorch_defaults(cls, value: float | None) -> float | None:
        return value or None

    @model_validator(mode="after")
    def _smoothing_needs_the_full_softmax(self) -> ModelConfig:
        if self.label_smoothing and self.loss != Loss.softmax:
            raise ValueError(f"label_smoothing={self.label_smoothing} needs loss='softmax', "
                             f"not {self.loss.value!r}: sampled softmax sees only some items")
        return self


class TrainConfig(_Config):
    """How a full retrain runs. Every field is logged as an MLflow parameter."""

    protocol: Protocol = Field(Protocol.leave_last_out, description="Evaluation split.")
    max_epochs: int = Field(30, ge=1,
                            description="Maximum epochs (early stopping on validation NDCG@10).")
    batch_size: int = Field(128, ge=1, description="Sequences per optimiser step.")
    lr: float = Field(
        3e-3, gt=0,
        description="AdamW learning rate (higher than SASRec's 1e-3: pre-norm blocks converge "
                    "in fewer epochs with it).")
    lr_schedule: LrSchedule = Field(
        LrSchedule.constant,
        description="constant, or cosine: per step from lr down to 0 at max_epochs. Constant "
                    "scored higher on validation (docs/benchmarks.md).")
    weight_decay: float = Field(
        0.0, ge=0.0,
        description="AdamW's decoupled weight decay, on weight matrices and embeddings only "
                    "(not norms or biases).")
    patience: int = Field(3, ge=1,
                          description="Epochs without a better validation NDCG@10 before stopping.")
    seed: int = Field(42, description="Random seed.")
    deterministic: bool = Field(
        True, description="Deterministic kernels (warn-only where an op has none), so the same "
                          "data and seed give the same model.")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu ...")
    devices: int | str = Field("auto", description="auto or a number of devices/processes.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, ddp_spawn ...")
    precision: str = Field(
        "auto", description="auto (bf16 mixed precision on CUDA; on a CPU bf16 only where a "
                            "short timing of the model measured it >= 1.15x as fast as fp32, "
                            "cached per machine), 32-true, bf16-mixed ...")
    max_val_users: int = Field(
        0, ge=0, description="Validate on at most this many users per epoch (0 = all); the test "
                             "set is always complete.")
    bucket_window: int = Field(
        1, ge=1,
        description="Batches are cut from windows of this many length-sorted batches; 1 = plain "
                    "random batches (chosen on validation, docs/benchmarks.md), 50 = least "
                    "padding and fastest epochs.")
    max_steps_per_epoch: int = Field(
        0, ge=0, description="Cap on optimiser steps per epoch (0 = a full pass).")
    ema_decay: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Validate, checkpoint and ship an exponential moving average of the weights "
                    "(decay per optimiser step, e.g. 0.999); 0 = the raw weights.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    cf_window: int = Field(
        3, ge=1, description="Item-to-item CF baseline: co-occurrence window (positions).")
    cf_neighbours: int = Field(100, ge=1,
                               description="Item-to-item CF baseline: neighbours kept per item.")
    guard_users: int = Field(
        1000, ge=0,
        description="Test users saved with the model as the guard set: every micro-batch "
                    "descendant must still rank their held-out items (catches forgetting).")
    progress_bar: bool = Field(True, description="Show a progress bar.")

    @field_validator("devices", mode="before")
    @classmethod
    def _device_count(cls, value: int | str) -> int | str:
        return int(value) if isinstance(value, str) and value.isdigit() else value


class EvalConfig(_Config):
    """Full-ranking evaluation settings, shared by the model and every baseline."""

    ks: tuple[int, ...] = Field((10, 20), description="Cut-offs of NDCG@k and HR@k.")
    exclude_seen: bool = Field(
        False,
        description="Remove items already in the user's history from rankings in evaluation "
                    "(SASRec-style benchmarks keep them: re-consumption is a legitimate next "
                    "item).")
    batch_size: int = Field(512, ge=1, description="Users ranked per batch.")


class TrackingConfig(_Config):
    """MLflow tracking: which store, which experiment, which registered model."""

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; empty: $MLFLOW_TRACKING_URI if set, else the "
                          "local SQLite store under Paths.tracking_home.")
    experiment: str = Field("recsys", description="MLflow experiment of the runs.")
    registered_model: str = Field("recsys-seqrec",
                                  description="Registered model the versions belong to.")
    register_model: bool = Field(True, description="Register the trained model as a version.")


class GateConfig(_Config):
    """When a candidate may replace the champion.

    A micro-batch candidate and the champion are both scored, test-then-train, on events
    neither was trained on: the newest events of the batch and a fixed guard set from older
    data (forgetting shows up there). A full retrain must first beat popularity on its
    validation split; with a champion in place it is then scored against the champion, with the
    same tolerance and z rule, on events neither has trained on (``training/challenge.py``).
    """

    tolerance: float = Field(
        0.05, ge=0.0, le=1.0,
        description="The challenger may be worse than the champion by at most this fraction of "
                    "the champion's NDCG@10, on the held-out batch events and on the guard set.")
    # With a few thousand cases NDCG@10 moves by several percent on noise alone, and a gate
    # that reacts to noise stalls the pipeline.
    z: float = Field(
        2.0, ge=0.0,
        description="... and the drop must also exceed this many standard errors of the paired "
                    "per-case difference (0 compares point estimates only).")
    min_distinct_ratio: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Recommendations have collapsed when the top-10 lists hold fewer than this "
                    "fraction of the distinct items the champion's lists hold.")
    full_min_lift_over_popularity: float = Field(
        1.0, ge=0.0,
        description="A full retrain must beat the popularity baseline's validation NDCG@10 by "
                    "this factor.")
    # 50 cases: a drop from 0.35 to 0.18 NDCG@10 (per-case sd about 0.4) is about 3 standard
    # errors, so a clearly worse candidate is caught; fewer cases and it waits as challenger.
    unseen_min_events: int = Field(
        50, ge=1,
        description="A full retrain is compared with the champion only on at least this many "
                    "events neither has trained on; with fewer it waits as challenger.")
    unseen_max_events: int = Field(
        5000, ge=1,
        description="Most events neither model has trained on scored in that comparison (a "
                    "seeded sample).")
    full_retrain_online: bool = Field(
        False,
        description="Where live traffic exists: a full retrain that passes validation waits as "
                    "challenger and an online experiment (ExperimentConfig defaults) decides, "
                    "instead of the offline comparison on unseen events; the experiment-decision "
                    "flow starts a waiting challenger's experiment when none is running.")


class UpdateConfig(_Config):
    """The every-minute micro-batch fine-tune of the champion."""

    max_steps: int = Field(
        40, ge=1, description="Most optimiser steps per update; the fine-tune stops earlier when "
                              "the batch is used up.")
    batch_size: int = Field(256, ge=1,
                            description="Sequences per step (grows to fit max_steps).")
    lr: float = Field(1e-3, gt=0, description="Fine-tune learning rate.")
    epochs: int = Field(
        1, ge=1,
        description="Passes over the batch: the first covers every new event, later ones stop "
                    "at max_steps (helps when updates are rare and large).")
    replay_ratio: float = Field(
        1.0, ge=0.0, description="Replayed older sequences per sequence with new events, so the "
                                 "model does not forget.")
    bucket_window: int = Field(
        1, ge=1, description="As TrainConfig.bucket_window: 1 = random batches that mix new and "
                             "replayed sequences in every step.")
    holdout_fraction: float = Field(
        0.2, gt=0.0, lt=1.0,
        description="Share of the newest events (whole ingestion parts) held out to test the "
                    "candidate on; the next update trains on them.")
    max_eval_events: int = Field(2000, ge=1,
                                 description="Most held-out events scored (a seeded sample).")
    max_batch_events: int = Field(
        200_000, ge=1,
        description="Most events per update; a larger backlog takes several updates.")
    seed: int = Field(
        42, description="Seeds the sampler and dropout: with deterministic kernels the same "
                        "batch and champion give the same candidate.")
    deterministic: bool = Field(True, description="Deterministic kernels, as in TrainConfig.")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu ...")
    precision: str = Field("auto", description="As TrainConfig.precision.")
    min_events: int = Field(
        0, ge=0, description="Skip the update when the batch has fewer new events (0 = any).")
    # The update runs every minute; loading, extraction, scoring both models and registering
    # took 6.5-9 s beside the fine-tune (docs/benchmarks.md), so 20 s of training leaves room.
    time_budget_s: float = Field(
        20.0, gt=0,
        description="Seconds the fine-tune may train (after at least one step); it stops "
                    "earlier at max_steps. The gate always scores the candidate in full; the "
                    "share of the batch trained on is reported (finetune_share).")


class RetentionConfig(_Config):
    """What the registry keeps when a version is added every minute.

    Aliased versions (champion, previous-champion, challenger) are always kept. Older versions
    lose their model artifacts and registry entry; their MLflow runs (metrics, lineage tags)
    stay, so the history remains browsable at a few KB per update.
    """

    keep_incremental: int = Field(
        10, ge=0, description="Incremental versions kept (aliased ones always are).")
    keep_full: int = Field(5, ge=1, description="Full-retrain versions kept.")


class BacktestConfig(_Config):
    """Prequential replay: test each window on every model, then let each learn it."""

    initial_fraction: float = Field(
        0.5, gt=0.0, lt=1.0,
        description="Share of events (by time) the static model is trained on before the "
                    "replay starts.")
    windows: int = Field(10, ge=1, description="Replay windows after the initial period.")
    parts_per_window: int = Field(
        4, ge=2, description="Ingestion parts per window: the micro-batch holds out only the "
                             "newest part, so more parts means a fresher incremental model.")
    full_every: int = Field(5, ge=0,
                            description="Windows between full retrains (0 = never).")
    max_eval_events: int = Field(2000, ge=1,
                                 description="Most events scored per window (a seeded sample).")


class BacktestData(_Config):
    """What a backtest replays: a dataset, or else a synthetic world."""

    dataset: str | None = Field(
        None, description="Dataset file or folder to replay; none = synthetic data of `synthetic`.")
    format: DatasetFormat = Field(DatasetFormat.contract, description="Format of `dataset`.")
    synthetic: SyntheticPreset = Field(SyntheticPreset.tiny,
                                       description="Synthetic world when no dataset is given.")


class ScoreConfig(_Config):
    """Batch scoring of active users with the champion."""

    k: int = Field(10, ge=1, description="Items per user.")
    window_days: float = Field(
        30.0, gt=0,
        description="Score users with an event in this many days before the newest event.")
    exclude_purchased: bool = Field(
        True, description="Remove items the user purchased or rated (not mere views: "
                          "re-viewing is normal).")
    exclude_seen: bool = Field(False, description="Remove every item the user has seen.")
    exclude_categories: tuple[str, ...] = Field(
        (), description="Never recommend items of these categories.")
    only_released: bool = Field(
        True, description="Recommend only items already released (created_at <= now).")
    chunk_size: int = Field(512, ge=1, description="Users scored per chunk (bounds memory).")
    progress_bar: bool = Field(True, description="Show a progress bar.")


class ServeConfig(_Config):
    """The real-time service (``recsys serve``)."""

    host: str = Field("127.0.0.1", description="Interface to bind (keep 127.0.0.1 behind a proxy).")
    port: int = Field(8000, ge=1, le=65535, description="Port.")
    access_log: bool = Field(
        False, description="One log line per request (uvicorn's access log). Off by default: "
                           "at a thousand requests a second it is a few percent of the event "
                           "loop and buries the service's own lines; a proxy in front logs "
                           "requests better.")


class IntakeConfig(_Config):
    """Events over HTTP (``POST /events``): durability, batching and request limits."""

    group_window_ms: float = Field(
        2.0, ge=0, le=1000,
        description="After the first waiting request, how long the intake writer gathers more "
                    "to share one journal write and one fsync (group commit).")
    seal_interval_s: float = Field(
        1.0, gt=0, le=60,
        description="Seconds between sealing the fsynced intake journal into an immutable "
                    "landing part (the pipeline sees posted events within this time).")
    max_request_events: int = Field(10_000, ge=1, description="Most events in one request.")
    max_request_bytes: int = Field(5_000_000, ge=1, description="Largest request body.")


class ImpressionConfig(_Config):
    """What the service logs about each answer it gives (the impressions zone)."""

    enabled: bool = Field(True, description="Log every served list as impressions.")
    flush_interval_s: float = Field(
        1.0, gt=0, le=60,
        description="Seconds between writes of buffered impressions to a Parquet part; a "
                    "crash loses at most this window of impressions.")
    max_buffer_rows: int = Field(200_000, ge=1,
                                 description="Buffered impressions that force an early write.")


class AttributionConfig(_Config):
    """How reactions are tied to what was shown, and what the online report covers."""

    window_minutes: float = Field(
        30.0, gt=0,
        description="A click, cart or purchase without a request_id is credited to the latest "
                    "impression of that item to that user within this many minutes before it.")
    k: int = Field(10, ge=1, description="Cut-off of CTR@k: impressions at positions 1..k.")
    hours: float = Field(24.0, gt=0, description="Hours of impressions the report covers.")


class ExperimentMode(StrEnum):
    ab = "ab"
    interleave = "interleave"


class ExperimentMetric(StrEnum):
    ctr = "ctr"
    purchase_rate = "purchase_rate"


class ExperimentConfig(_Config):
    """An online experiment: champion against challenger on live (or simulated) traffic."""

    control: str = Field("champion", description="Alias or version number of the control arm.")
    treatment: str = Field(
        "challenger",
        description="Alias or version number of the treatment arm. challenger: the newest "
                    "version waiting as challenger (a full retrain tagged decision=challenger "
                    "that no experiment has judged), else the challenger alias.")
    mode: ExperimentMode = Field(
        ExperimentMode.interleave,
        description="ab: each user sees one arm's list; interleave: one team-draft list mixing "
                    "both, credit by whose items are clicked (far fewer users needed).")
    traffic_share: float = Field(1.0, gt=0, le=1,
                                 description="Share of users in the experiment.")
    metric: ExperimentMetric = Field(
        ExperimentMetric.ctr,
        description="Primary metric of an A/B test: CTR@k or purchases per impression "
                    "(interleaving credits clicks).")
    guardrail: ExperimentMetric | None = Field(
        ExperimentMetric.purchase_rate,
        description="A/B guardrail: a significant drop stops the experiment early (none: off).")
    alpha: float = Field(0.05, gt=0, lt=0.5,
                         description="Significance level of the always-valid test.")
    effect_scale: float = Field(
        0.1, gt=0,
        description="Mixing scale of the mixture SPRT, as a relative lift of the control's "
                    "metric (interleaving: as a preference margin): the size of effect the "
                    "test is most sensitive to.")
    min_minutes: float = Field(5.0, ge=0, description="No decision before this many minutes.")
    max_minutes: float = Field(
        120.0, gt=0, description="An experiment still undecided then ends inconclusive.")
    min_users: int = Field(30, ge=1,
                           description="Users per arm (or in the interleaved list) before any "
                                       "decision: a clustered variance needs a few.")


class SimulateConfig(_Config):
    """Simulated users (``recsys simulate``): the synthetic world's people, through the service.

    They ask the real-time service for lists and react as the world's ground truth says
    (``recsys.data.world``), never by the model's scores.
    """

    url: str | None = Field(
        None, description="Base URL of the real-time service (default: http://<host>:<port> "
                          "of ServeConfig).")
    rate: float = Field(5.0, gt=0, le=10_000,
                        description="Recommendation requests per second, on average (Poisson "
                                    "arrivals, one user each).")
    duration_s: float = Field(600.0, ge=0,
                              description="Seconds before it stops by itself (0: until stopped).")
    k: int = Field(10, ge=1, le=1000, description="Items asked for per request.")
    eta: float = Field(
        1.0, ge=0, description="Position bias eta: the item at position p of a list is looked "
                               "at with probability (1/p)^eta (0: every item is looked at).")
    organic_share: float = Field(
        0.3, ge=0, le=1,
        description="Chance per request that the user also views, on their own, the item the "
                    "world's own process picks next (histories move without clicks too).")
    seed: int = Field(0, description="Random seed of arrivals, users and their reactions.")
    batch_events: int = Field(500, ge=1, le=10_000, description="Most events per POST /events.")
    flush_interval_s: float = Field(
        1.0, gt=0, description="Seconds between posts of the events gathered meanwhile.")
    report_every_s: float = Field(10.0, gt=0, description="Seconds between progress reports.")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one call.")
    max_backoff_s: float = Field(
        10.0, gt=0, description="Longest wait between retries while the service does not "
                                "answer (it doubles from 0.25 s).")


class TrafficSource(StrEnum):
    """Where the local stack's live traffic comes from (``recsys.traffic``)."""

    simulate = "simulate"
    replay_loop = "replay-loop"


class StackConfig(_Config):
    """The local stack (``recsys stack up``): ports, and the synthetic world it starts with."""

    host: str = Field("127.0.0.1", description="Interface every service binds.")
    prefect_port: int = Field(4200, description="Prefect server port (UI and API).")
    mlflow_port: int = Field(5000, description="MLflow tracking server port.")
    serve_port: int = Field(8000, ge=1, le=65535,
                            description="Port of the real-time service the stack starts.")
    preset: SyntheticPreset = Field(SyntheticPreset.small,
                                    description="Synthetic world to start with.")
    traffic: TrafficSource = Field(
        TrafficSource.simulate,
        description="Live traffic: simulate (the world's users ask the real-time service and "
                    "post their reactions; needs raw/world.npz) or replay-loop (the world's "
                    "events lap after lap). Without a world file the stack replays.")
    live_fraction: float = Field(
        0.2, ge=0.0, le=1.0,
        description="With replay-loop traffic: newest share of events held back from the first "
                    "full retrain and replayed live (simulated traffic is new: all history "
                    "lands).")
    speedup: float = Field(
        2880.0, gt=0, description="Replay speed: event seconds per wall second (2880 = 2 days "
                                  "of events per minute).")
    tick_seconds: float = Field(10.0, gt=0, description="Wall seconds between replay ingests.")
    epochs: int = Field(10, ge=1, description="Epochs of the first full retrain.")
    health_timeout_s: float = Field(
        180.0, gt=0, description="Seconds a service may take to become healthy.")


class WaitPolicy(StrEnum):
    """What an OpenMP thread does while it waits for work (``OMP_WAIT_POLICY``)."""

    passive = "passive"  # sleep at once: a waiting thread leaves its core to other processes
    active = "active"  # spin: lowest latency when the process has its cores to itself
    default = "default"  # leave the OpenMP library's own default (libgomp: spin ~300k turns)


class ThreadConfig(_Config):
    """Thread budgets: how many cores each job of the stack uses (``recsys.threads``).

    Unset counts come from the machine's cores and what the local stack runs beside each job
    (docs/compute.md). Two processes that each use every core, spinning while they wait, make
    far less progress together than one alone: 3% of solo speed each, where a fair share is 50%.
    """

    enabled: bool = Field(
        True, description="Apply the budgets; off, every process keeps torch's defaults (every "
                          "core, spinning waits): the baseline of bench/contention.py.")
    cores: int | None = Field(
        None, ge=1, description="Cores the jobs share (unset: this process's CPU affinity, "
                                "capped by a cgroup CPU quota).")
    full_retrain: int | None = Field(
        None, ge=1, description="Intra-op threads of a full retrain (unset: from the plan).")
    micro_batch: int | None = Field(
        None, ge=1, description="Intra-op threads of a micro-batch update (unset: from the plan).")
    score: int | None = Field(
        None, ge=1, description="Intra-op threads of batch scoring (unset: from the plan).")
    service: int | None = Field(
        None, ge=1, description="Intra-op threads of the real-time service's model work (unset: "
                                "from the plan; reserved for it whatever else runs).")
    traffic: int | None = Field(
        None, ge=1, description="Threads of the live traffic or simulator (unset: from the plan).")
    interop: int = Field(
        1, ge=1, description="Inter-op threads of every job: the models run no parallel "
                             "branches, so more only add idle threads.")
    wait_policy: WaitPolicy = Field(
        WaitPolicy.passive,
        description="OpenMP wait policy of each job's process (set before torch starts): "
                    "passive threads sleep instead of spinning on cores other jobs need.")
