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

import mlflow
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
from recsys.data.features import build_features, open_store
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone
from recsys.data.microbatch import holdout_set, refresh
from recsys.models import io
from recsys.registry import tracking
from recsys.registry.registry import Registry
from recsys.timeutil import parse_ts, seconds_since
from recsys.training.full_retrain import train
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


def _load_version(registry: Registry, version: str):
    with registry.model_folder(version) as folder:
        net, _, _ = io.load(folder)
    return net


def backtest(events: pd.DataFrame, items: pd.DataFrame | None, home: Path,
             cfg: BacktestConfig | None = None, model_cfg: ModelConfig | None = None,
             train_cfg: TrainConfig | None = None, update_cfg: UpdateConfig | None = None,
             gate_cfg: GateConfig | None = None, feature_cfg: FeatureConfig | None = None,
             report_paths: Paths | None = None) -> BacktestResult:
    """Replay ``events`` into ``home`` (a scratch project folder) and score the three models.

    ``report_paths``: the project whose MLflow store receives the summary run (experiment
    ``recsys-backtest``); None logs nothing.
    """
    cfg, model_cfg = cfg or BacktestConfig(), model_cfg or ModelConfig()
    train_cfg = train_cfg or TrainConfig(progress_bar=False)
    update_cfg, gate_cfg = update_cfg or UpdateConfig(), gate_cfg or GateConfig()
    feature_cfg = feature_cfg or FeatureConfig(
        text_encoder="wordllama" if items is not None else "none")
    paths = Paths(root=home / "data", tracking_home=home / "tracking")
    registry = Registry(paths, TrackingConfig())
    zone = LandingZone(paths)

    initial, windows, bounds = _split_windows(events, cfg)
    if items is not None:
        ingest_frame(items, "items", kind="items", data_paths=paths)
    ingest_frame(initial, "initial", data_paths=paths)
    build_features(paths, feature_cfg)
    first = train(paths, model_cfg, train_cfg, EvalConfig(), TrackingConfig(), gate_cfg)
    if not first.promoted:
        raise RuntimeError(f"the initial full retrain was not promoted: {first.decision_reason}")
    static = _load_version(registry, first.version)
    static_newest = registry.get(first.version).newest_event_ts
    full, full_newest = static, static_newest
    log.info("backtest: %d initial events, %d windows of %s", len(initial), len(windows),
             bounds[1] - bounds[0])

    result = BacktestResult()
    for i, window in enumerate(windows):
        lo = zone.max_seq()
        window_ts = pd.to_datetime(window["ts"])
        for p in range(cfg.parts_per_window):
            a = bounds[i] + (bounds[i + 1] - bounds[i]) * p / cfg.parts_per_window
            b = bounds[i] + (bounds[i + 1] - bounds[i]) * (p + 1) / cfg.parts_per_window
            part = window[(window_ts >= a) & (window_ts < b)]
            if len(part):
                ingest_frame(part, f"window{i}.{p}", data_paths=paths)
        hi = zone.max_seq()
        with open_store(paths) as con:  # test: every model scores the window before learning it
            refresh(con, paths)
            cases = holdout_set(con, lo, hi, model_cfg.max_len, cfg.max_eval_events,
                                update_cfg.seed)
        champion = registry.champion()
        micro = _load_version(registry, champion.version)
        metrics, lags = {}, {}
        for name, net, newest in (("static", static, static_newest),
                                  ("micro", micro, champion.newest_event_ts),
                                  ("full", full, full_newest)):
            s = score_set(net, cases)
            metrics[name] = {"ndcg@10": s.ndcg, "hr@10": s.hr}
            lags[name] = _lag(bounds[i], newest)
        # train: the micro-batch update learns the window (all but its newest part) ...
        outcome = update(paths, update_cfg, gate_cfg)
        # ... and the full retrain, at its slower cadence, everything so far.
        if cfg.full_every and (i + 1) % cfg.full_every == 0 and i + 1 < len(windows):
            build_features(paths, feature_cfg)
            retrain = train(paths, model_cfg, train_cfg, EvalConfig(),
                            TrackingConfig(register_model=False), gate_cfg)
            full, _, _ = io.load(retrain.model_dir)
            full_newest = parse_ts(retrain.fingerprint.get("newest_event_ts"))
        result.windows.append(Window(i, bounds[i].to_pydatetime(), bounds[i + 1].to_pydatetime(),
                                     len(window), len(cases), metrics, lags, outcome.status))
        log.info("window %d: %s | update %s", i, ", ".join(
            f"{m} {metrics[m]['ndcg@10']:.4f}" for m in MODELS), outcome.status)
    if report_paths is not None:
        _log(result, report_paths, cfg)
    return result


def _log(result: BacktestResult, paths: Paths, cfg: BacktestConfig) -> None:
    import matplotlib.pyplot as plt

    with tracking.session(paths, TrackingConfig(experiment="recsys-backtest")) as (_, exp_id), \
            mlflow.start_run(experiment_id=exp_id, run_name="backtest") as run:
        result.run_id = run.info.run_id
        mlflow.log_params(tracking.flatten("backtest", cfg.model_dump()))
        for w in result.windows:
            for m in MODELS:
                tracking.log_metrics({f"{m}/ndcg@10": w.metrics[m]["ndcg@10"],
                                      f"{m}/hr@10": w.metrics[m]["hr@10"],
                                      f"{m}/lag_hours": w.lag_s[m] / 3600}, step=w.index)
        for m in MODELS:
            tracking.log_metrics({f"mean/{m}/ndcg@10": result.mean(m, "ndcg@10"),
                                  f"later_half/{m}/ndcg@10": result.mean(m, "ndcg@10", True),
                                  f"mean/{m}/lag_hours": result.mean_lag(m) / 3600})
        tracking.log_text_artifact(result.table(), "backtest.md")
        tracking.log_text_artifact(json.dumps([w.__dict__ for w in result.windows], default=str,
                                              indent=2), "backtest.json")
        fig = result.figure()
        tracking.log_figure(fig, "backtest.png")
        plt.close(fig)
