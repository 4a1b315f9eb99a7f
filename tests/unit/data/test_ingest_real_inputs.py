"""Inputs people really send: Excel's byte-order mark, objects where ids belong, JSON arrays."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data.ingest import ingest_frame, ingest_paths
from recsys.data.readers import NONSCALAR, IngestError, read_chunks
from tests.unit.data.test_ingest import landed, quarantined

BOM = "\ufeff"
EVENT = {"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2024-01-01T00:00:00"}
COLUMNS = ("user_id", "item_id", "event_type", "ts")


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t"), (".txt", ",")])
def test_a_text_file_with_a_byte_order_mark_lands_whole(tmp_path, paths, suffix, sep):
    f = tmp_path / f"excel{suffix}"
    f.write_text(BOM + sep.join(COLUMNS) + "\n" + sep.join(EVENT.values()) + "\n"
                 + sep.join(["u2", "i2", "click", "2024-01-02"]) + "\n", encoding="utf-8")
    assert f.read_bytes().startswith(b"\xef\xbb\xbf")
    [r] = ingest_paths([f], data_paths=paths)
    assert r.error is None, r.error
    assert (r.accepted, r.n_quarantined) == (2, 0)
    assert sorted(landed(paths).user_id) == ["u1", "u2"]  # no "\ufeff" stuck to the first id


def test_a_bom_on_a_catalogue_and_on_json_lines(tmp_path, paths):
    items = tmp_path / "items.csv"
    items.write_text(BOM + "item_id,title\ni1,Tea\n", encoding="utf-8")
    [r] = ingest_paths([items], kind="items", data_paths=paths)
    assert (r.error, r.accepted) == (None, 1)
    j = tmp_path / "e.jsonl"
    j.write_text(BOM + json.dumps(EVENT) + "\n", encoding="utf-8")
    [r] = ingest_paths([j], data_paths=paths)
    assert (r.error, r.accepted, r.n_quarantined) == (None, 1, 0)


def test_utf16_text_is_rejected_with_what_to_do(tmp_path, paths):
    f = tmp_path / "unicode.txt"
    f.write_text(",".join(COLUMNS) + "\n" + ",".join(EVENT.values()) + "\n", encoding="utf-16")
    [r] = ingest_paths([f], data_paths=paths)
    assert "UTF-16" in r.error and "CSV UTF-8" in r.error
    assert landed(paths).empty


@pytest.mark.parametrize(("field", "value", "kind"), [
    ("user_id", {"x": 1}, "an object"),
    ("user_id", [1], "a list"),
    ("item_id", {}, "an object"),
    ("event_type", ["view"], "a list"),
    ("ts", {"$date": "2024-01-01"}, "an object"),
    ("value", [4.5], "a list"),
    ("event_id", {"id": "e1"}, "an object"),
])
def test_an_object_or_list_in_a_field_is_a_malformed_row_naming_it(tmp_path, paths, field,
                                                                    value, kind):
    j = tmp_path / "e.jsonl"
    j.write_text(json.dumps(EVENT) + "\n" + json.dumps(EVENT | {field: value}) + "\n")
    [r] = ingest_paths([j], data_paths=paths)
    assert (r.accepted, dict(r.quarantined), r.balanced) == (1, {"malformed_row": 1}, True)
    q = quarantined(paths)
    assert q.detail.tolist() == [f"{field} is {kind}, not text or a number"]
    assert q.row_number.tolist() == [2]
    assert json.loads(q.raw.iloc[0])[field] == json.dumps(value)  # what was sent, kept
    assert landed(paths).user_id.tolist() == ["u1"]


def test_numbers_and_booleans_as_ids_keep_their_text(tmp_path, paths):
    j = tmp_path / "e.jsonl"
    rows = [EVENT | {"user_id": 7, "item_id": 8}, EVENT | {"user_id": 7.5, "item_id": True}]
    j.write_text("".join(json.dumps(r) + "\n" for r in rows))
    [r] = ingest_paths([j], data_paths=paths)
    assert (r.accepted, r.n_quarantined) == (2, 0)
    got = landed(paths).sort_values("user_id")
    assert got.user_id.tolist() == ["7", "7.5"] and got.item_id.tolist() == ["8", "true"]


def test_a_json_array_file_is_read_like_json_lines(tmp_path, paths):
    f = tmp_path / "export.json"
    rows = [EVENT, EVENT | {"user_id": "u2"}, EVENT | {"item_id": {"x": 1}}, "not an object"]
    f.write_text(BOM + json.dumps(rows, indent=2), encoding="utf-8")
    [r] = ingest_paths([f], data_paths=paths)
    assert r.error is None, r.error
    assert (r.accepted, dict(r.quarantined), r.balanced) == (2, {"malformed_row": 2}, True)
    details = sorted(quarantined(paths).detail)
    assert details == ["element 4: expected a JSON object, got str",
                       "item_id is an object, not text or a number"]


def test_a_broken_json_array_is_rejected_not_half_read(tmp_path, paths):
    f = tmp_path / "cut.json"
    f.write_text(json.dumps([EVENT, EVENT | {"user_id": "u2"}], indent=2)[:-10])
    [r] = ingest_paths([f], data_paths=paths)
    assert "not a valid JSON array" in r.error
    assert landed(paths).empty


def test_json_lines_whose_first_line_is_an_array_stay_json_lines(tmp_path, paths):
    f = tmp_path / "e.jsonl"
    f.write_text("[1, 2]\n" + json.dumps(EVENT) + "\n")
    [r] = ingest_paths([f], data_paths=paths)
    assert (r.error, r.accepted, dict(r.quarantined)) == (None, 1, {"malformed_row": 1})


def test_parquet_struct_and_list_columns_quarantine_their_rows(tmp_path, paths):
    f = tmp_path / "e.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array([{"x": 1}, None, {"x": 3}], pa.struct([("x", pa.int64())])),
        "item_id": ["i1", "i2", "i3"], "event_type": ["view"] * 3,
        "ts": ["2024-01-01"] * 3,
        "value": pa.array([None, [1.0], None], pa.list_(pa.float64())),
    }), f)
    [r] = ingest_paths([f], data_paths=paths)
    assert r.error is None, r.error
    assert (r.accepted, dict(r.quarantined), r.balanced) == (0, {"malformed_row": 3}, True)
    struct, listed = "user_id is an object", "value is a list"
    assert sorted(quarantined(paths).detail) == [
        f"{struct}, not text or a number"] * 2 + [f"{listed}, not text or a number"]


def test_ingest_frame_quarantines_dicts_and_lists_in_object_columns(paths):
    frame = pd.DataFrame([EVENT, EVENT | {"user_id": {"x": 1}}, EVENT | {"item_id": ["a"]},
                          EVENT | {"user_id": "u4"}])
    r = ingest_frame(frame, "frame", data_paths=paths)
    assert (r.accepted, dict(r.quarantined), r.balanced) == (2, {"malformed_row": 2}, True)
    q = quarantined(paths).sort_values("row_number")
    assert q.row_number.tolist() == [2, 3]
    assert q.detail.tolist() == ["user_id is an object, not text or a number",
                                 "item_id is a list, not text or a number"]
    items = pd.DataFrame({"item_id": ["i1", "i2"], "title": ["Tea", ["a", "list"]]})
    r = ingest_frame(items, "items", kind="items", data_paths=paths)
    assert (r.accepted, dict(r.quarantined)) == (1, {"malformed_row": 1})


def test_every_chunk_carries_the_nonscalar_column(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text(",".join(COLUMNS) + "\n" + ",".join(EVENT.values()) + "\n")
    [chunk] = read_chunks(f, COLUMNS, COLUMNS)
    assert chunk.table.column_names == [*COLUMNS, NONSCALAR]
    assert chunk.table.column(NONSCALAR).to_pylist() == [None]
    with pytest.raises(IngestError, match="missing required column"):
        list(read_chunks(f, [*COLUMNS, "x"], ["x"]))
