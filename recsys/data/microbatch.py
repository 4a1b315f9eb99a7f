"""The micro-batch snapshot: what one incremental update reads from the feature store.

A batch is the landing parts after the champion's watermark ``low``, up to ``high``. The
newest parts, ``(cut, high]``, are held out: both the champion and the candidate are tested on
them, and the next update trains on them (test-then-train, so every event is tested once and
trained once). Parts are the unit, so a watermark is always a part boundary; a batch of a
single part is held out whole and the update waits for the next one.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import torch

from recsys import sql
from recsys.config import Paths, UpdateConfig
from recsys.data import features, text
from recsys.data.containers import EvalSet
from recsys.data.sequences import pad_left

log = logging.getLogger(__name__)


@dataclass
class FineTuneData:
    """Left-padded sequences ``(N, L + 1)``; ``mask`` marks the next items to learn."""

    items: torch.Tensor
    types: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.items)

    @property
    def positions(self) -> int:
        return int((self.mask[:, 1:] & (self.items[:, :-1] > 0)).sum())

    @staticmethod
    def concat(*parts: FineTuneData) -> FineTuneData:
        parts = tuple(p for p in parts if len(p))
        if not parts:
            return FineTuneData(torch.zeros(0, 2, dtype=torch.long),
                                torch.zeros(0, 2, dtype=torch.long),
                                torch.zeros(0, 2, dtype=torch.bool))
        width = max(p.items.shape[1] for p in parts)

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t, (width - t.shape[1], 0))

        return FineTuneData(torch.cat([pad(p.items) for p in parts]),
                            torch.cat([pad(p.types) for p in parts]),
                            torch.cat([pad(p.mask) for p in parts]))


@dataclass(frozen=True)
class BatchPlan:
    low: int  # the champion's watermark
    cut: int  # trained on (low, cut]
    high: int  # held out (cut, high]
    train_events: int
    holdout_events: int
    backlog_events: int  # beyond high, left for later updates (max_batch_events)

    @property
    def empty(self) -> bool:
        return self.train_events + self.holdout_events == 0

    @property
    def trainable(self) -> bool:
        return self.cut > self.low


def plan_batch(con: duckdb.DuckDBPyConnection, low: int, cfg: UpdateConfig) -> BatchPlan:
    rows = sql.query(con, "microbatch_parts", low=low).fetchall()
    if not rows:
        return BatchPlan(low, low, low, 0, 0, 0)
    seqs = [int(r[0]) for r in rows]
    counts = [int(r[1]) for r in rows]
    taken, total = 0, 0
    while taken < len(seqs) and (taken == 0 or total + counts[taken] <= cfg.max_batch_events):
        total += counts[taken]
        taken += 1
    backlog = sum(counts[taken:])
    seqs, counts = seqs[:taken], counts[:taken]
    high = seqs[-1]
    if len(seqs) == 1:
        return BatchPlan(low, low, high, 0, total, backlog)
    j, held = len(seqs), 0
    while j > 1 and held < cfg.holdout_fraction * total:
        j -= 1
        held += counts[j]
    return BatchPlan(low, seqs[j - 1], high, total - held, held, backlog)


@dataclass
class MicroBatch:
    plan: BatchPlan
    new: FineTuneData  # sequences of users with new events; only new positions are learnt
    replay: FineTuneData  # older sequences replayed so the past is not forgotten
    holdout: EvalSet  # next-item cases from (cut, high]
    item_ids: list[str]
    text: np.ndarray  # (n_items + 1, dim)
    text_encoder: str
    item_counts: np.ndarray  # (n_items + 1,) events per item up to cut
    newest_seen_ts: dt.datetime | None  # newest event time up to cut
    newest_ts: dt.datetime | None  # newest event time in the store snapshot

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _sequences(table: pa.Table, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(pad_left(table["item_seq"], width)),
            torch.from_numpy(pad_left(table["type_seq"], width)))


def refresh(con: duckdb.DuckDBPyConnection, paths: Paths) -> features.RefreshReport:
    """Append newly landed events to the store and embed the text of new items."""
    report = features.refresh_events(con, paths)
    encoder_name = features.get_meta(con, features.TEXT_ENCODER_KEY, "none")
    spec = features.get_meta(con, features.TEXT_ENCODER_SPEC_KEY, "none")
    if encoder_name != "none" and spec != "none":
        pending = sql.query(con, "item_texts_pending", encoder=encoder_name).fetchall()
        if pending:
            text.refresh_text_embeddings(con, text.load_encoder(spec))
    return report


def holdout_set(con: duckdb.DuckDBPyConnection, cut: int, high: int, max_len: int,
                max_events: int, seed: int) -> EvalSet:
    """Next-item cases for the events of sequence in ``(cut, high]``, histories before each."""
    hold = sql.query(con, "microbatch_holdout", cut=cut, high=high, max_len=max_len,
                     max_events=max_events, seed=seed).to_arrow_table()
    return EvalSet(torch.from_numpy(pad_left(hold["history"], max_len)),
                   torch.from_numpy(pad_left(hold["type_history"], max_len)),
                   torch.from_numpy(hold["target"].to_numpy().astype(np.int64)),
                   hold["user_idx"].to_numpy())


def extract(con: duckdb.DuckDBPyConnection, plan: BatchPlan, cfg: UpdateConfig, max_len: int,
            exclude_users: np.ndarray | None = None) -> MicroBatch:
    """Everything the update needs, read in one go so the store is held for seconds only."""
    width = max_len + 1
    new = sql.query(con, "microbatch_extract", low=plan.low, high=plan.cut,
                    max_len=width).to_arrow_table()
    items, types = _sequences(new, width)
    mask = torch.from_numpy(pad_left(new["is_new"], width, dtype=np.bool_))
    new_data = FineTuneData(items, types, mask)

    n_replay = math.ceil(cfg.replay_ratio * len(new_data)) if plan.trainable else 0
    exclude = [] if exclude_users is None else [int(u) for u in exclude_users]
    replay = sql.query(con, "replay_sample", low=plan.low, n=n_replay, seed=cfg.seed,
                       exclude=exclude, max_len=width).to_arrow_table()
    r_items, r_types = _sequences(replay, width)
    # Each replayed sequence is learnt on as many final positions as a new sequence brings,
    # so replay_ratio is also the ratio of replayed to new training positions.
    per_seq = max(1, round(new_data.positions / max(len(new_data), 1)))
    r_mask = torch.zeros_like(r_items, dtype=torch.bool)
    r_mask[:, -per_seq:] = True
    replay_data = FineTuneData(r_items, r_types, r_mask & (r_items > 0))

    holdout = holdout_set(con, plan.cut, plan.high, max_len, cfg.max_eval_events, cfg.seed)

    catalogue = sql.query(con, "item_catalogue").to_arrow_table()
    item_ids = catalogue["item_id"].to_pylist()
    encoder = features.get_meta(con, features.TEXT_ENCODER_KEY, "none")
    counts = np.zeros(len(item_ids) + 1)
    ic = sql.query(con, "item_event_counts", high=plan.cut).to_arrow_table()
    counts[ic["item_idx"].to_numpy()] = ic["n"].to_numpy()
    newest_seen, newest = sql.fetch_one(con, "event_time_bounds", seen=plan.cut, high=plan.high)
    return MicroBatch(plan, new_data, replay_data, holdout, item_ids,
                      text.text_matrix(con, encoder, len(item_ids)), encoder, counts,
                      newest_seen, newest)
