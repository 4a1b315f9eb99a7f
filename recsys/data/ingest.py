"""Ingestion: validate incoming events/items and publish them to the landing zone.

Every row ends in exactly one place: the landing zone (accepted), the
quarantine (with a reason), or the "duplicates dropped" count (an exact repeat
of an event that already landed). The three add up to the rows read, and the
``IngestReport`` says so.

Order of writes for one chunk, all under the landing lock: events part first,
then quarantine part. A crash between the two loses nothing: re-ingesting the
file drops the events that already landed as duplicates and quarantines the
bad rows again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys import columns as C
from recsys import sql
from recsys.config import IngestConfig, Paths
from recsys.data.event_index import EventIndex
from recsys.data.landing import LandingZone, Writer
from recsys.data.readers import (
    NONSCALAR,
    IngestError,
    Malformed,
    RawChunk,
    _text,
    nonscalar_details,
    read_chunks,
    text_columns,
)
from recsys.faults import crash_point
from recsys.files import StorageError
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)

EVENT_RAW_COLUMNS = (C.EVENT_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TS, C.VALUE,
                     C.REQUEST_ID)
ITEM_RAW_COLUMNS = (C.ITEM_ID, C.TITLE, C.CATEGORY, C.DESCRIPTION, C.CREATED_AT)


@dataclass
class IngestReport:
    """What happened to the rows of one source."""

    source: str
    kind: str = "events"
    rows_read: int = 0
    accepted: int = 0
    duplicates_dropped: int = 0
    quarantined: Counter = field(default_factory=Counter)
    sequences: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def balanced(self) -> bool:
        """Every row read is accounted for exactly once."""
        return self.rows_read == self.accepted + self.duplicates_dropped + self.n_quarantined

    def summary(self) -> str:
        if self.error:
            return f"{self.source}: REJECTED: {self.error}"
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.quarantined.items()))
        return (
            f"{self.source}: {self.rows_read} {self.kind} rows read, {self.accepted} accepted, "
            f"{self.duplicates_dropped} duplicates dropped, {self.n_quarantined} quarantined"
            + (f" ({reasons})" if reasons else "")
        )


def reports_markdown(reports: Iterable[IngestReport]) -> str:
    """Accepted / quarantined counts per source as a Markdown table, for a run's artifact."""
    lines = ["| source | rows read | accepted | duplicates dropped | quarantined | reasons |",
             "|---|---|---|---|---|---|"]
    for r in reports:
        if r.error:
            lines.append(f"| {r.source} | — | — | — | — | REJECTED: {r.error} |")
            continue
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r.quarantined.items()))
        lines.append(f"| {r.source} | {r.rows_read:,} | {r.accepted:,} | "
                     f"{r.duplicates_dropped:,} | {r.n_quarantined:,} | {reasons} |")
    return "\n".join(lines)


class Ingestor:
    """Validates chunks and publishes them; one instance per writer section."""

    def __init__(self, writer: Writer, config: IngestConfig, threads: int | None = None):
        """One DuckDB connection for the section; ``threads`` its threads (default: every core).

        The service's sealer takes one, so that a seal does not take the cores from the
        requests it serves.
        """
        self.writer = writer
        self.zone = writer.zone
        self.config = config
        self.con = sql.connect()
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._index: EventIndex | None = None  # opened by the first event chunk

    def close(self) -> None:
        self.con.close()
        if self._index is not None:
            self._index.close()

    @property
    def index(self) -> EventIndex:
        """The event id index, caught up with every part published before this section."""
        if self._index is None:  # kept only once caught up: a failed catch-up is retried
            self._index = EventIndex.open(self.zone, self.con)
        return self._index

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def ingest_chunk(self, chunk: RawChunk, source: str, report: IngestReport) -> None:
        """Validate and publish one chunk of the report's kind (events or items)."""
        if report.kind == "events":
            self.ingest_event_chunk(chunk, source, report)
        else:
            self.ingest_item_chunk(chunk, source, report)

    # ------------------------------------------------------------- events
    def ingest_event_chunk(self, chunk: RawChunk, source: str, report: IngestReport) -> None:
        now = utc_now()
        seq = self.writer.allocate()
        checked = validate_events(self.con, _numbered(chunk), self.config, now)
        crash_point("ingest.after_validate")
        status = checked.column("status")
        accepted = checked.filter(pc.equal(status, "accepted"))
        quarantined = checked.filter(pc.equal(status, "quarantined"))
        dup_in_chunk = int(pc.sum(pc.equal(status, "duplicate")).as_py() or 0)

        # Against what already landed: exact repeats are dropped, conflicts quarantined.
        keys = accepted.column("id_key").to_numpy()  # validate_events.sql's event_id_key
        landing_status = self._landing_status(accepted, keys)
        dup_landed = int(pc.sum(pc.equal(landing_status, "duplicate")).as_py() or 0)
        conflict = pc.equal(landing_status, "conflict")
        conflicts = accepted.filter(conflict)
        new = pc.equal(landing_status, "new")
        accepted = accepted.filter(new)

        events = self._landing_events(accepted, seq, now, source)
        published = self.writer.publish_events(seq, events)
        crash_point("ingest.after_events_part")  # published, not indexed: the next catches up
        if published is not None:
            self.index.add(seq, keys[new.to_numpy(zero_copy_only=False)])

        q = self._quarantine_rows(
            quarantined, conflicts, chunk.malformed, kind="event", seq=seq, now=now,
            source=source)
        self.writer.publish_quarantine(seq, q)
        crash_point("ingest.after_quarantine_part")

        _account(report, chunk, seq, events.num_rows, dup_in_chunk + dup_landed,
                 quarantined.column("reason").to_pylist()
                 + ["duplicate_event_id"] * conflicts.num_rows, q.num_rows)

    def _landing_status(self, accepted: pa.Table, keys: np.ndarray) -> pa.ChunkedArray:
        """'new', 'duplicate' or 'conflict' per row, read from the parts the index names."""
        parts = self.index.parts_holding(keys) if accepted.num_rows else []
        if not parts:
            return pa.chunked_array([pa.array(["new"] * accepted.num_rows, pa.string())])
        self.con.register("batch", accepted.select(["_row", "event_id", "content_hash"]))
        # By name: parts written before request_id existed lack the column (union_by_name).
        self.con.read_parquet([str(p) for p in parts], union_by_name=True).create_view(
            "landed", replace=True)
        out = sql.query(self.con, "events_already_landed").to_arrow_table().column("landing_status")
        self.con.unregister("batch")
        return out

    @staticmethod
    def _landing_events(accepted: pa.Table, seq: int, now: dt.datetime, source: str) -> pa.Table:
        n = accepted.num_rows
        cols = {
            C.EVENT_ID: accepted.column("event_id"),
            C.USER_ID: accepted.column("user_id"),
            C.ITEM_ID: accepted.column("item_id"),
            C.EVENT_TYPE: accepted.column("event_type"),
            C.TS: accepted.column("ts").cast(pa.timestamp("us")),
            C.VALUE: accepted.column("value"),
            C.INGEST_SEQ: pa.array([seq] * n, pa.int64()),
            C.INGESTED_AT: pa.array([now] * n, pa.timestamp("us")),
            C.SOURCE: pa.array([source] * n, pa.string()),
            C.REQUEST_ID: accepted.column("request_id"),
        }
        return pa.table(cols, schema=C.LANDING_EVENT_SCHEMA)

    # -------------------------------------------------------------- items
    def ingest_item_chunk(self, chunk: RawChunk, source: str, report: IngestReport) -> None:
        now = utc_now()
        seq = self.writer.allocate()
        self.con.register("raw_items", _numbered(chunk))
        parts = self.zone.item_parts()
        if parts:
            self.con.read_parquet([str(p) for p in parts]).create_view("landed_items", replace=True)
        else:
            self.con.register("landed_items", C.LANDING_ITEM_SCHEMA.empty_table())
        checked = sql.query(self.con, "validate_items", max_id_len=self.config.max_id_len,
                          max_text_len=self.config.max_text_len).to_arrow_table()
        self.con.unregister("raw_items")
        status = checked.column("status")
        accepted = checked.filter(pc.equal(status, "accepted"))
        quarantined = checked.filter(pc.equal(status, "quarantined"))
        n = accepted.num_rows
        items = pa.table(
            {
                C.ITEM_ID: accepted.column("item_id"),
                C.TITLE: accepted.column("title"),
                C.CATEGORY: accepted.column("category"),
                C.DESCRIPTION: accepted.column("description"),
                C.CREATED_AT: accepted.column("created_at").cast(pa.timestamp("us")),
                C.INGEST_SEQ: pa.array([seq] * n, pa.int64()),
                C.INGESTED_AT: pa.array([now] * n, pa.timestamp("us")),
                C.SOURCE: pa.array([source] * n, pa.string()),
            },
            schema=C.LANDING_ITEM_SCHEMA,
        )
        self.writer.publish_items(seq, items)
        q = self._quarantine_rows(quarantined, None, chunk.malformed, kind="item", seq=seq,
                                  now=now, source=source)
        self.writer.publish_quarantine(seq, q)
        _account(report, chunk, seq, n, int(pc.sum(pc.equal(status, "duplicate")).as_py() or 0),
                 quarantined.column("reason").to_pylist(), q.num_rows)

    # --------------------------------------------------------- quarantine
    def _quarantine_rows(
        self,
        rejected: pa.Table,
        conflicts: pa.Table | None,
        malformed: list[Malformed],
        kind: str,
        seq: int,
        now: dt.datetime,
        source: str,
    ) -> pa.Table:
        reasons = rejected.column("reason").to_pylist()
        details = rejected.column("detail").to_pylist()
        rows = rejected.column("_row").to_pylist()
        raws = rejected.column("raw").to_pylist()
        if conflicts is not None and conflicts.num_rows:
            reasons += ["duplicate_event_id"] * conflicts.num_rows
            details += [f"event_id {e} already landed with different content"
                        for e in conflicts.column("event_id").to_pylist()]
            rows += conflicts.column("_row").to_pylist()
            raws += conflicts.column("raw").to_pylist()
        for m in malformed:
            reasons.append("malformed_row")
            details.append(m.detail)
            rows.append(m.row_number)
            raws.append(m.raw)
        table = pa.table(
            {
                "quarantine_id": pa.array([None] * len(rows), pa.string()),
                "kind": pa.array([kind] * len(rows), pa.string()),
                "reason": pa.array(reasons, pa.string()),
                "detail": pa.array(details, pa.string()),
                C.SOURCE: pa.array([source] * len(rows), pa.string()),
                "row_number": pa.array(rows, pa.int64()),
                "raw": pa.array(raws, pa.string()),
                C.INGEST_SEQ: pa.array([seq] * len(rows), pa.int64()),
                C.INGESTED_AT: pa.array([now] * len(rows), pa.timestamp("us")),
            },
            schema=C.QUARANTINE_SCHEMA,
        )
        if table.num_rows == 0:
            return table
        return self._new_quarantine_only(table)

    def _new_quarantine_only(self, table: pa.Table) -> pa.Table:
        """Give rows stable ids and drop those already quarantined (re-ingested files)."""
        self.con.register("q_new", table)
        parts = self.zone.quarantine_parts()
        if parts:
            self.con.read_parquet([str(p) for p in parts]).create_view("q_old", replace=True)
        else:
            self.con.register("q_old", C.QUARANTINE_SCHEMA.empty_table())
        out = sql.query(self.con, "quarantine_new_rows").to_arrow_table()
        self.con.unregister("q_new")
        return out.cast(C.QUARANTINE_SCHEMA)


def validate_events(con: duckdb.DuckDBPyConnection, raw: pa.Table, config: IngestConfig,
                    now: dt.datetime) -> pa.Table:
    """``sql/validate_events.sql`` over ``raw`` (text columns, NONSCALAR and ``_row``).

    One row out per row in, with its status and, for a quarantined row, reason and detail.
    Files and sealed HTTP journals land through this; the HTTP intake's answer runs the same
    row checks (``check_event_rows``), so both reject for the same reasons.
    """
    con.register("raw_events", raw)
    try:
        return sql.query(con, "validate_events", **_validation_params(config, now)
                         ).to_arrow_table()
    finally:
        con.unregister("raw_events")


def check_event_rows(con: duckdb.DuckDBPyConnection, raw: pa.Table, config: IngestConfig,
                     now: dt.datetime) -> dict[str, list]:
    """``sql/check_events.sql`` (the row checks alone) for a small batch, as lists by column.

    The statement's binding and planning is most of the cost of a few rows; executing it
    directly binds it once, where a relation binds it twice. Big chunks go through
    ``validate_events`` and a relation, which avoids copying rows.
    """
    con.register("raw_events", raw)
    try:
        result = sql.run(con, "check_events", **_validation_params(config, now))
        names = [d[0] for d in result.description]
        return dict(zip(names, map(list, zip(*result.fetchall(), strict=True)), strict=True)) \
            if raw.num_rows else {n: [] for n in names}
    finally:
        con.unregister("raw_events")


def _validation_params(config: IngestConfig, now: dt.datetime) -> dict:
    return {"now": now, "max_future_seconds": config.max_future_seconds,
            "min_ts": config.min_ts, "max_id_len": config.max_id_len,
            "event_types": list(C.EVENT_TYPES)}


def _numbered(chunk: RawChunk) -> pa.Table:
    """The chunk with each row's position in its file, carried through to quarantine.

    A chunk that numbers its rows itself (``_row``: the intake journal, whose malformed lines
    sit between the parsed ones) keeps its numbers.
    """
    if "_row" in chunk.table.column_names:
        return chunk.table
    first = chunk.first_row
    rows = pa.array(range(first, first + chunk.table.num_rows), pa.int64())
    return chunk.table.append_column("_row", rows)


def _account(report: IngestReport, chunk: RawChunk, seq: int, accepted: int, dropped: int,
             reasons: list[str], quarantine_written: int) -> None:
    """Add one chunk's outcome to the report; malformed rows count as quarantined."""
    report.rows_read += chunk.table.num_rows + len(chunk.malformed)
    report.accepted += accepted
    report.duplicates_dropped += dropped
    report.quarantined.update(reasons)
    report.quarantined["malformed_row"] += len(chunk.malformed)
    report.quarantined = +report.quarantined  # drop zero counts
    if accepted or quarantine_written:
        report.sequences.append(seq)


def ingest_paths(
    paths: Iterable[Path | str],
    kind: str = "events",
    data_paths: Paths | None = None,
    config: IngestConfig | None = None,
    chunk_rows: int = 1_000_000,
    progress: bool = False,
) -> list[IngestReport]:
    """Ingest files one by one; a rejected file does not stop the others.

    Returns one report per file; a rejected file's report carries ``error``.
    """
    data_paths = data_paths or Paths()
    config = config or IngestConfig()
    zone = LandingZone(data_paths)
    required = C.REQUIRED_EVENT_COLUMNS if kind == "events" else (C.ITEM_ID,)
    columns = EVENT_RAW_COLUMNS if kind == "events" else ITEM_RAW_COLUMNS
    reports = []
    with zone.writer() as writer, Ingestor(writer, config) as ingestor:
        for path in _expand(paths):
            report = IngestReport(source=str(path), kind=kind)
            try:
                chunks = read_chunks(Path(path), columns, required, chunk_rows)
                if progress:
                    from tqdm import tqdm

                    chunks = tqdm(chunks, desc=f"ingest {Path(path).name}", unit="chunk")
                for chunk in chunks:
                    ingestor.ingest_chunk(chunk, str(path), report)
            except (IngestError, duckdb.Error, pa.ArrowException) as exc:
                report.error = str(exc) if isinstance(exc, IngestError) else f"{path}: {exc}"
            except StorageError as exc:
                # The disk is full or not writable: later files would fail the same way.
                report.error = (f"{path}: {exc.strerror} (rows counted above landed; the "
                                "rest did not: ingest the file again once fixed, nothing "
                                "lands twice)")
                log.error(report.summary())
                reports.append(report)
                break
            log.info(report.summary())
            reports.append(report)
    return reports


def _expand(paths: Iterable[Path | str]) -> list[Path]:
    """Folders expand to the data files they hold, in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f for f in p.rglob("*")
                if f.is_file() and not f.name.startswith(".")
                and f.suffix.lower() in {".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson"}
            )
        else:
            out.append(p)
    return out


def ingest_frame(
    frame: pd.DataFrame | pa.Table,
    source: str,
    kind: str = "events",
    data_paths: Paths | None = None,
    config: IngestConfig | None = None,
    chunk_rows: int = 1_000_000,
) -> IngestReport:
    """Python API: ingest an in-memory table (loaders, replay, tests).

    A cell holding a dict, list or array (pandas object column, Arrow struct or list) makes
    its row ``malformed_row``, as in a JSON-lines file.
    """
    columns: Sequence[str] = EVENT_RAW_COLUMNS if kind == "events" else ITEM_RAW_COLUMNS
    nonscalar = None
    if isinstance(frame, pa.Table):
        table = frame
    else:
        table = _arrow_from_pandas(frame)
        names = {str(n).strip().lower(): n for n in frame.columns}
        nonscalar = nonscalar_details({c: frame[names[c]].tolist() for c in columns
                                       if c in names and frame[names[c]].dtype == object},
                                      len(frame))
    timestamps = {}
    for name in table.column_names:
        col = table.column(name)
        if name.strip().lower() in columns and pa.types.is_timestamp(col.type):
            if col.type.tz is not None:
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
            timestamps[name] = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
    for name, col in timestamps.items():
        table = table.set_column(table.column_names.index(name), name, col)
    strings_table = text_columns(table, columns)
    if nonscalar is not None:
        merged = pc.coalesce(strings_table.column(NONSCALAR), nonscalar)
        strings_table = strings_table.set_column(strings_table.num_columns - 1, NONSCALAR, merged)
    zone = LandingZone(data_paths or Paths())
    report = IngestReport(source=source, kind=kind)
    with zone.writer() as writer, Ingestor(writer, config or IngestConfig()) as ingestor:
        for start in range(0, max(strings_table.num_rows, 1), chunk_rows):
            chunk = RawChunk(strings_table.slice(start, chunk_rows), start + 1)
            ingestor.ingest_chunk(chunk, source, report)
    return report


def _arrow_from_pandas(frame: pd.DataFrame) -> pa.Table:
    """Columns of mixed Python types (objects) become text; the rest keep their Arrow type."""
    cols = {}
    for name in frame.columns:
        s = frame[name]
        if s.dtype == object:
            cols[str(name)] = pa.array([None if _missing(v) else _text(v) for v in s], pa.string())
        else:
            cols[str(name)] = pa.Array.from_pandas(s)
    return pa.table(cols)


def _missing(v: object) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False
