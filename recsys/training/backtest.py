"""Freshness measured: a prequential replay of a dataset through the real pipeline.

Events are replayed in time order, window by window, into a private project folder (landing
zone, feature store, MLflow registry). Each window is first scored by every model, then learnt:

* ``static``: trained once on the first ``initial_fraction`` of events, never updated;
* ``micro``: the champion, updated after every window by the real micro-batch update (gate
  included, so a rejected candidate leaves it as it was);
* ``full``: retrained from scratch every ``full_every`` windows, not updated in between.

For each window: HR@10 and NDCG@10 of each model on the window's events (full ranking, history
before each event) and each model's freshness lag (window start minus the newest event it has
learnt from). The summary goes to the project's MLflow store as a table, JSON and a plot.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recsys.config import (
    BacktestConfig,
    EvalConfig,
    FeatureConfig,
    GateConfig,
    ModelConfig,
    Paths,
    TrackingConfig,
    TrainConfig,
    UpdateConfig,
)
from recsys.data.containers import EvalSet
from recsys.data.features import build_features, open_store
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone
from recsys.data.microbatch import holdout_set, refresh
from recsys.models import io
from recsys.models.seqrec import SeqRec
from recsys.registry import runs, tracking
from recsys.registry.registry import Registry
from recsys.timeutil import parse_ts, seconds_since
from recsys.training.full_retrain import TrainResult, train
from recsys.training.gate import score_set
from recsys.training.update import update

log = logging.getLogger(__name__)

MODELS = ("static", "micro", "full")


@dataclass
class Window:
    index: int
    start: dt.datetime
    end: dt.datetime
    events: int
    scored: int
    metrics: dict[str, dict[str, float]]  # model -> {"ndcg@10", "hr@10"}
    lag_s: dict[str, float]  # model -> seconds between its newest event and the window start
    update_status: str = ""


@dataclass
class BacktestResult:
    windows: list[Window] = field(default_factory=list)
    run_id: str | None = None

    def mean(self, model: str, metric: str, later_half: bool = False) -> float:
        ws = self.windows[len(self.windows) // 2:] if later_half else self.windows
        vals = [w.metrics[model][metric] for w in ws if w.scored]
        return sum(vals) / len(vals) if vals else float("nan")

    def mean_lag(self, model: str) -> float:
        vals = [w.lag_s[model] for w in self.windows if not math.isnan(w.lag_s[model])]
        return sum(vals) / len(vals) if vals else float("nan")

    def table(self) -> str:
        head = "| window | start | scored events | " + " | ".join(
            f"{m} NDCG@10 | {m} HR@10" for m in MODELS) + " | update |"
        lines = [head, "|---" * (3 + 2 * len(MODELS) + 1) + "|"]
        for w in self.windows:
            cells = " | ".join(f"{w.metrics[m]['ndcg@10']:.4f} | {w.metrics[m]['hr@10']:.4f}"
                               for m in MODELS)
            lines.append(f"| {w.index} | {w.start:%Y-%m-%d %H:%M} | {w.scored} | {cells} | "
                         f"{w.update_status} |")
        lines.append("")
        lines.append("| model | mean NDCG@10 | later-half NDCG@10 | mean HR@10 | mean lag (h) |")
        lines.append("|---|---|---|---|---|")
        for m in MODELS:
            lines.append(f"| {m} | {self.mean(m, 'ndcg@10'):.4f} | "
                         f"{self.mean(m, 'ndcg@10', later_half=True):.4f} | "
                         f"{self.mean(m, 'hr@10'):.4f} | {self.mean_lag(m) / 3600:.1f} |")
        return "\n".join(lines)

    def figure(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        x = [w.index for w in self.windows]
        for m in MODELS:
            axes[0].plot(x, [w.metrics[m]["ndcg@10"] for w in self.windows], marker="o", label=m)
            axes[1].plot(x, [w.lag_s[m] / 3600 for w in self.windows], marker="o", label=m)
        axes[0].set(title="NDCG@10 on the next window", xlabel="window", ylabel="NDCG@10")
        axes[1].set(title="freshness lag at window start", xlabel="window", ylabel="hours")
        for ax in axes:
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig


def _split_windows(events: pd.DataFrame, cfg: BacktestConfig):
    events = events.sort_values("ts", kind="stable", ignore_index=True)
    ts = pd.to_datetime(events["ts"])
    t0 = ts.quantile(cfg.initial_fraction)
    t_end = ts.max() + pd.Timedelta(microseconds=1)
    step = (t_end - t0) / cfg.windows
    initial = events[ts < t0]
    bounds = [t0 + step * i for i in range(cfg.windows + 1)]
    windows = [events[(ts >= bounds[i]) & (ts < bounds[i + 1])] for i in range(cfg.windows)]
    return initial, windows, bounds


def _lag(start: pd.Timestamp, newest: dt.datetime | None) -> float:
    lag = seconds_since(newest, start.to_pydatetime())
    return float("nan") if lag is None else lag


@dataclass
class _Model:
    """A model under test and the newest event it has learnt from."""

    net: SeqRec
    newest: dt.datetime | None


@dataclass
class _Replay:
    """The scratch project a replay writes into, and the settings of its three models."""

    paths: Paths
    tracking_cfg: TrackingConfig  # the scratch project's own MLflow store
    cfg: BacktestConfig
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    update_cfg: UpdateConfig
    gate_cfg: GateConfig
    feature_cfg: FeatureConfig
    registry: Registry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = Registry(self.paths, self.tracking_cfg)

    def version(self, version: str) -> _Model:
        with self.registry.model_folder(version) as folder:
            net, _, _ = io.load(folder)
        return _Model(net, self.registry.get(version).newest_event_ts)

    def retrain(self, register: bool) -> TrainResult:
        """A full retrain on everything landed so far (the initial one is registered)."""
        build_features(self.paths, self.feature_cfg)
        tracking_cfg = self.tracking_cfg.model_copy(update={"register_model": register})
        return train(self.paths, self.model_cfg, self.train_cfg, EvalConfig(), tracking_cfg,
                     self.gate_cfg)


def backtest(events: pd.DataFrame, items: pd.DataFrame | None, home: Path,
             cfg: BacktestConfig | None = None, model_cfg: ModelConfig | None = None,
             train_cfg: TrainConfig | None = None, update_cfg: UpdateConfig | None = None,
             gate_cfg: GateConfig | None = None, feature_cfg: FeatureConfig | None = None,
             report_paths: Paths | None = None) -> BacktestResult:
    """Replay ``events`` into ``home`` (a scratch project folder) and score the three models.

    The scratch project has its own SQLite MLflow store, whatever ``$MLFLOW_TRACKING_URI``
    says: replayed versions never reach a real registry. ``report_paths``: the project whose
    MLflow store receives the summary run (experiment ``recsys-backtest``); None logs nothing.
    """
    cfg = cfg or BacktestConfig()
    paths = Paths(root=home / "data", tracking_home=home / "tracking")
    r = _Replay(paths, TrackingConfig(tracking_uri=tracking.local_uri(paths)), cfg,
                model_cfg or ModelConfig(), train_cfg or TrainConfig(progress_bar=False),
                update_cfg or UpdateConfig(), gate_cfg or GateConfig(),
                feature_cfg or FeatureConfig(
                    text_encoder="wordllama" if items is not None else "none"))
    initial, windows, bounds = _split_windows(events, cfg)
    static = _first_model(r, items, initial)
    full = static
    log.info("backtest: %d initial events, %d windows of %s", len(initial), len(windows),
             bounds[1] - bounds[0])
    result = BacktestResult()
    for i, window in enumerate(windows):
        cases = _land_window(r, window, i, bounds[i], bounds[i + 1])
        champion = r.registry.champion()
        models = {"static": static, "micro": r.version(champion.version), "full": full}
        metrics, lags = _score_window(models, cases, bounds[i])
        # train: the micro-batch update learns the window (all but its newest part) ...
        outcome = update(paths, r.update_cfg, r.gate_cfg, tracking_cfg=r.tracking_cfg)
        # ... and the full retrain, at its slower cadence, everything so far.
        if cfg.full_every and (i + 1) % cfg.full_every == 0 and i + 1 < len(windows):
            retrain = r.retrain(register=False)
            full = _Model(io.load(retrain.model_dir)[0],
                          parse_ts(retrain.fingerprint.get("newest_event_ts")))
        result.windows.append(Window(i, bounds[i].to_pydatetime(), bounds[i + 1].to_pydatetime(),
                                     len(window), len(cases), metrics, lags, outcome.status))
        log.info("window %d: %s | update %s", i, ", ".join(
            f"{m} {metrics[m]['ndcg@10']:.4f}" for m in MODELS), outcome.status)
    if report_paths is not None:
        _log(result, report_paths, cfg)
    return result


def _first_model(r: _Replay, items: pd.DataFrame | None, initial: pd.DataFrame) -> _Model:
    """Land the items and the initial events, train and promote the first champion."""
    if items is not None:
        ingest_frame(items, "items", kind="items", data_paths=r.paths)
    ingest_frame(initial, "initial", data_paths=r.paths)
    first = r.retrain(register=True)
    if not first.promoted:
        raise RuntimeError(f"the initial full retrain was not promoted: {first.decision_reason}")
    return r.version(first.version)


def _land_window(r: _Replay, window: pd.DataFrame, index: int, start: pd.Timestamp,
                 end: pd.Timestamp) -> EvalSet:
    """Land the window part by part; returns its events as cases to test on (not learnt yet)."""
    zone = LandingZone(r.paths)
    lo = zone.max_seq()
    window_ts = pd.to_datetime(window["ts"])
    parts = r.cfg.parts_per_window
    for p in range(parts):
        a, b = start + (end - start) * p / parts, start + (end - start) * (p + 1) / parts
        part = window[(window_ts >= a) & (window_ts < b)]
        if len(part):
            ingest_frame(part, f"window{index}.{p}", data_paths=r.paths)
    with open_store(r.paths) as con:
        refresh(con, r.paths)
        return holdout_set(con, lo, zone.max_seq(), r.model_cfg.max_len, r.cfg.max_eval_events,
                           r.update_cfg.seed)


def _score_window(models: dict[str, _Model], cases: EvalSet,
                  start: pd.Timestamp) -> tuple[dict, dict]:
    """Every model's NDCG/HR@10 on the window, and its freshness lag at the window's start."""
    metrics, lags = {}, {}
    for name, model in models.items():
        s = score_set(model.net, cases)
        metrics[name] = {"ndcg@10": s.ndcg, "hr@10": s.hr}
        lags[name] = _lag(start, model.newest)
    return metrics, lags


def _log(result: BacktestResult, paths: Paths, cfg: BacktestConfig) -> None:
    import matplotlib.pyplot as plt

    tracking_cfg = TrackingConfig(experiment="recsys-backtest")
    with runs.start_run(paths, tracking_cfg, "backtest") as run:
        result.run_id = run.id
        run.log_params(tracking.flatten("backtest", cfg.model_dump()))
        for w in result.windows:
            for m in MODELS:
                run.log_metrics({f"{m}/ndcg@10": w.metrics[m]["ndcg@10"],
                                 f"{m}/hr@10": w.metrics[m]["hr@10"],
                                 f"{m}/lag_hours": w.lag_s[m] / 3600}, step=w.index)
        for m in MODELS:
            run.log_metrics({f"mean/{m}/ndcg@10": result.mean(m, "ndcg@10"),
                             f"later_half/{m}/ndcg@10": result.mean(m, "ndcg@10", True),
                             f"mean/{m}/lag_hours": result.mean_lag(m) / 3600})
        run.log_text(result.table(), "backtest.md")
        run.log_text(json.dumps([w.__dict__ for w in result.windows], default=str, indent=2),
                     "backtest.json")
        fig = result.figure()
        run.log_figure(fig, "backtest.png")
        plt.close(fig)
