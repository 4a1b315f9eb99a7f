"""Read the feature store into the dense tensors training and evaluation work on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from recsys import sql
from recsys.data import features
from recsys.data.containers import Catalogue, EvalSet
from recsys.data.text import text_matrix


def pad_left(lists: pa.ChunkedArray | pa.ListArray, width: int, dtype=np.int64) -> np.ndarray:
    """Last ``width`` values of every list, right-aligned in a zero-padded ``(n, width)`` matrix.

    >>> pad_left(pa.array([[1, 2, 3], [4], []]), 2)
    array([[2, 3],
           [0, 4],
           [0, 0]])
    """
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks() if lists.num_chunks else pa.array([], lists.type)
    n = len(lists)
    out = np.zeros((n, width), dtype=dtype)
    if n == 0:
        return out
    lists = lists.fill_null([])
    offsets = lists.offsets.to_numpy()
    values = lists.values.to_numpy(zero_copy_only=False)
    lengths = np.diff(offsets)
    kept = np.minimum(lengths, width)
    rows = np.repeat(np.arange(n), kept)
    within = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    src = np.repeat(offsets[1:] - kept, kept) + within
    out[rows, width - np.repeat(kept, kept) + within] = values[src]
    return out


@dataclass
class TrainingData:
    """One protocol's split of the store, ready for the data module and the evaluator."""

    protocol: str
    train_items: torch.Tensor  # (U, max_len + 1): inputs are [:, :-1], next items [:, 1:]
    train_types: torch.Tensor
    valid: EvalSet
    test: EvalSet
    catalogue: Catalogue
    recent_counts: np.ndarray  # (n_items + 1,) training interactions in the popularity window
    text: np.ndarray  # (n_items + 1, text_dim); text_dim is 0 when there is no text
    text_encoder: str
    item_ids: list[str]  # item_ids[i - 1] is the string id of item index i
    fingerprint: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.catalogue.n_items

    def train_histories(self) -> pa.Table:
        """Training sequences as ``(user_idx, history)`` for SQL that works on lists."""
        hist = [row[row > 0].tolist() for row in self.train_items.numpy()]
        return pa.table({"user_idx": np.arange(len(hist)), "history": hist})


def _eval_set(rows: pa.Table, max_len: int) -> EvalSet:
    return EvalSet(
        items=torch.from_numpy(pad_left(rows["history"], max_len)),
        types=torch.from_numpy(pad_left(rows["type_history"], max_len)),
        target=torch.from_numpy(rows["target"].to_numpy().astype(np.int64)),
        user_idx=rows["user_idx"].to_numpy(),
    )


def load_training_data(con: duckdb.DuckDBPyConnection, protocol: str, max_len: int,
                       popularity_window_days: float | None) -> TrainingData:
    """Everything a full retrain reads, in one consistent snapshot of the store."""
    rows = {s: sql.query(con, "split_rows", protocol=protocol, split=s).to_arrow_table()
            for s in ("train", "valid", "test")}
    train = rows["train"]
    lengths = pa.compute.list_value_length(train["history"])
    train = train.filter(pa.compute.greater_equal(lengths, 2))
    catalogue = sql.query(con, "item_catalogue").df()
    n_items = int(catalogue["item_idx"].max()) if len(catalogue) else 0
    category = np.full(n_items + 1, -1, dtype=np.int64)
    codes, _ = pd.factorize(catalogue["category"], use_na_sentinel=True)
    category[catalogue["item_idx"].to_numpy()] = codes

    valid_cut = features.get_meta(con, features.VALID_CUT_KEY, "1970-01-01T00:00:00")
    min_events = int(features.get_meta(con, features.MIN_EVENTS_KEY, "3"))
    window = popularity_window_days if popularity_window_days is not None else 1e7
    pop = sql.query(con, "train_popularity", protocol=protocol,
                    valid_cut=dt.datetime.fromisoformat(valid_cut), min_events=min_events,
                    window_days=window).df()
    counts = np.zeros(n_items + 1, dtype=np.float64)
    recent = np.zeros(n_items + 1, dtype=np.float64)
    counts[pop["item_idx"].to_numpy()] = pop["n_train"].to_numpy()
    recent[pop["item_idx"].to_numpy()] = pop["n_recent"].to_numpy()

    encoder = features.get_meta(con, features.TEXT_ENCODER_KEY, "none")
    summary = features.summarize(con)
    watermark = int(features.get_meta(con, features.DERIVED_WATERMARK_KEY, str(summary.watermark)))
    newest, _ = sql.fetch_one(con, "event_time_bounds", seen=watermark, high=watermark)
    return TrainingData(
        protocol=protocol,
        train_items=torch.from_numpy(pad_left(train["history"], max_len + 1)),
        train_types=torch.from_numpy(pad_left(train["type_history"], max_len + 1)),
        valid=_eval_set(rows["valid"], max_len),
        test=_eval_set(rows["test"], max_len),
        catalogue=Catalogue(n_items=n_items, counts=counts, category=category),
        recent_counts=recent,
        text=text_matrix(con, encoder, n_items),
        text_encoder=encoder,
        item_ids=catalogue["item_id"].tolist(),
        fingerprint={
            "watermark": watermark, "events": summary.events, "users": summary.users,
            "items": summary.items, "protocol": protocol, "train_sequences": train.num_rows,
            "valid_users": rows["valid"].num_rows, "test_users": rows["test"].num_rows,
            "newest_event_ts": newest.isoformat() if newest else "",
        },
    )
