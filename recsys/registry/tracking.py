"""The only module that talks to MLflow: where runs live, what they record, registration."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from recsys.config import Paths, TrackingConfig

log = logging.getLogger(__name__)

# Listed explicitly: inferring requirements costs seconds on every log.
PIP_REQUIREMENTS = ["torch", "numpy", "pandas", "pyarrow", "safetensors", "mlflow", "recsys"]


def tracking_uri(paths: Paths) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store in the project folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.mlflow_db}"


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


@contextlib.contextmanager
def session(paths: Paths, cfg: TrackingConfig) -> Iterator[tuple[str, str]]:
    """Use this project's store for the duration; yields ``(uri, experiment_id)``.

    ``mlflow.set_tracking_uri`` also writes ``$MLFLOW_TRACKING_URI``, which would then pass for
    the user's choice in every later call in this process; the previous value is restored.
    """
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield configure(paths, cfg)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def configure(paths: Paths, cfg: TrackingConfig) -> tuple[str, str]:
    """Point MLflow at the store; returns ``(uri, experiment_id)``.

    Artifacts go to ``mlruns/`` for a local store. Callers start runs with the explicit
    experiment id: MLflow's fluent "active experiment" outlives a change of tracking URI.
    """
    uri = tracking_uri(paths)
    if uri.startswith("sqlite:"):
        paths.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        return uri, experiment.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        paths.mlruns.mkdir(parents=True, exist_ok=True)
        location = paths.mlruns.resolve().as_uri()
    return uri, client.create_experiment(cfg.experiment, artifact_location=location)


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
    out = {}
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(key, v))
        else:
            out[key] = str(v)
    return out


def log_metrics(metrics: Mapping[str, float], prefix: str = "", step: int | None = None) -> None:
    mlflow.log_metrics({safe_key(f"{prefix}{k}"): float(v) for k, v in metrics.items()}, step=step)


def log_text_artifact(text: str, name: str) -> None:
    mlflow.log_text(text, name)


def log_figure(fig, name: str) -> None:
    mlflow.log_figure(fig, name)


def log_model(model_dir: Path, example_history: list[str], registered_model: str | None,
              tags: Mapping[str, str], input_example: bool = True) -> tuple[str, str | None]:
    """Log the pyfunc (weights as safetensors artifacts) and register a version.

    Returns ``(model_uri, version)``; version is None when registration is off. Without
    ``input_example`` MLflow skips loading the model to validate the example, which an
    every-minute update cannot afford; the signature is logged either way.
    """
    import pandas as pd

    from recsys.registry.pyfunc import SeqRecPyfunc

    example = pd.DataFrame({"item_ids": [example_history]})
    output = pd.DataFrame({"item_ids": [example_history[:1]], "scores": [[0.0]]})
    signature = infer_signature(example, output, params={"k": 10, "exclude_seen": False})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=SeqRecPyfunc(), artifacts={"model": str(model_dir)},
            pip_requirements=PIP_REQUIREMENTS, signature=signature,
            input_example=example if input_example else None,
        )
    version = None
    if registered_model:
        mv = mlflow.register_model(info.model_uri, registered_model, tags=dict(tags))
        version = str(mv.version)
        log.info("registered %s version %s", registered_model, version)
    return info.model_uri, version


def run_link(paths: Paths, run_id: str | None) -> str:
    """A markdown link to the run in the MLflow UI when a tracking server is in use."""
    if not run_id:
        return "no MLflow run"
    uri = tracking_uri(paths)
    if not uri.startswith("http"):
        return f"MLflow run `{run_id}` (local store {redact(uri)})"
    experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    return (f"[MLflow run {run_id}]({redact(uri).rstrip('/')}/#/experiments/{experiment}/runs/"
            f"{run_id})")
