"""The one backtest entry behind ``recsys backtest`` and the ``backtest`` flow.

Loads the events to replay (a dataset or a synthetic world), picks the scratch project folder
and runs the prequential replay of :mod:`recsys.training.backtest` with typed configs, so the
command line and the flow cannot drift apart in their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.config import BacktestConfig, BacktestData, ModelConfig, Paths, TrainConfig
from recsys.timeutil import utc_now
from recsys.training.backtest import BacktestResult, backtest


@dataclass
class BacktestRun:
    """A finished backtest and the scratch folder its replay ran in."""

    result: BacktestResult
    workdir: Path


def load_events(data: BacktestData) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Events and items of the dataset, or of the synthetic world when there is none."""
    if data.dataset:
        from recsys.data.loaders import load

        loaded = load(data.dataset, data.format.value)
        return loaded.events, loaded.items
    from recsys.data.synthetic import generate, preset

    world = generate(preset(data.synthetic.value))
    return world.events, world.items


def default_workdir(paths: Paths) -> Path:
    """``<home>/backtests/<UTC time>``: each replay keeps its own inspectable project folder."""
    return paths.root / "backtests" / utc_now().strftime("%Y%m%dT%H%M%S")


def run_backtest(data: BacktestData | None = None, replay: BacktestConfig | None = None,
                 model: ModelConfig | None = None, training: TrainConfig | None = None,
                 paths: Paths | None = None, workdir: Path | None = None) -> BacktestRun:
    """Replay ``data`` window by window; the summary is logged to ``paths``' MLflow store.

    Parameters
    ----------
    data, replay, model, training
        What to replay, how, and the model and full-retrain settings (defaults: the configs').
        Progress bars are off: a replay trains many models.
    paths
        The project whose MLflow store (experiment ``recsys-backtest``) receives the summary.
    workdir
        Scratch project folder of the replay (default: :func:`default_workdir`).
    """
    paths = paths or Paths()
    training = (training or TrainConfig()).model_copy(update={"progress_bar": False})
    events, items = load_events(data or BacktestData())
    workdir = workdir or default_workdir(paths)
    result = backtest(events, items, workdir, replay or BacktestConfig(), model or ModelConfig(),
                      training, report_paths=paths)
    return BacktestRun(result, workdir)
