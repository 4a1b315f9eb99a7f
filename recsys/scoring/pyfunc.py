"""What a logged model predicts: recent-item sequences in, top-K item ids out.

Input: a DataFrame with a column ``item_ids`` (list of item id strings, oldest first) and an
optional ``event_types`` column (list of event type names, same length). Params: ``k`` (10,
from 1 to the catalogue size) and ``exclude_seen`` (False). Output: columns ``item_ids`` (list
of strings, best first) and ``scores`` (list of floats). Input it cannot answer raises
``ValueError`` with a one-line message naming the problem, which the adapter turns into a 400
``INVALID_PARAMETER_VALUE``. ``registry/pyfunc.py`` loads this class by the dotted path the
model was logged with (``recsys.training.PREDICTOR``), so this module never imports MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
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
        k = _count(params.get("k", 10), "k", high=len(self.scorer.item_ids))
        exclude_seen = _flag(params.get("exclude_seen", False), "exclude_seen")
        columns = list(getattr(model_input, "columns", []))
        if "item_ids" not in columns:
            raise ValueError("the input needs a column item_ids (one list of item ids per row, "
                             f"oldest first); got columns {columns or 'none'}")
        histories = [_ids(h, "item_ids", n) for n, h in enumerate(model_input["item_ids"])]
        types = None
        if "event_types" in columns:
            types = [["view"] * len(h) if t is None else _ids(t, "event_types", n)
                     for n, (t, h) in enumerate(zip(model_input["event_types"], histories,
                                                    strict=True))]
            for n, (t, h) in enumerate(zip(types, histories, strict=True)):
                if len(t) != len(h):
                    raise ValueError(f"row {n}: event_types has {len(t)} entries for "
                                     f"{len(h)} item ids; give one per item id")
        ids, scores = self.scorer.recommend(histories, k=k, exclude_seen=exclude_seen,
                                            types=types)
        return pd.DataFrame({"item_ids": [list(r) for r in ids],
                             "scores": [[float(s) for s in r] for r in scores]})


def _count(value: object, name: str, high: int) -> int:
    """A whole number from 1 to ``high``, else a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be a whole number from 1 to {high}, got {value!r}")
    if not 1 <= value <= high:
        raise ValueError(f"{name} must be from 1 to {high} (the catalogue size), got {value}")
    return int(value)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _ids(value: object, column: str, row: int) -> list[str]:
    """One row's list of strings; None is an empty history."""
    if value is None:
        return []
    if not isinstance(value, list | tuple | np.ndarray):
        raise ValueError(f"row {row}: {column} must be a list of strings, got "
                         f"{type(value).__name__} {_short(value)}")
    for v in value:
        if not isinstance(v, str):
            raise ValueError(f"row {row}: {column} must hold strings only, got "
                             f"{type(v).__name__} {_short(v)}")
    return list(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
