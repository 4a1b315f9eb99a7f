"""What a logged model predicts: recent-item sequences in, top-K item ids out.

Input: a DataFrame with a column ``item_ids`` (list of item id strings, oldest first) and an
optional ``event_types`` column (list of event type names, same length). Params: ``k`` (10)
and ``exclude_seen`` (False). Output: columns ``item_ids`` (list of strings, best first) and
``scores`` (list of floats). ``registry/pyfunc.py`` loads this class by the dotted path the
model was logged with (``recsys.training.PREDICTOR``), so this module never imports MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from recsys.scoring.scorer import Scorer


class SeqRecPredictor:
    """The Scorer behind MLflow's pyfunc interface."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    @classmethod
    def from_artifacts(cls, artifacts: Mapping[str, str]) -> SeqRecPredictor:
        """Built from the logged model folder (artifact ``model``: weights and item ids)."""
        return cls(Scorer.from_folder(Path(artifacts["model"])))

    @staticmethod
    def examples(history: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """An input, an output and the params, for the logged signature."""
        example = pd.DataFrame({"item_ids": [history]})
        output = pd.DataFrame({"item_ids": [history[:1]], "scores": [[0.0]]})
        return example, output, {"k": 10, "exclude_seen": False}

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
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
