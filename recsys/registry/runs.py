"""MLflow runs as the pipeline writes them: start one, log to it, register its model.

Training code sees only :func:`start_run` / :func:`attach` and the :class:`Run` handle; every
call names its store and run explicitly.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from recsys.config import Paths, TrackingConfig
from recsys.registry import tracking
from recsys.registry.pyfunc import PredictorPyfunc, load_predictor_class

log = logging.getLogger(__name__)

# Listed explicitly: inferring requirements costs seconds on every log.
PIP_REQUIREMENTS = ["torch", "numpy", "pandas", "pyarrow", "safetensors", "mlflow", "recsys"]


@dataclass(frozen=True)
class Run:
    """One MLflow run of the configured store."""

    id: str
    uri: str
    client: MlflowClient

    def log_params(self, params: Mapping[str, object]) -> None:
        self.client.log_batch(self.id, params=[Param(k, str(v)) for k, v in params.items()])

    def set_tags(self, tags: Mapping[str, object]) -> None:
        self.client.log_batch(self.id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], prefix: str = "",
                    step: int | None = None) -> None:
        """Metrics under MLflow-safe keys (``ndcg@10`` -> ``ndcg_at_10``), with a prefix."""
        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[
            Metric(tracking.safe_key(f"{prefix}{k}"), float(v), now, step or 0)
            for k, v in metrics.items()])

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.id, text, name)

    def log_figure(self, fig, name: str) -> None:
        self.client.log_figure(self.id, fig, name)

    def record_decision(self, decision: str, reason: str,
                        metrics: Mapping[str, float] | None = None,
                        note: str | None = None) -> None:
        """The gate's outcome on the run that trained the candidate (``decision.md``: ``note``)."""
        self.set_tags({"decision": decision, "decision_reason": reason})
        if metrics:
            self.log_metrics(metrics)
        if note is not None:
            self.log_text(note, "decision.md")

    def lightning_logger(self, experiment: str):
        """Lightning's MLflow logger writing into this run (per-epoch curves)."""
        from pytorch_lightning.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=experiment, tracking_uri=self.uri, run_id=self.id)

    def log_model(self, model_dir: Path, predictor: str, example_history: list[str],
                  registered_model: str | None, tags: Mapping[str, str],
                  input_example: bool = True) -> tuple[str, str | None]:
        """Log ``model_dir`` as a pyfunc served by ``predictor`` and register a version.

        ``predictor`` is the dotted path of the class that makes the predictions (see
        ``registry/pyfunc.py``); its ``examples`` give the signature. The weights stay the
        files of ``model_dir`` (safetensors and JSON), so a version can be fine-tuned. Returns
        ``(model_uri, version)``; version is None when registration is off. Without
        ``input_example`` MLflow skips loading the model to validate the example, which an
        every-minute update cannot afford; the signature is logged either way. Call it while
        the run is open (inside :func:`start_run`).
        """
        example, output, params = load_predictor_class(predictor).examples(example_history)
        signature = infer_signature(example, output, params=params)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=PredictorPyfunc(),
                artifacts={"model": str(model_dir)}, model_config={"predictor": predictor},
                pip_requirements=PIP_REQUIREMENTS, signature=signature,
                input_example=example if input_example else None,
            )
        version = None
        if registered_model:
            mv = mlflow.register_model(info.model_uri, registered_model, tags=dict(tags))
            version = str(mv.version)
            log.info("registered %s version %s", registered_model, version)
        return info.model_uri, version


@contextlib.contextmanager
def start_run(paths: Paths, cfg: TrackingConfig, name: str) -> Iterator[Run]:
    """A new run in ``cfg.experiment``; ends FINISHED, or FAILED if the block raises."""
    with tracking.session(paths, cfg) as (uri, experiment_id), \
            mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        yield Run(run.info.run_id, uri, MlflowClient(uri))


def attach(paths: Paths, cfg: TrackingConfig, run_id: str) -> Run:
    """A handle on an existing run, to record what was decided after it ended."""
    mlflow_client, uri = tracking.client(paths, cfg)
    return Run(run_id, uri, mlflow_client)
