"""Ingestion: every quarantine reason, idempotency, file-level rejection, all formats."""

from __future__ import annotations

import json
from collections import Counter

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import IngestConfig
from recsys.data.ingest import IngestReport, ingest_frame, ingest_paths, reports_markdown
from recsys.data.landing import LandingZone

HEADER = "event_id,user_id,item_id,event_type,ts,value\n"


def landed(paths) -> pd.DataFrame:
    parts = LandingZone(paths).event_parts()
    if not parts:
        return pd.DataFrame()
    return duckdb.sql(f"SELECT * FROM read_parquet({[str(p) for p in parts]!r})").df()


def quarantined(paths) -> pd.DataFrame:
    parts = LandingZone(paths).quarantine_parts()
    if not parts:
        return pd.DataFrame(columns=["reason"])
    return duckdb.sql(f"SELECT * FROM read_parquet({[str(p) for p in parts]!r})").df()


def test_good_rows_land_with_sequence_and_utc(tmp_path, paths):
    f = tmp_path / "e.csv"
    f.write_text(HEADER + ",u1,i1,view,2024-01-01T10:00:00+02:00,\n"
                 ",u1,i2,PURCHASE,1704103200,9.5\n"
                 ",u2,i1,rating,1704103200000,4\n")
    [r] = ingest_paths([f], data_paths=paths)
    assert (r.accepted, r.n_quarantined, r.balanced) == (3, 0, True)
    df = landed(paths).sort_values("item_id")
    assert set(df.ingest_seq) == {1}
    assert df.event_type.tolist() == ["view", "rating", "purchase"] or set(df.event_type) == {
        "view", "purchase", "rating"}
    first = df[df.user_id == "u1"].sort_values("ts").iloc[0]
    assert first.ts == pd.Timestamp("2024-01-01 08:00:00")  # offset converted to UTC
    # epoch seconds and epoch milliseconds parse to the same instant
    assert df[df.event_type == "purchase"].ts.iloc[0] == df[df.event_type == "rating"].ts.iloc[0]
    assert LandingZone(paths).event_watermark() == 1


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",,i1,view,2024-01-01,", "missing_field"),
        (",u1,,view,2024-01-01,", "missing_field"),
        (",u1,i1,,2024-01-01,", "missing_field"),
        (",u1,i1,view,,", "missing_field"),
        (",u1,i1,teleport,2024-01-01,", "unknown_event_type"),
        (",u1,i1,view,yesterday-ish,", "bad_timestamp"),
        (",u1,i1,view,2999-01-01,", "future_timestamp"),
        (",u1,i1,view,1970-01-02,", "ancient_timestamp"),
        (",u1,i1,view,2024-01-01,abc", "bad_value"),
        (",u1,i1,view,2024-01-01,nan", "bad_value"),
        (",u1,i1,view,2024-01-01,inf", "bad_value"),
        (",u" + "x" * 300 + ",i1,view,2024-01-01,", "oversized_field"),
        (',"u\x01",i1,view,2024-01-01,', "invalid_characters"),
        ("a,b,c", "malformed_row"),
    ],
)
def test_each_bad_row_is_quarantined_with_its_reason(tmp_path, paths, row, reason):
    f = tmp_path / "e.csv"
    f.write_text(HEADER + ",ok,i1,view,2024-01-01,\n" + row + "\n")
    [r] = ingest_paths([f], data_paths=paths)
    assert r.error is None
    assert r.accepted == 1, "one bad row must not block the good row of the same file"
    assert dict(r.quarantined) == {reason: 1}
    q = quarantined(paths)
    assert q.reason.tolist() == [reason]
    assert q.detail.iloc[0]
    assert r.balanced


def test_bad_encoding_is_quarantined_per_row(tmp_path, paths):
    f = tmp_path / "e.csv"
    f.write_bytes(HEADER.encode() + b",ok,i1,view,2024-01-01,\n,u\xff\xfe,i1,view,2024-01-01,\n")
    [r] = ingest_paths([f], data_paths=paths)
    assert (r.accepted, dict(r.quarantined)) == (1, {"bad_encoding": 1})


def test_duplicate_event_id_conflicts_are_quarantined_and_exact_repeats_dropped(tmp_path, paths):
    f = tmp_path / "e.csv"
    f.write_text(HEADER + "e1,u1,i1,view,2024-01-01,\n"
                 "e1,u1,i1,view,2024-01-01,\n"  # exact repeat: dropped
                 "e1,u1,i2,view,2024-01-01,\n")  # same id, other content: quarantined
    [r] = ingest_paths([f], data_paths=paths)
    assert (r.accepted, r.duplicates_dropped, dict(r.quarantined)) == (
        1, 1, {"duplicate_event_id": 1})
    g = tmp_path / "g.csv"
    g.write_text(HEADER + "e1,u1,i9,click,2024-01-02,\n")  # conflicts with what landed
    [r2] = ingest_paths([g], data_paths=paths)
    assert (r2.accepted, dict(r2.quarantined)) == (0, {"duplicate_event_id": 1})


def test_reingesting_the_same_file_duplicates_nothing(tmp_path, paths):
    f = tmp_path / "e.csv"
    f.write_text(HEADER + ",u1,i1,view,2024-01-01,\n,u1,i2,view,2024-01-02,\nbad\n")
    ingest_paths([f], data_paths=paths)
    [again] = ingest_paths([f], data_paths=paths)
    assert (again.accepted, again.duplicates_dropped) == (0, 2)
    assert len(landed(paths)) == 2
    assert len(quarantined(paths)) == 1, "bad rows are not quarantined twice"
    # the same events written differently (epoch seconds) derive the same ids
    g = tmp_path / "g.csv"
    g.write_text(HEADER + ",u1,i1,view,1704067200,\n")
    [r] = ingest_paths([g], data_paths=paths)
    assert (r.accepted, r.duplicates_dropped) == (0, 1)


def test_unparseable_file_is_rejected_and_landed_data_untouched(tmp_path, paths):
    good = tmp_path / "good.csv"
    good.write_text(HEADER + ",u1,i1,view,2024-01-01,\n")
    ingest_paths([good], data_paths=paths)
    before = sorted(p.name for p in LandingZone(paths).event_parts())
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    nocols = tmp_path / "nocols.csv"
    nocols.write_text("a,b\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    notjson = tmp_path / "x.jsonl"
    notjson.write_text("{{{\n")
    reports = ingest_paths([broken, nocols, empty, notjson, tmp_path / "missing.csv"],
                           data_paths=paths)
    errors = [r.error for r in reports]
    assert all(errors)
    assert "broken.parquet" in errors[0] and "Parquet" in errors[0]
    assert "missing required column" in errors[1] and "user_id" in errors[1]
    assert "empty" in errors[2]
    assert "JSON" in errors[3]
    assert "no such file" in errors[4]
    assert sorted(p.name for p in LandingZone(paths).event_parts()) == before
    assert len(landed(paths)) == 1


def test_a_rejected_file_does_not_stop_the_others(tmp_path, paths):
    bad = tmp_path / "a.csv"
    bad.write_text("nope\n1\n")
    good = tmp_path / "b.csv"
    good.write_text(HEADER + ",u1,i1,view,2024-01-01,\n")
    r1, r2 = ingest_paths([bad, good], data_paths=paths)
    assert r1.error and not r2.error and r2.accepted == 1


def test_reports_markdown_has_one_row_per_source():
    ok = IngestReport("a.csv", rows_read=1200, accepted=1000, duplicates_dropped=150,
                      quarantined=Counter({"bad_timestamp": 30, "missing_field": 20}))
    bad = IngestReport("b.csv", error="not a CSV file")
    header, rule, row_ok, row_bad = reports_markdown([ok, bad]).splitlines()
    assert header.startswith("| source |") and rule.startswith("|---|")
    assert row_ok == ("| a.csv | 1,200 | 1,000 | 150 | 50 | "
                      "bad_timestamp: 30, missing_field: 20 |")
    assert row_bad == "| b.csv | — | — | — | — | REJECTED: not a CSV file |"


def test_event_types_are_fixed_not_configurable():
    # The SQL enum and the model's event-type embedding fix the five types.
    with pytest.raises(ValueError, match="event_types"):
        IngestConfig(event_types=("view",))


def test_jsonl_and_parquet_inputs(tmp_path, paths):
    j = tmp_path / "e.jsonl"
    j.write_text("\n".join([
        json.dumps({"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2024-01-01"}),
        json.dumps({"user_id": 7, "item_id": 8, "event_type": "click", "ts": 1704067200,
                    "value": 1.5}),
        "not json",
        json.dumps([1, 2]),
        json.dumps({"user_id": "u2", "item_id": {"nested": 1}, "event_type": "view",
                    "ts": "2024-01-01"}),
    ]) + "\n")
    [r] = ingest_paths([j], data_paths=paths)
    assert r.accepted == 2
    assert r.quarantined == {"malformed_row": 3}
    assert r.balanced
    assert "item_id is an object, not text or a number" in quarantined(paths).detail.tolist()
    assert set(landed(paths).user_id) == {"u1", "7"}  # numbers as ids are their text
    p = tmp_path / "e.parquet"
    pq.write_table(pa.table({
        "user_id": ["u3"], "item_id": ["i3"], "event_type": ["cart"],
        "ts": pa.array([pd.Timestamp("2024-02-01", tz="Europe/Paris")],
                       pa.timestamp("us", tz="Europe/Paris")),
    }), p)
    [r] = ingest_paths([p], data_paths=paths)
    assert r.accepted == 1
    row = landed(paths).query("user_id == 'u3'").iloc[0]
    assert row.ts == pd.Timestamp("2024-01-31 23:00:00")


def test_ids_that_look_like_sql_or_paths_are_stored_verbatim(paths):
    hostile = ["'; DROP TABLE events; --", "../../etc/passwd", "Robert'); --", "ü🙂 id"]
    df = pd.DataFrame({"user_id": hostile, "item_id": hostile, "event_type": "view",
                       "ts": "2024-01-01"})
    r = ingest_frame(df, "hostile", data_paths=paths)
    assert r.accepted == 4
    assert sorted(landed(paths).user_id) == sorted(hostile)


def test_future_tolerance_is_configurable(tmp_path, paths):
    f = tmp_path / "e.csv"
    soon = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=2)).isoformat()
    f.write_text(HEADER + f",u1,i1,view,{soon},\n")
    [r] = ingest_paths([f], data_paths=paths, config=IngestConfig(max_future_seconds=60))
    assert dict(r.quarantined) == {"future_timestamp": 1}


def test_items_catalogue_validation_and_versioning(tmp_path, paths):
    f = tmp_path / "items.csv"
    f.write_text("item_id,title,category,description,created_at\n"
                 "i1,Red shoe,running,fast,2024-01-01\n"
                 ",No id,x,y,\n"
                 "i2,Blue pan,kitchen,,not-a-date\n")
    [r] = ingest_paths([f], kind="items", data_paths=paths)
    assert (r.accepted, dict(r.quarantined)) == (1, {"missing_field": 1, "bad_timestamp": 1})
    [again] = ingest_paths([f], kind="items", data_paths=paths)
    assert (again.accepted, again.duplicates_dropped) == (0, 1), "unchanged rows do not re-land"


def test_large_file_is_processed_in_chunks_each_with_its_sequence(tmp_path, paths):
    f = tmp_path / "e.csv"
    rows = "".join(f",u{i % 7},i{i},view,2024-01-01T00:00:{i % 60:02d},\n" for i in range(250))
    f.write_text(HEADER + rows)
    [r] = ingest_paths([f], data_paths=paths, chunk_rows=100)
    assert r.accepted == 250
    assert r.sequences == [1, 2, 3]


def _frame(n: int, user: str = "u") -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"{user}{k}" for k in range(n)], "item_id": "i1",
                         "event_type": "view", "ts": "2025-01-01T00:00:00Z"})


@pytest.mark.parametrize("failure", ["disk_full", "permission"])
def test_disk_full_or_permission_denied_is_a_clear_error_with_no_partial_data(
        paths, tmp_path, monkeypatch, failure):
    import errno

    from recsys import files

    first = tmp_path / "first.csv"
    _frame(5, "a").to_csv(first, index=False)
    ingest_paths([first], data_paths=paths)
    zone = LandingZone(paths)
    before = {p.name: p.read_bytes() for p in zone.event_parts()}

    real_write, real_replace = files.pq.write_table, files.os.replace

    def disk_fills_up(table, where, **kw):  # half the file reaches the disk, then ENOSPC
        real_write(table, where, **kw)
        with open(where, "r+b") as fh:
            fh.truncate(fh.seek(0, 2) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    def read_only(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    if failure == "disk_full":
        monkeypatch.setattr(files.pq, "write_table", disk_fills_up)
    else:
        monkeypatch.setattr(files.os, "replace", read_only)
    second, third = tmp_path / "second.csv", tmp_path / "third.csv"
    _frame(7, "b").to_csv(second, index=False)
    _frame(3, "c").to_csv(third, index=False)
    reports = ingest_paths([second, third], data_paths=paths)
    assert len(reports) == 1  # it stops: the next file would fail the same way
    message = reports[0].error
    expected = "No space left on device" if failure == "disk_full" else "Permission denied"
    assert expected in message and "second.csv" in message and "part-" in message
    assert "ingest the file again" in message
    assert {p.name: p.read_bytes() for p in zone.event_parts()} == before  # nothing partial
    assert not list(paths.landing_events.glob(".tmp-*"))

    monkeypatch.setattr(files.pq, "write_table", real_write)
    monkeypatch.setattr(files.os, "replace", real_replace)
    again = ingest_paths([second, third], data_paths=paths)  # once fixed, all of it lands
    assert [r.accepted for r in again] == [7, 3] and all(r.error is None for r in again)
    assert sum(pq.read_metadata(p).num_rows for p in zone.event_parts()) == 15
