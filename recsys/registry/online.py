"""Online figures onto the run that trained a registered version, under ``online/``.

A version's run holds what was known when it was trained (offline metrics, decision); the online
report adds what happened once it served: metrics keyed ``online/<name>`` with a step that grows
with report time (minutes since 1970), so MLflow plots each as a curve over refreshes, and the
report's files as artifacts in ``online/`` (replaced by each refresh).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path

from mlflow.entities import Metric

from recsys.config import Paths, TrackingConfig
from recsys.registry import tracking
from recsys.registry.registry import Registry

PREFIX = "online"


def version_runs(paths: Paths, cfg: TrackingConfig,
                 versions: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(version -> run id, version -> why not)`` for versions of ``cfg.registered_model``."""
    registry = Registry(paths, cfg)
    found, missing = {}, {}
    for version in versions:
        if not version.isdigit():
            missing[version] = "not a registered version"
            continue
        try:
            run_id = registry.get(version).run_id
        except LookupError:
            missing[version] = f"{registry.name} has no version {version}"
            continue
        if run_id:
            found[version] = run_id
        else:
            missing[version] = "registered without a run"
    return found, missing


def step_of(when: dt.datetime) -> int:
    """Minutes since 1970 (UTC): a step that orders refreshes and spaces them by time."""
    return int(when.replace(tzinfo=dt.UTC).timestamp() // 60)


def log_online(paths: Paths, cfg: TrackingConfig, run_id: str, metrics: Mapping[str, float],
               when: dt.datetime, files: Iterable[Path] = ()) -> None:
    """Log ``metrics`` as ``online/<name>`` at ``when`` and ``files`` into ``online/``.

    ``when`` (naive UTC) is both the metric timestamp and, as :func:`step_of`, its step.
    Non-finite values (a rate with no impressions) are left out: MLflow would store them as
    NaN points in the curve.
    """
    client, _ = tracking.client(paths, cfg)
    stamp = int(when.replace(tzinfo=dt.UTC).timestamp() * 1000)
    step = step_of(when)
    points = [Metric(tracking.safe_key(f"{PREFIX}/{k}"), float(v), stamp, step)
              for k, v in metrics.items() if v is not None and abs(float(v)) < float("inf")]
    if points:
        client.log_batch(run_id, metrics=points)
    for path in files:
        client.log_artifact(run_id, str(path), PREFIX)
