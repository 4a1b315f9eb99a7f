"""The MLflow pyfunc flavour as a generic adapter: the predictions come from a named class.

A model is logged with ``model_config={"predictor": "package.module.Class"}`` and its files as
artifacts. At load time the class is imported by that dotted path and built with
``Class.from_artifacts(artifacts)``; ``predict`` is delegated to it. So the registry never
imports the code that scores (``recsys.scoring.pyfunc.SeqRecPredictor`` for our models), and
a logged model loads with ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` wherever
the package that holds the class is installed.

A predictor class provides ``from_artifacts(artifacts: dict[str, str])``,
``predict(model_input, params) -> DataFrame`` and ``examples(history)`` (an input, an output
and the params, from which the logged signature is inferred).
"""

from __future__ import annotations

import importlib

import mlflow.pyfunc
import pandas as pd


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
        return self.predictor.predict(model_input, params)
