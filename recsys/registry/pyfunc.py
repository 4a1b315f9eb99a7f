"""The MLflow pyfunc flavour: recent-item sequences in, top-K item ids out.

Input: a DataFrame with a column ``item_ids`` (list of item id strings, oldest first) and an
optional ``event_types`` column (list of event type names, same length). Params: ``k`` (10)
and ``exclude_seen`` (False). Output: columns ``item_ids`` (list of strings, best first) and
``scores`` (list of floats). Works with ``mlflow.pyfunc.load_model`` and ``mlflow models serve``
wherever the ``recsys`` package is installed.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd


class SeqRecPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from recsys.scoring.scorer import Scorer

        self.scorer = Scorer.from_folder(Path(context.artifacts["model"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = params or {}
        histories = [list(h) if h is not None else [] for h in model_input["item_ids"]]
        types = None
        if "event_types" in model_input:
            types = [list(t) if t is not None else ["view"] * len(h)
                     for t, h in zip(model_input["event_types"], histories, strict=True)]
        ids, scores = self.scorer.recommend(histories, k=int(params.get("k", 10)),
                                            exclude_seen=bool(params.get("exclude_seen", False)),
                                            types=types)
        return pd.DataFrame({"item_ids": [list(r) for r in ids],
                             "scores": [[float(s) for s in r] for r in scores]})
