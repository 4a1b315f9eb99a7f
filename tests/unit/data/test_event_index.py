"""The event id index: a filter that names the parts to read, never a wrong answer."""

from __future__ import annotations

import logging
import sqlite3

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import sql
from recsys.config import IngestConfig
from recsys.data.event_index import EventIndex
from recsys.data.ingest import Ingestor, ingest_frame, ingest_paths
from recsys.data.landing import LandingZone, part_seq
from recsys.files import StorageError
from recsys.forget import forget_user
from tests.unit.data.test_ingest import landed, quarantined


def events(ids: list[str], user: str = "u1", day: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"event_id": ids, "user_id": user, "item_id": [f"i{i}" for i in ids],
                         "event_type": "view", "ts": f"2024-01-{day:02d}T10:00:00"})


def keys_of(ids: list[str]) -> np.ndarray:
    with sql.connect() as con:
        con.register("t", pd.DataFrame({"event_id": ids}))
        return con.sql("SELECT event_id_key(event_id) AS k FROM t").fetchnumpy()["k"]


def index_file(paths):
    return paths.root / "landing" / "event_ids.sqlite"


def test_each_part_is_indexed_and_a_repeat_reads_only_its_own_part(paths, monkeypatch):
    for n in range(3):
        ingest_frame(events([f"e{n}a", f"e{n}b"]), f"batch{n}", data_paths=paths)
    seqs = [part_seq(p) for p in LandingZone(paths).event_parts()]
    zone = LandingZone(paths)
    with zone.writer(), sql.connect() as con:
        index = EventIndex.open(zone, con)
        assert index.covered_through == seqs[-1]
        assert [part_seq(p) for p in index.parts_holding(keys_of(["e1b"]))] == [seqs[1]]
        assert index.parts_holding(keys_of(["never-landed"])) == []
        index.close()

    read: list[list[str]] = []
    real = Ingestor._landing_status

    def spy(self, accepted, keys):
        read.append([p.name for p in self.index.parts_holding(keys)])
        return real(self, accepted, keys)

    monkeypatch.setattr(Ingestor, "_landing_status", spy)
    report = ingest_frame(events(["e1b", "e9"]), "again", data_paths=paths)
    assert (report.accepted, report.duplicates_dropped) == (1, 1)
    assert read == [[LandingZone(paths).event_parts()[1].name]]


def test_a_zone_that_landed_without_the_index_is_indexed_first(paths, caplog):
    ingest_frame(events(["a", "b"]), "one", data_paths=paths)
    ingest_frame(events(["c"]), "two", data_paths=paths)
    index_file(paths).unlink()
    changed = events(["b"])
    changed["item_id"] = "other"  # same id, other content
    with caplog.at_level(logging.INFO, logger="recsys.data.event_index"):
        report = ingest_frame(pd.concat([events(["a", "c", "d"]), changed]), "three",
                              data_paths=paths)
    assert (report.accepted, report.duplicates_dropped, report.n_quarantined) == (1, 2, 1)
    assert quarantined(paths).reason.tolist() == ["duplicate_event_id"]
    assert "indexing the event ids of 2 landing parts" in caplog.text
    assert landed(paths).event_id.is_unique


def test_a_catch_up_commits_in_batches_of_parts(paths, monkeypatch):
    """Indexing a whole zone holds one batch in memory; a catch-up that dies keeps its batches."""
    for n in range(4):
        ingest_frame(events([f"e{n}a", f"e{n}b"]), f"batch{n}", data_paths=paths)
    index_file(paths).unlink()
    monkeypatch.setattr("recsys.data.event_index._CATCH_UP_ROWS", 3)  # two parts a batch
    calls: list[int] = []
    real = EventIndex._add
    monkeypatch.setattr(EventIndex, "_add", lambda self, keys, seqs, through: (
        calls.append(len(keys)), real(self, keys, seqs, through)))
    report = ingest_frame(events(["e0a", "e3b", "new"]), "again", data_paths=paths)
    assert (report.accepted, report.duplicates_dropped) == (1, 2)
    assert calls == [4, 4, 1]  # two catch-up batches, then the new part


def test_a_part_published_but_not_indexed_is_caught_up(paths, monkeypatch):
    """A writer killed between publishing a part and indexing it (ingest.after_events_part)."""
    ingest_frame(events(["a"]), "one", data_paths=paths)
    monkeypatch.setattr(EventIndex, "add", lambda self, seq, keys: None)
    ingest_frame(events(["b"]), "two", data_paths=paths)  # lands, never indexed
    monkeypatch.undo()
    ingest_frame(events(["c"]), "three", data_paths=paths)  # moves the mark past "two"
    report = ingest_frame(events(["a", "b", "c"]), "again", data_paths=paths)
    assert (report.accepted, report.duplicates_dropped) == (0, 3)


def test_a_key_that_names_the_wrong_part_costs_a_read_not_an_event(paths):
    """Two ids with one key: the exact check on the named part says the new one is new."""
    ingest_frame(events(["a"]), "one", data_paths=paths)
    zone = LandingZone(paths)
    with zone.writer(), sql.connect() as con:
        index = EventIndex.open(zone, con)
        index.add(part_seq(zone.event_parts()[0]), keys_of(["b"]))  # as if "b" shared a key
        index.close()
    report = ingest_frame(events(["b"]), "two", data_paths=paths)
    assert (report.accepted, report.duplicates_dropped, report.n_quarantined) == (1, 0, 0)


@pytest.mark.parametrize("damage", ["header", "pages", "layout", "key function"])
def test_a_damaged_or_foreign_index_is_rebuilt_from_the_parts(paths, caplog, damage):
    ingest_frame(events([f"e{i}" for i in range(3000)]), "one", data_paths=paths)
    ingest_frame(events(["a", "b"]), "two", data_paths=paths)
    path = index_file(paths)
    if damage == "header":
        path.write_bytes(b"not a database" * 100)
    elif damage == "pages":  # the header reads, the tables' pages do not
        data = bytearray(path.read_bytes())
        data[4096:] = b"\xa5" * (len(data) - 4096)
        path.write_bytes(bytes(data))
    else:
        with sqlite3.connect(path) as con:
            con.execute("PRAGMA user_version = 1" if damage == "layout" else
                        "UPDATE covered SET key_probe = key_probe + 1")
        con.close()
    with caplog.at_level(logging.WARNING, logger="recsys.data.event_index"):
        report = ingest_frame(events(["a", "e2999", "z"]), "three", data_paths=paths)
    assert "rebuilding it from the landing parts" in caplog.text
    assert (report.accepted, report.duplicates_dropped) == (1, 2)


def test_a_failed_catch_up_is_tried_again_not_taken_as_done(paths, tmp_path, monkeypatch):
    """One file's catch-up fails (a DuckDB error while indexing the zone): the next file of
    the same ingestion catches up again before checking its ids."""
    ingest_frame(events(["a"]), "one", data_paths=paths)
    ingest_frame(events(["b"]), "two", data_paths=paths)
    index_file(paths).unlink()  # as after the upgrade: the whole zone to index
    real, failures = sql.query, []

    def flaky(con, name, **params):
        if name == "event_id_keys" and not failures:
            failures.append(name)
            raise duckdb.OutOfMemoryException("out of memory (simulated)")
        return real(con, name, **params)

    monkeypatch.setattr(sql, "query", flaky)
    files = []
    for name, ids in (("f1", ["a"]), ("f2", ["a", "b", "c"])):
        events(ids).to_csv(tmp_path / f"{name}.csv", index=False)
        files.append(tmp_path / f"{name}.csv")
    first, second = ingest_paths(files, data_paths=paths)
    assert first.error and "out of memory" in first.error
    assert (second.accepted, second.duplicates_dropped) == (1, 2), second.summary()
    assert sorted(landed(paths).event_id) == ["a", "b", "c"]


def test_the_part_is_named_by_its_file_not_its_rows(paths):
    """Keys point at the file a lookup will open, whatever sequence its rows carry."""
    ingest_frame(events(["a"]), "one", data_paths=paths)
    [part] = LandingZone(paths).event_parts()
    table = pq.read_table(part)
    table = table.set_column(table.schema.get_field_index("ingest_seq"), "ingest_seq",
                             pa.array([0] * table.num_rows, pa.int64()))
    pq.write_table(table, part)
    index_file(paths).unlink()
    report = ingest_frame(events(["a"]), "again", data_paths=paths)
    assert report.duplicates_dropped == 1


def test_a_forgotten_event_sent_again_lands_again(paths):
    """The index keeps the removed events' keys (no user id); the part read says they left."""
    ingest_frame(events(["a", "b"], user="gone"), "one", data_paths=paths)
    ingest_frame(events(["c"], user="stays"), "two", data_paths=paths)
    forget_user("gone", paths)
    report = ingest_frame(events(["a"], user="gone", day=2), "back", data_paths=paths)
    assert report.accepted == 1
    assert sorted(landed(paths).event_id) == ["a", "c"]


def test_a_section_with_only_item_chunks_does_not_open_the_index(paths):
    zone = LandingZone(paths)
    with zone.writer() as writer:
        ingestor = Ingestor(writer, IngestConfig())
        ingestor.close()
    assert not index_file(paths).exists()


def test_damage_found_in_use_rebuilds_and_answers(paths, monkeypatch, caplog):
    """SQLite may find a damaged page only when a lookup reaches it, after a clean open."""
    ingest_frame(events(["a", "b"]), "one", data_paths=paths)
    real, failures = EventIndex._seqs_of, []

    def damaged_once(self, keys):
        if not failures:
            failures.append(1)
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real(self, keys)

    monkeypatch.setattr(EventIndex, "_seqs_of", damaged_once)
    with caplog.at_level(logging.WARNING, logger="recsys.data.event_index"):
        report = ingest_frame(events(["a", "z"]), "two", data_paths=paths)
    assert "is damaged" in caplog.text and failures
    assert (report.accepted, report.duplicates_dropped) == (1, 1)
    monkeypatch.setattr(EventIndex, "_seqs_of", lambda self, keys: (_ for _ in ()).throw(
        sqlite3.OperationalError("database is locked")))
    with pytest.raises(StorageError, match="event id index .*database is locked"):
        ingest_frame(events(["a"]), "three", data_paths=paths)  # not damage: the file is kept
    assert index_file(paths).exists()
