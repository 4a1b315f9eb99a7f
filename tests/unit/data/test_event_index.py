"""The event id index: a filter that names the parts to read, never a wrong answer."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from recsys import sql
from recsys.config import IngestConfig
from recsys.data.event_index import EventIndex
from recsys.data.ingest import Ingestor, ingest_frame
from recsys.data.landing import LandingZone, part_seq
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
        index = EventIndex(zone)
        assert index.catch_up(con) == 0 and index.covered_through == seqs[-1]
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
        index = EventIndex(zone)
        index.catch_up(con)
        index.add(part_seq(zone.event_parts()[0]), keys_of(["b"]))  # as if "b" shared a key
        index.close()
    report = ingest_frame(events(["b"]), "two", data_paths=paths)
    assert (report.accepted, report.duplicates_dropped, report.n_quarantined) == (1, 0, 0)


def test_an_unreadable_index_is_rebuilt_from_the_parts(paths, caplog):
    ingest_frame(events(["a", "b"]), "one", data_paths=paths)
    index_file(paths).write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="recsys.data.event_index"):
        report = ingest_frame(events(["a", "z"]), "two", data_paths=paths)
    assert "is unreadable" in caplog.text
    assert (report.accepted, report.duplicates_dropped) == (1, 1)


def test_the_index_is_used_only_after_catching_up(paths):
    zone = LandingZone(paths)
    with zone.writer():
        index = EventIndex(zone)
        with pytest.raises(RuntimeError, match="catch_up must run first"):
            index.add(1, keys_of(["a"]))
        index.close()


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
