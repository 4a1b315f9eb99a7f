"""The HTTP intake: group commit, every rejection reason, sealing through ingestion, failures,
and request_id from the request to every reader of landing parts."""

from __future__ import annotations

import asyncio
import re

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import columns as C
from recsys import sql
from recsys.config import IngestConfig, IntakeConfig
from recsys.data.features import build_features, read_store
from recsys.data.ingest import EVENT_RAW_COLUMNS, ingest_frame, validate_events
from recsys.data.intake import (
    Intake,
    IntakeUnavailable,
    UnreadableRequest,
    _prevalidate,
    request_rows,
)
from recsys.data.landing import LandingZone, part_name
from recsys.data.readers import NONSCALAR
from recsys.files import atomic_write_parquet
from recsys.scoring.history import RecentHistories

SLOW_SEAL = IntakeConfig(seal_interval_s=60)  # the tests seal by hand


def landed(paths) -> pd.DataFrame:
    parts = [str(p) for p in LandingZone(paths).event_parts()]
    if not parts:
        return pd.DataFrame(columns=C.LANDING_EVENT_SCHEMA.names)
    return duckdb.sql(f"SELECT * FROM read_parquet({parts!r}, union_by_name = true)").df()


def quarantined(paths) -> pd.DataFrame:
    parts = [str(p) for p in LandingZone(paths).quarantine_parts()]
    if not parts:
        return pd.DataFrame(columns=["reason", "row_number", "source"])
    return duckdb.sql(f"SELECT * FROM read_parquet({parts!r})").df()


def event(n: int, **fields) -> dict:
    return {"user_id": f"u{n % 7}", "item_id": f"i{n}", "event_type": "click",
            "ts": f"2024-05-01T10:{n // 60 % 60:02d}:{n % 60:02d}Z"} | fields


def post(intake: Intake, *requests: list) -> list:
    """Submit requests concurrently, as the service's event loop does."""
    async def run():
        return await asyncio.gather(*(intake.submit(request_rows(r)) for r in requests),
                                    return_exceptions=True)
    return asyncio.run(run())


@pytest.fixture
def intake(paths):
    journal = Intake(paths, SLOW_SEAL)
    journal.start()
    yield journal
    journal.close()


def test_concurrent_requests_share_few_fsyncs_and_all_land_after_the_seal(paths):
    visible = []
    journal = Intake(paths, IntakeConfig(group_window_ms=5, seal_interval_s=60),
                     on_durable=visible.extend)
    journal.start()
    outcomes = post(journal, *([event(n)] for n in range(300)))
    assert [o.accepted for o in outcomes] == [1] * 300
    # 300 requests, each answered only after an fsync of its line: a handful of fsyncs.
    assert journal.rows == 300 and 1 <= journal.fsyncs <= 30, journal.fsyncs
    assert len(visible) == 300  # handed to the service before any answer
    [segment] = list(paths.intake.glob("seg-*.jsonl"))
    assert len(segment.read_bytes().splitlines()) == 300
    journal.close()  # seals
    df = landed(paths)
    assert len(df) == 300 and set(df.item_id) == {f"i{n}" for n in range(300)}
    assert df.source.unique().tolist() == [f"http:{segment.name}"]
    assert not list(paths.intake.glob("seg-*")) and not list(paths.intake.glob("*.lock"))


def test_every_rejection_reason_of_validation_is_reported_then_quarantined(intake, paths):
    reasons = set(re.findall(r"THEN '([a-z_]+)\|", sql.load("macros")))  # checked_events
    reasons.add("duplicate_event_id")
    batch = [
        event(0),                                                         # good
        event(1, item_id={"nested": 1}),                                  # malformed_row
        ["not", "an", "object"],                                          # malformed_row
        event(3, user_id=""),                                             # missing_field
        event(4, event_id="x" * 300),                                     # oversized_field
        event(5, item_id="bad\ufffdbytes"),                               # bad_encoding
        event(6, user_id="tab\there"),                                    # invalid_characters
        event(7, event_type="teleport"),                                  # unknown_event_type
        event(8, ts="yesterday-ish"),                                     # bad_timestamp
        event(9, ts="2999-01-01T00:00:00"),                               # future_timestamp
        event(10, ts="1970-01-02T00:00:00"),                              # ancient_timestamp
        event(11, value="NaN"),                                           # bad_value
        event(12, event_id="e1"),                                         # good
        event(13, event_id="e1"),                                         # duplicate_event_id
        event(0),                                                         # exact repeat: fine
        event(15, request_id="r" * 300),                                  # oversized_field
        event(16, request_id="req-16", value=2.5),                        # good
    ]
    [outcome] = post(intake, batch)
    rejected = {r["index"]: r["reason"] for r in outcome.rejected}
    assert set(rejected.values()) == reasons, reasons ^ set(rejected.values())
    assert sorted(rejected) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15]
    assert rejected[2] == "malformed_row" and rejected[13] == "duplicate_event_id"
    assert outcome.accepted == len(batch) - len(rejected)
    assert all(r["detail"] for r in outcome.rejected)

    intake.rotate()
    assert intake.seal_closed()
    df = landed(paths)
    assert sorted(df.item_id) == ["i0", "i12", "i16"]  # the repeat of event 0 lands once
    assert df.set_index("item_id").loc["i16", C.REQUEST_ID] == "req-16"
    q = quarantined(paths)
    assert sorted(q.reason) == sorted(rejected.values())
    # Quarantine rows point at the journal line of each entry (1-based, in request order).
    assert sorted(q.row_number) == [i + 1 for i in sorted(rejected)]


def test_a_request_with_nothing_usable_is_journaled_and_quarantined(intake, paths):
    [outcome] = post(intake, [event(0, event_type="nope"), 42])
    assert outcome.accepted == 0 and [r["index"] for r in outcome.rejected] == [0, 1]
    intake.rotate()
    intake.seal_closed()
    assert landed(paths).empty
    assert sorted(quarantined(paths).reason) == ["malformed_row", "unknown_event_type"]


def test_a_request_that_breaks_validation_itself_fails_alone(paths):
    """A lone surrogate cannot even be encoded (orjson refuses it at the door; a plain json
    parser lets it through): the requests committed with it in one group still land."""
    journal = Intake(paths, IntakeConfig(group_window_ms=50, seal_interval_s=60))
    journal.start()
    good, bad, other = post(journal, [event(1)], [event(2, user_id="\ud800")], [event(3)])
    journal.close()
    assert good.accepted == other.accepted == 1
    assert isinstance(bad, UnreadableRequest)
    assert sorted(landed(paths).item_id) == ["i1", "i3"]


def test_a_full_disk_is_an_error_for_the_request_then_the_next_segment_works(intake, paths):
    # The next segment's path leads to /dev/full: every write fails with ENOSPC, for real.
    (paths.intake / f"seg-{intake.boot_id}-000001.jsonl").symlink_to("/dev/full")
    [error] = post(intake, [event(1)])
    assert isinstance(error, IntakeUnavailable) and "No space left" in str(error)
    assert not (paths.intake / f"seg-{intake.boot_id}-000001.jsonl").exists()
    [outcome] = post(intake, [event(2)])
    assert outcome.accepted == 1
    intake.rotate()
    intake.seal_closed()
    assert landed(paths).item_id.tolist() == ["i2"]  # the refused event is nowhere


def test_parts_written_before_request_id_existed_still_read_everywhere(paths):
    """Old parts lack the column: ingestion's dedup, the store, the service's histories and
    forget-user read them by name, and a forget-user rewrite keeps the new column."""
    old_schema = pa.schema([f for f in C.LANDING_EVENT_SCHEMA if f.name != C.REQUEST_ID])
    old = pd.DataFrame({"event_id": ["o1", "o2"], "user_id": ["old-user", "gone"],
                        "item_id": ["i1", "i2"], "event_type": ["view", "view"],
                        "ts": pd.to_datetime(["2024-05-01 10:00", "2024-05-01 10:01"]),
                        "value": [None, None], "ingest_seq": [1, 1],
                        "ingested_at": pd.to_datetime(["2024-05-01 11:00"] * 2),
                        "source": ["old.csv"] * 2})
    atomic_write_parquet(pa.Table.from_pandas(old, schema=old_schema, preserve_index=False),
                         paths.landing_events / part_name(1))
    new = pd.DataFrame({"user_id": ["old-user", "gone"], "item_id": ["i3", "i4"],
                        "event_type": ["click", "click"],
                        "ts": ["2024-05-01T10:02:00", "2024-05-01T10:03:00"],
                        "request_id": ["r-1", None]})
    report = ingest_frame(new, "new", data_paths=paths)
    assert report.accepted == 2
    again = ingest_frame(old.drop(columns=["ingest_seq", "ingested_at", "source"]), "again",
                         data_paths=paths)
    assert again.duplicates_dropped == 2 and again.accepted == 0
    build_features(paths)
    with read_store(paths) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 4
    histories = RecentHistories(paths)
    assert histories.get("old-user").item_ids == ["i1", "i3"]

    from recsys.forget import forget_user

    forget_user("gone", paths)
    rewritten = pq.read_table(paths.landing_events / part_name(1))
    assert rewritten.schema.remove_metadata() == C.LANDING_EVENT_SCHEMA
    assert rewritten.column("user_id").to_pylist() == ["old-user"]
    df = landed(paths)
    assert sorted(df.user_id) == ["old-user", "old-user"]
    ids = df.set_index("item_id")[C.REQUEST_ID]
    assert ids.isna()["i1"] and ids["i3"] == "r-1"


def test_the_answer_agrees_with_landing_on_every_row_of_a_random_group():
    """The request path checks rows with the shared macro and compares repeats in Python; on
    random groups full of repeats, clashes and bad rows, every verdict must be the one that
    validate_events.sql gives the same rows when the journal is sealed."""
    rng = np.random.default_rng(7)
    pool = [event(n % 5, event_id=eid, ts=ts, value=value, event_type=kind)
            for n, (eid, ts, value, kind) in enumerate(
                (eid, ts, value, kind)
                for eid in (None, "e1", "e2", "")
                for ts in ("2024-06-01T12:00:00", "1717243200", "nope")
                for value in (None, "2.5", "NaN")
                for kind in ("view", " Click ", "teleport"))]
    config, now = IngestConfig(), pd.Timestamp("2024-07-01").to_pydatetime()
    for _ in range(20):
        group = [pool[i] for i in rng.integers(0, len(pool), size=12)]
        rows = request_rows(group)
        with sql.connect() as con:
            verdicts = _prevalidate(con, rows, config)
            table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string())
                              for c in (*EVENT_RAW_COLUMNS, NONSCALAR)}
                             | {"_row": pa.array(range(len(rows)), pa.int64())})
            landing = validate_events(con, table, config, now).to_pylist()
        for verdict, row in zip(verdicts, landing, strict=True):
            expected = {"accepted": ("accepted",), "duplicate": ("duplicate",)}.get(
                row["status"], ("rejected", row["reason"]))
            assert verdict[:len(expected)] == expected, (verdict, row)
