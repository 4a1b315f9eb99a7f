"""Batch scoring: top-K lists for every active user from the champion, swapped in atomically.

The lists go to ``recommendations.duckdb`` (table ``recommendations``) and a Parquet export.
Users are scored in chunks into a staging table that replaces the served one in a single
transaction, so memory is bounded by the chunk size and readers never see half a run.
"""

from __future__ import annotations

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

from recsys import sql
from recsys.config import Paths, ScoreConfig, TrackingConfig
from recsys.data.features import read_store
from recsys.data.sequences import pad_left
from recsys.faults import crash_point
from recsys.files import TMP_PREFIX, file_lock, remove_stale_temp_files
from recsys.registry.registry import Registry
from recsys.scoring.scorer import Scorer
from recsys.scoring.topk import ItemIndex
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
    paths, cfg = paths or Paths(), cfg or ScoreConfig()
    t0 = time.perf_counter()
    registry = Registry(paths, tracking_cfg or TrackingConfig())
    champion = registry.champion()
    if champion is None:
        raise LookupError(f"{registry.name} has no champion to score with: run a full retrain")
    with registry.model_folder(champion.version) as folder:
        scorer = Scorer.from_folder(folder)
    n_items, max_len = scorer.net.n_items, scorer.max_len
    con = read_store(paths)
    try:
        users = sql.query(con, "active_user_sequences", window_days=cfg.window_days,
                          max_len=max_len).to_arrow_table()
        items = sql.query(con, "item_filters").to_arrow_table()
    finally:
        con.close()
    catalogue = ItemIndex(scorer.item_vectors, _banned_items(items, cfg, n_items))
    k = min(cfg.k, len(catalogue))
    scored_at = utc_now()
    paths.recommendations_db.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with file_lock(paths.recommendations_db.with_suffix(".lock"), timeout=600):
        out = sql.connect(paths.recommendations_db)
        try:
            sql.run(out, "recommendations_staging")
            chunks = range(0, users.num_rows, cfg.chunk_size)
            for start in tqdm(chunks, desc="batch scoring", unit="chunk",
                              disable=not cfg.progress_bar):
                chunk = users.slice(start, cfg.chunk_size)
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
                top, scores = scorer.top_k(items, types, k,
                                           torch.cat(exclude, 1) if exclude else None, catalogue)
                n = chunk.num_rows
                table = pa.table({
                    "user_id": np.repeat(np.asarray(chunk["user_id"].to_pylist(), dtype=object),
                                         k),
                    "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
                    "item_id": scorer.item_ids[top.numpy().ravel() - 1],
                    "score": scores.numpy().ravel().astype(np.float32),
                    "model_version": np.full(n * k, champion.version, dtype=object),
                    "scored_at": np.full(n * k, np.datetime64(scored_at, "us")),
                })
                # A list may end in -inf scores when filters leave fewer than k items.
                table = table.filter(pa.compute.is_finite(table["score"]))
                out.register("chunk", table)
                sql.run(out, "recommendations_append")
                out.unregister("chunk")
                rows += table.num_rows
                crash_point("score.after_chunk")
            crash_point("score.before_swap")
            sql.run(out, "recommendations_swap")
            out.execute("CHECKPOINT")
            crash_point("score.after_swap")
            export_recommendations(out, paths.recommendations_export)
        finally:
            out.close()
    report = BatchScoreReport(champion.version, users.num_rows, rows,
                              time.perf_counter() - t0, paths.recommendations_db)
    log.info(report.summary())
    return report


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
    con = sql.connect(paths.recommendations_db, read_only=True)
    try:
        return sql.query(con, "recommendations_read", user_id=user_id).to_arrow_table()
    finally:
        con.close()
