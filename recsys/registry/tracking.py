"""Where the MLflow store is (the tracking URI, the experiment) and how keys are written.

Every MLflow client of the project is made here (:func:`client`), which is also where MLflow's
own messages are silenced under a quiet entry point (``recsys.console``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils import logging_utils

from recsys import console
from recsys.config import Paths, TrackingConfig

# MLflow 3's UI shows an experiment as a GenAI app (an "Overview" of traces) or as model
# training (its runs) by this tag, which its own UI sets when the type is picked by hand.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # shown as "Machine learning"


def local_uri(paths: Paths) -> str:
    """The project's own SQLite store under ``Paths.tracking_home``."""
    return f"sqlite:///{paths.mlflow_db}"


def tracking_uri(paths: Paths, cfg: TrackingConfig | None = None) -> str:
    """``cfg.tracking_uri`` if set, else ``$MLFLOW_TRACKING_URI`` if set, else the local store."""
    if cfg is not None and cfg.tracking_uri:
        return cfg.tracking_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri(paths)


def redact(uri: str) -> str:
    """The URI without its password, for logs and links.

    A store URI such as ``postgresql://user:secret@db/mlflow`` or ``https://user:token@host``
    must not leak into logs, Prefect artifacts or the MLflow UI links we write.
    """
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def client(paths: Paths, cfg: TrackingConfig | None = None) -> tuple[MlflowClient, str]:
    """A client of the configured store and its URI (the SQLite folder is created if local)."""
    uri = tracking_uri(paths, cfg)
    if uri.startswith("sqlite:"):
        paths.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    if console.quiet():
        # MLflow logs through its own handler and prints ("Successfully registered model ...")
        # through its own stream; both go to that stream, which this turns off. Errors still
        # raise; `-v` leaves it on.
        logging_utils.disable_logging()
    return MlflowClient(uri), uri


@contextlib.contextmanager
def session(paths: Paths, cfg: TrackingConfig) -> Iterator[tuple[str, str]]:
    """Point MLflow's fluent API at the store for the duration; yields ``(uri, experiment_id)``.

    Runs and model logging have no explicit-URI form, so the fluent tracking URI is set here,
    and only here. ``mlflow.set_tracking_uri`` also exports the URI as
    ``$MLFLOW_TRACKING_URI`` (for child processes), where it would pass for the user's choice
    in every later call of this process: on the way out MLflow is handed the variable's
    earlier value back (None unsets it). Callers start runs with the explicit experiment id:
    MLflow's fluent "active experiment" outlives a change of tracking URI.
    """
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow_client, uri = client(paths, cfg)
    experiment_id = _experiment_id(mlflow_client, paths, cfg, uri)
    mlflow.set_tracking_uri(uri)
    try:
        yield uri, experiment_id
    finally:
        mlflow.set_tracking_uri(before)


def _experiment_id(mlflow_client: MlflowClient, paths: Paths, cfg: TrackingConfig,
                   uri: str) -> str:
    """The id of ``cfg.experiment``, created if missing (artifacts in ``mlruns/`` if local).

    The experiment is marked as model training (:data:`EXPERIMENT_KIND_TAG`) when created, and
    an existing one without a kind is marked on first use; a kind someone chose is kept.
    """
    experiment = mlflow_client.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG,
                                             EXPERIMENT_KIND)
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        paths.mlruns.mkdir(parents=True, exist_ok=True)
        location = paths.mlruns.resolve().as_uri()
    return mlflow_client.create_experiment(cfg.experiment, artifact_location=location,
                                           tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def git_commit() -> str:
    """The code version that trained a model ("unknown" outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def safe_key(name: str) -> str:
    """MLflow keys cannot hold '@': ``ndcg@10`` is stored as ``ndcg_at_10``."""
    return name.replace("@", "_at_")


def flatten(prefix: str, values: Mapping) -> dict[str, str]:
    """Nested mappings as dotted keys: ``{"a": {"b": 1}}`` -> ``{"prefix.a.b": "1"}``."""
    out = {}
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(key, v))
        else:
            out[key] = str(v)
    return out


def run_link(paths: Paths, run_id: str | None, cfg: TrackingConfig | None = None) -> str:
    """A markdown link to the run in the MLflow UI when a tracking server is in use."""
    if not run_id:
        return "no MLflow run"
    uri = tracking_uri(paths, cfg)
    if not uri.startswith("http"):
        return f"MLflow run `{run_id}` (local store {redact(uri)})"
    experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    return (f"[MLflow run {run_id}]({redact(uri).rstrip('/')}/#/experiments/{experiment}/runs/"
            f"{run_id})")
