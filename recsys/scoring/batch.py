"""Batch scoring: top-K lists for every active user from the champion, swapped in atomically.

The lists go to ``recommendations.duckdb`` (table ``recommendations``) and a Parquet export.
Users are scored in chunks into a staging table that replaces the served one in a single
transaction, so memory is bounded by the chunk size and readers never see half a run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from recsys import console, sql
from recsys.config import Paths, ScoreConfig, TrackingConfig
from recsys.data.features import read_store
from recsys.data.sequences import pad_left
from recsys.faults import crash_point
from recsys.files import TMP_PREFIX, file_lock, remove_stale_temp_files
from recsys.registry.registry import Registry
from recsys.scoring.scorer import Scorer
from recsys.scoring.topk import NARROW_BATCHES, ItemIndex
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)


@dataclass
class BatchScoreReport:
    model_version: str
    users: int
    rows: int
    seconds: float
    table: Path

    def summary(self) -> str:
        return (f"scored {self.users:,} active users with version {self.model_version}: "
                f"{self.rows:,} rows in {self.table} ({self.seconds:.1f} s)")


def _banned_items(items: pa.Table, cfg: ScoreConfig, n_items: int) -> torch.Tensor:
    """Items no list may hold: excluded categories, not yet released, unknown to the model."""
    banned = torch.zeros(n_items + 1, dtype=torch.bool)
    idx = items["item_idx"].to_numpy()
    keep = idx <= n_items
    bad = np.zeros(len(idx), dtype=bool)
    if cfg.exclude_categories:
        bad |= np.isin(np.asarray(items["category"].to_pylist(), dtype=object),
                       list(cfg.exclude_categories))
    if cfg.only_released:
        created = items["created_at"].to_numpy(zero_copy_only=False)
        now = np.datetime64(utc_now())
        bad |= np.where(np.isnat(created), False, created > now)
    banned[torch.from_numpy(idx[keep & bad])] = True
    return banned


def score_users(paths: Paths | None = None, cfg: ScoreConfig | None = None,
                tracking_cfg: TrackingConfig | None = None) -> BatchScoreReport:
    """Score every active user with the champion and swap the lists in atomically."""
    paths, cfg = paths or Paths(), cfg or ScoreConfig()
    t0 = time.perf_counter()
    registry = Registry(paths, tracking_cfg or TrackingConfig())
    champion = registry.champion()
    if champion is None:
        raise LookupError(f"{registry.name} has no champion to score with: run a full retrain")
    scorer = Scorer.from_registry(registry, champion.version)
    users, items = _read_active_users(paths, cfg, scorer.max_len)
    # Chunks wider than the int8 first stage is ever timed at never use it: neither its
    # probes nor its copy of the catalogue are worth making.
    narrow = 0 if cfg.chunk_size > NARROW_BATCHES[-1] else None
    catalogue = ItemIndex(scorer.item_vectors, _banned_items(items, cfg, scorer.net.n_items),
                          narrow_batch=narrow)
    k = min(cfg.k, len(catalogue))
    paths.recommendations_db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(paths.recommendations_db.with_suffix(".lock"), timeout=600), \
            sql.connect(paths.recommendations_db) as out:
        rows = _write_lists(out, scorer, catalogue, users, cfg, k, champion.version)
        crash_point("score.before_swap")
        sql.run(out, "recommendations_swap")
        out.execute("CHECKPOINT")
        crash_point("score.after_swap")
        export_recommendations(out, paths.recommendations_export)
    report = BatchScoreReport(champion.version, users.num_rows, rows,
                              time.perf_counter() - t0, paths.recommendations_db)
    log.info(report.summary())
    return report


def _read_active_users(paths: Paths, cfg: ScoreConfig, max_len: int) -> tuple[pa.Table, pa.Table]:
    """The active users' recent sequences, and the item attributes the filters need."""
    with read_store(paths) as con:
        users = sql.query(con, "active_user_sequences", window_days=cfg.window_days,
                          max_len=max_len).to_arrow_table()
        items = sql.query(con, "item_filters").to_arrow_table()
    return users, items


def _write_lists(out, scorer: Scorer, catalogue: ItemIndex, users: pa.Table, cfg: ScoreConfig,
                 k: int, version: str) -> int:
    """Score ``users`` chunk by chunk into the staging table; the number of rows written."""
    sql.run(out, "recommendations_staging")
    scored_at = utc_now()
    rows = 0
    chunks = range(0, users.num_rows, cfg.chunk_size)
    for start in tqdm(chunks, desc="batch scoring", unit="chunk", bar_format=console.STEP_FORMAT,
                      disable=None if cfg.progress_bar else True):
        chunk = users.slice(start, cfg.chunk_size)
        top, scores = _score_chunk(scorer, catalogue, chunk, cfg, k)
        table = _lists_table(chunk, scorer.item_ids[top.numpy().ravel() - 1], scores, k,
                             version, scored_at)
        out.register("chunk", table)
        sql.run(out, "recommendations_append")
        out.unregister("chunk")
        rows += table.num_rows
        crash_point("score.after_chunk")
    return rows


def _score_chunk(scorer: Scorer, catalogue: ItemIndex, chunk: pa.Table, cfg: ScoreConfig,
                 k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` item indices and scores ``(n, k)`` of one chunk of users."""
    n_items, max_len = scorer.net.n_items, scorer.max_len
    items = torch.from_numpy(pad_left(chunk["item_seq"], max_len))
    types = torch.from_numpy(pad_left(chunk["type_seq"], max_len))
    unknown = items > n_items  # items newer than the model carry no meaning yet
    items, types = items.masked_fill(unknown, 0), types.masked_fill(unknown, 0)
    exclude = [items] if cfg.exclude_seen else []
    if cfg.exclude_purchased:
        width = max(1, pa.compute.max(pa.compute.list_value_length(
            chunk["bought"])).as_py() or 0)
        bought = torch.from_numpy(pad_left(chunk["bought"], width))
        exclude.append(bought.masked_fill(bought > n_items, 0))
    return scorer.top_k(items, types, k, torch.cat(exclude, 1) if exclude else None, catalogue)


def _lists_table(chunk: pa.Table, item_ids: np.ndarray, scores: torch.Tensor, k: int,
                 version: str, scored_at: dt.datetime) -> pa.Table:
    """One row per (user, rank) of a chunk, as the ``recommendations`` table holds them."""
    n = chunk.num_rows
    table = pa.table({
        "user_id": np.repeat(np.asarray(chunk["user_id"].to_pylist(), dtype=object), k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
        "item_id": item_ids,
        "score": scores.numpy().ravel().astype(np.float32),
        "model_version": np.full(n * k, version, dtype=object),
        "scored_at": np.full(n * k, np.datetime64(scored_at, "us")),
    })
    # A list may end in -inf scores when filters leave fewer than k items.
    return table.filter(pa.compute.is_finite(table["score"]))


def export_recommendations(con, dest: Path) -> None:
    """Parquet copy of the served lists, renamed into place so readers never see half of it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(dest.parent)  # left by a run killed mid-export; we hold the lock
    tmp = dest.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{dest.name}"
    try:
        sql.run(con, "recommendations_export", path=str(tmp))
        crash_point("files.before_rename")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def read_recommendations(paths: Paths, user_id: str | None = None) -> pa.Table:
    """The served lists (all users, or one), read-only."""
    with sql.connect(paths.recommendations_db, read_only=True) as con:
        return sql.query(con, "recommendations_read", user_id=user_id).to_arrow_table()
