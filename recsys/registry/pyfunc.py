"""The MLflow pyfunc flavour as a generic adapter: the predictions come from a named class.

A model is logged with ``model_config={"predictor": "package.module.Class"}`` and its files as
artifacts. At load time the class is imported by that dotted path and built with
``Class.from_artifacts(artifacts)``; ``predict`` is delegated to it. So the registry never
imports the code that scores (``recsys.scoring.pyfunc.SeqRecPredictor`` for our models), and
a logged model loads with ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` wherever
the package that holds the class is installed.

A predictor class provides ``from_artifacts(artifacts: dict[str, str])``,
``predict(model_input, params) -> DataFrame`` and ``examples(history)`` (an input, an output
and the params, from which the logged signature is inferred). ``predict`` raises ``ValueError``
for input it refuses; the adapter raises it again as an ``MlflowException`` with
``INVALID_PARAMETER_VALUE``, which ``mlflow models serve`` answers with a 400 whose body holds
the message and no stack trace (any other exception is a 400 carrying the traceback).
"""

from __future__ import annotations

import importlib

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException


def load_predictor_class(dotted: str) -> type:
    """The class named ``package.module.Class``."""
    module, _, name = dotted.rpartition(".")
    if not module:
        raise ValueError(f"predictor {dotted!r} is not a dotted path package.module.Class")
    return getattr(importlib.import_module(module), name)


class PredictorPyfunc(mlflow.pyfunc.PythonModel):
    """Delegates to the predictor class named in the model's config."""

    def load_context(self, context) -> None:
        config = context.model_config or {}
        if "predictor" not in config:
            raise ValueError("the model's config names no predictor class: it was logged by an "
                             "older version of recsys; log it again")
        cls = load_predictor_class(config["predictor"])
        self.predictor = cls.from_artifacts(dict(context.artifacts))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        try:
            return self.predictor.predict(model_input, params)
        except ValueError as exc:  # refused input: the caller's to fix, so no stack trace
            raise MlflowException.invalid_parameter_value(str(exc)) from exc
