"""Feature store in DuckDB: incremental events, growing id maps, sequences, stats, splits.

``features.duckdb`` has a single writer at a time (guarded by a file lock next
to it); readers open it read-only between builds. Each refresh reads only the
landing parts newer than the store's watermark, so it costs the size of the
new data, not of the history, and the whole append (maps, events, watermark)
is one transaction: a crash rolls it back and the next refresh redoes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import duckdb

from recsys import columns as C
from recsys import sql
from recsys.config import FeatureConfig, Paths
from recsys.data import text
from recsys.data.landing import LandingZone, part_seq
from recsys.faults import crash_point
from recsys.files import file_lock
from recsys.timeutil import LapClock

log = logging.getLogger(__name__)

WATERMARK_KEY = "events_watermark"
TEXT_ENCODER_KEY = "text_encoder"  # the encoder's name, as stored with each embedding
TEXT_ENCODER_SPEC_KEY = "text_encoder_spec"  # how to load it again (FeatureConfig.text_encoder)
VALID_CUT_KEY = "temporal_valid_cut"
MIN_EVENTS_KEY = "min_user_events"
# Events watermark when the sequences and splits were last rebuilt. Micro-batch updates append
# events without rebuilding them, so a full retrain has seen exactly this much, not more.
DERIVED_WATERMARK_KEY = "derived_watermark"
MAX_SEQ = 2**32  # landing sequences must stay below this: see seq_key in sql/macros.sql


def get_meta(con: duckdb.DuckDBPyConnection, key: str, default: str | None = None) -> str | None:
    row = sql.fetch_one(con, "meta_get", key=key)
    return row[0] if row else default


@contextlib.contextmanager
def open_store(paths: Paths, timeout: float = 600.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Writer connection to the feature store, schema ensured, lock held."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with file_lock(paths.features_db.with_suffix(".lock"), timeout=timeout):
        with sql.connect(paths.features_db) as con:
            sql.run(con, "features_schema")
            _migrate(con)
            yield con


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a store written by an older version to the current events layout, in place.

    Until 2026-11 events held their id, user and item as text; ids and indices are unchanged
    by the rewrite, so models and watermarks stay valid.
    """
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'events'").fetchall()}
    if "event_id" not in cols:
        return
    log.info("migrating the feature store's events table to fixed-width columns")
    with _transaction(con):
        sql.run(con, "migrate_events_v2")


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All or nothing: a crash or error inside leaves the store as it was."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def read_store(paths: Paths, timeout: float = 300.0) -> duckdb.DuckDBPyConnection:
    """Read-only connection for consumers (training, scoring).

    DuckDB refuses readers while another process writes, and writers (feature builds,
    micro-batch refreshes) hold the file for seconds at a time: wait for them.
    """
    if not paths.features_db.exists():
        raise FileNotFoundError(
            f"{paths.features_db} does not exist: run `recsys features` after ingesting events")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sql.connect(paths.features_db, read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def get_watermark(con: duckdb.DuckDBPyConnection) -> int:
    row = sql.fetch_one(con, "meta_get", key=WATERMARK_KEY)
    return int(row[0]) if row else 0


@dataclass
class RefreshReport:
    previous_watermark: int
    watermark: int
    new_events: int
    new_items: int
    new_users: int
    # Seconds per step (item map, user map, events, items, commit): a slow refresh says where.
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        took = f" in {sum(self.timings.values()):.2f}s" if self.timings else ""
        return (f"events watermark {self.previous_watermark} -> {self.watermark}: "
                f"{self.new_events} new events, {self.new_users} new users, "
                f"{self.new_items} new items{took}")


def refresh_events(con: duckdb.DuckDBPyConnection, paths: Paths,
                   high: int | None = None) -> RefreshReport:
    """Append landing parts with sequence in (watermark, high] to the store.

    ``high`` pins the upper bound (a micro-batch takes a snapshot); by default
    everything published so far.
    """
    zone = LandingZone(paths)
    low = get_watermark(con)
    high = zone.max_seq() if high is None else high
    if high >= MAX_SEQ:
        raise ValueError(f"landing sequence {high} is beyond {MAX_SEQ - 1}, the most that the "
                         "sequence keys of sql/macros.sql (seq_key) can order")
    parts = [p for p in zone.event_parts() if low < (part_seq(p) or 0) <= high]
    item_parts = zone.item_parts()
    n_items0 = con.execute("SELECT count(*) FROM item_map").fetchall()[0][0]
    n_users0 = con.execute("SELECT count(*) FROM user_map").fetchall()[0][0]
    n_events0 = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    beyond = sql.fetch_one(con, "events_beyond_watermark", low=low)[0]
    if beyond:
        raise RuntimeError(f"the feature store holds {beyond} events beyond its watermark {low}: "
                           "it was written outside refresh_events; rebuild it (delete "
                           f"{paths.features_db} and run `recsys features`)")
    clock = LapClock()
    with _transaction(con):
        if parts:
            # By name: parts written before request_id existed lack the column.
            con.read_parquet([str(p) for p in parts], union_by_name=True).create_view(
                "landed", replace=True)
        else:
            con.register("landed", C.LANDING_EVENT_SCHEMA.empty_table())
        new_item_parts = [p for p in item_parts if low < (part_seq(p) or 0) <= high]
        if new_item_parts:
            con.read_parquet([str(p) for p in new_item_parts]).create_view("new_items",
                                                                           replace=True)
        else:
            con.register("new_items", C.LANDING_ITEM_SCHEMA.empty_table())
        sql.run(con, "item_map_append", low=low, high=high)
        clock.lap("item map")
        sql.run(con, "user_map_append", low=low, high=high)
        clock.lap("user map")
        sql.run(con, "events_append", low=low, high=high)
        clock.lap("events")
        if item_parts:
            con.read_parquet([str(p) for p in item_parts if (part_seq(p) or 0) <= high]
                             ).create_view("landed_items", replace=True)
        else:
            con.register("landed_items", C.LANDING_ITEM_SCHEMA.empty_table())
        sql.run(con, "items_refresh")
        sql.run(con, "meta_set", key=WATERMARK_KEY, value=str(max(high, low)))
        clock.lap("items")
    clock.lap("commit")
    n_items = con.execute("SELECT count(*) FROM item_map").fetchall()[0][0]
    n_users = con.execute("SELECT count(*) FROM user_map").fetchall()[0][0]
    n_events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    return RefreshReport(low, max(high, low), n_events - n_events0, n_items - n_items0,
                         n_users - n_users0, clock.timings)


def temporal_cuts(con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> tuple[dt.datetime, ...]:
    """Validation and test cut-offs at the configured quantiles of event time."""
    row = con.execute(
        "SELECT quantile_disc(ts, $v), quantile_disc(ts, $t) FROM events",
        {"v": cfg.temporal_valid_quantile, "t": cfg.temporal_test_quantile},
    ).fetchall()[0]
    return row


def build_derived(con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> None:
    """Recompute sequences, item statistics and both splits from the events table."""
    sql.run(con, "user_sequences", max_len=cfg.max_seq_len)
    crash_point("features.after_sequences")
    sql.run(con, "item_stats", window_days=cfg.popularity_window_days)
    sql.run(con, "split_leave_last_out", min_events=cfg.min_user_events)
    valid_cut, test_cut = temporal_cuts(con, cfg)
    if valid_cut is None:
        valid_cut = test_cut = dt.datetime(1970, 1, 1)
    sql.run(con, "split_temporal", valid_cut=valid_cut, test_cut=test_cut,
            max_len=cfg.max_seq_len)
    # Training needs the cut-offs to know which events were before the temporal validation.
    sql.run(con, "meta_set", key=VALID_CUT_KEY, value=valid_cut.isoformat())
    sql.run(con, "meta_set", key=MIN_EVENTS_KEY, value=str(cfg.min_user_events))
    sql.run(con, "meta_set", key=DERIVED_WATERMARK_KEY, value=str(get_watermark(con)))


@dataclass
class FeatureSummary:
    watermark: int
    events: int
    users: int
    items: int
    items_with_text: int
    first_ts: dt.datetime | None
    last_ts: dt.datetime | None
    loo_valid_users: int
    temporal_test_users: int

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(con: duckdb.DuckDBPyConnection) -> FeatureSummary:
    q = sql.fetch_one(con, "features_summary")
    return FeatureSummary(get_watermark(con), *q)


def build_features(paths: Paths | None = None, cfg: FeatureConfig | None = None) -> tuple[
        RefreshReport, FeatureSummary]:
    """Refresh the store from the landing zone and rebuild every derived table."""
    paths = paths or Paths()
    cfg = cfg or FeatureConfig()
    with open_store(paths) as con:
        report = refresh_events(con, paths)
        log.info(report.summary())
        crash_point("features.after_refresh")
        build_derived(con, cfg)
        encoder = text.load_encoder(cfg.text_encoder)
        if encoder is not None:
            text.refresh_text_embeddings(con, encoder)
        sql.run(con, "meta_set", key=TEXT_ENCODER_KEY, value=encoder.name if encoder else "none")
        sql.run(con, "meta_set", key=TEXT_ENCODER_SPEC_KEY, value=cfg.text_encoder)
        crash_point("features.before_checkpoint")
        con.execute("CHECKPOINT")
        return report, summarize(con)

