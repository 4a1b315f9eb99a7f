"""Feature store: id maps stable across appends; sequences and splits on hand-checked data."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from recsys import sql
from recsys.config import FeatureConfig
from recsys.data.features import build_features, open_store, read_store, refresh_events
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone


def ev(user, item, day, etype="view"):
    return {"user_id": user, "item_id": item, "event_type": etype,
            "ts": (dt.datetime(2024, 1, 1) + dt.timedelta(days=day)).isoformat()}


def table(paths, name, order="user_idx, split"):
    with read_store(paths) as con:
        return con.sql(f"SELECT * FROM {name} ORDER BY {order}").df()


def test_sequences_and_leave_last_out_split(paths):
    # u1's events arrive out of order and across two files; order is by ts.
    ingest_frame(pd.DataFrame([ev("u1", "a", 3), ev("u1", "b", 1), ev("u2", "a", 2)]), "f1",
                 data_paths=paths)
    ingest_frame(pd.DataFrame([ev("u1", "c", 2), ev("u1", "d", 4), ev("u1", "b", 0.5)]), "f2",
                 data_paths=paths)
    build_features(paths, FeatureConfig(min_user_events=3))
    items = table(paths, "item_map", "item_idx").set_index("item_id").item_idx
    a, b, c, d = (items[k] for k in "abcd")
    users = table(paths, "user_map", "user_idx")
    seqs = table(paths, "user_sequences", "user_idx").merge(users, on="user_idx").set_index(
        "user_id")
    assert seqs.loc["u1"].item_seq.tolist() == [b, b, c, a, d]
    assert seqs.loc["u2"].item_seq.tolist() == [a]
    assert seqs.loc["u1"].type_seq.tolist() == [1] * 5
    u1 = seqs.loc["u1"].user_idx
    split = table(paths, "split_leave_last_out")
    mine = split[split.user_idx == u1].set_index("split")
    assert mine.loc["train"].history.tolist() == [b, b, c]
    assert mine.loc["valid"].history.tolist() == [b, b, c] and mine.loc["valid"].target == a
    assert mine.loc["test"].history.tolist() == [b, b, c, a] and mine.loc["test"].target == d
    u2 = split[split.user_idx == seqs.loc["u2"].user_idx]
    assert u2.split.tolist() == ["train"], "short users only train"


def test_sequence_truncated_to_last_n(paths):
    ingest_frame(pd.DataFrame([ev("u", f"i{k}", k) for k in range(10)]), "f", data_paths=paths)
    build_features(paths, FeatureConfig(max_seq_len=4))
    seqs = table(paths, "user_sequences", "user_idx")
    names = table(paths, "item_map", "item_idx").set_index("item_idx").item_id
    assert [names[i] for i in seqs.item_seq.iloc[0]] == ["i6", "i7", "i8", "i9"]


def test_temporal_split_uses_only_the_past(paths):
    rows = [ev("u1", "a", 0), ev("u1", "b", 1), ev("u1", "c", 8), ev("u1", "d", 9.5),
            ev("u2", "a", 2), ev("u2", "e", 9.6), ev("u3", "x", 0.5)]
    ingest_frame(pd.DataFrame(rows), "f", data_paths=paths)
    # quantiles of 7 timestamps: valid cut 0.5 -> day 2, test cut ~0.8 -> day 9.5
    build_features(paths, FeatureConfig(temporal_valid_quantile=0.5, temporal_test_quantile=0.8))
    items = table(paths, "item_map", "item_idx").set_index("item_id").item_idx
    users = table(paths, "user_map", "user_idx").set_index("user_id").user_idx
    s = table(paths, "split_temporal")
    u1 = s[s.user_idx == users["u1"]].set_index("split")
    assert u1.loc["train"].history.tolist() == [items["a"], items["b"]]
    assert u1.loc["valid"].target == items["c"]
    assert u1.loc["test"].target == items["d"]
    assert u1.loc["test"].history.tolist() == [items["a"], items["b"], items["c"]]
    u2 = s[s.user_idx == users["u2"]].set_index("split")
    assert u2.loc["test"].history.tolist() == [items["a"]]
    assert "valid" not in u2.index, "u2's day-2 event is the cut itself; no target before test"


def test_id_maps_only_grow_and_never_change_meaning(paths):
    ingest_frame(pd.DataFrame([ev("u1", "a", 1), ev("u2", "b", 2)]), "f1", data_paths=paths)
    build_features(paths)
    before_items = table(paths, "item_map", "item_idx")[["item_id", "item_idx"]]
    before_users = table(paths, "user_map", "user_idx")[["user_id", "user_idx"]]
    # a late event (older ts) for a new item and new user, and a catalogue-only item
    ingest_frame(pd.DataFrame([ev("u0", "z", 0), ev("u1", "c", 3)]), "f2", data_paths=paths)
    ingest_frame(pd.DataFrame({"item_id": ["cold"], "title": ["new thing"]}), "cat",
                 kind="items", data_paths=paths)
    build_features(paths)
    after_items = table(paths, "item_map", "item_idx")
    after_users = table(paths, "user_map", "user_idx")
    assert after_items.head(len(before_items))[["item_id", "item_idx"]].equals(before_items)
    assert after_users.head(len(before_users))[["user_id", "user_idx"]].equals(before_users)
    assert after_items.item_idx.tolist() == list(range(1, len(after_items) + 1))
    assert set(after_items.item_id) == {"a", "b", "c", "z", "cold"}
    cat = table(paths, "items", "item_idx").set_index("item_id")
    assert cat.loc["cold"].title == "new thing"


def test_refresh_reads_only_new_parts_and_is_idempotent(paths):
    ingest_frame(pd.DataFrame([ev("u1", "a", 1)]), "f1", data_paths=paths)
    r1, _ = build_features(paths)
    r2, _ = build_features(paths)
    assert (r1.new_events, r2.new_events) == (1, 0)
    # Each step is timed, so a slow refresh says where its time went.
    assert list(r1.timings) == ["item map", "user map", "events", "items", "commit"]
    assert all(s >= 0 for s in r1.timings.values())
    assert r1.summary().endswith(f"in {sum(r1.timings.values()):.2f}s")
    ingest_frame(pd.DataFrame([ev("u1", "b", 2)]), "f2", data_paths=paths)
    r3, s = build_features(paths)
    assert (r3.previous_watermark, r3.watermark, r3.new_events) == (1, 2, 1)
    assert s.events == 2


def test_refresh_is_transactional(paths, monkeypatch):
    ingest_frame(pd.DataFrame([ev("u1", "a", 1)]), "f1", data_paths=paths)
    real = sql.run

    def crash_on_append(con, name, **kw):
        if name == "events_append":
            raise RuntimeError("killed")
        return real(con, name, **kw)

    monkeypatch.setattr(sql, "run", crash_on_append)
    with open_store(paths) as con:
        try:
            refresh_events(con, paths)
        except RuntimeError:
            pass
    monkeypatch.setattr(sql, "run", real)
    with open_store(paths) as con:
        assert con.execute("SELECT count(*) FROM item_map").fetchone()[0] == 0
        report = refresh_events(con, paths)
    assert report.new_events == 1


def test_microbatch_extract_returns_new_events_with_full_recent_sequences(paths):
    ingest_frame(pd.DataFrame([ev("u1", "a", 1), ev("u1", "b", 2), ev("u2", "a", 1)]), "f1",
                 data_paths=paths)
    build_features(paths)
    w = LandingZone(paths).event_watermark()
    ingest_frame(pd.DataFrame([ev("u1", "new-item", 3)]), "f2", data_paths=paths)
    build_features(paths)
    with read_store(paths) as con:
        mb = sql.query(con, "microbatch_extract", low=w, high=10**9, max_len=50).df()
        items = con.sql("SELECT item_id, item_idx FROM item_map").df().set_index("item_id")
    assert len(mb) == 1, "only users touched by the batch"
    row = mb.iloc[0]
    idx = items.item_idx
    assert row.item_seq.tolist() == [idx["a"], idx["b"], idx["new-item"]]
    assert row.is_new.tolist() == [False, False, True]
    assert row.n_new == 1


def events_table(paths) -> pd.DataFrame:
    with read_store(paths) as con:
        return con.sql("SELECT * FROM events ORDER BY ALL").df()


def downgrade_events_to_v1(con, paths) -> None:
    """Rewrite the events table in the first layout (text ids), as stores before 2026-11 had."""
    con.read_parquet([str(p) for p in LandingZone(paths).event_parts()]).create_view("landed_v1")
    con.execute("""
        CREATE OR REPLACE TABLE events AS
        SELECT l.event_id, l.user_id, l.item_id, u.user_idx, i.item_idx, l.event_type, l.ts,
            l.value, l.ingest_seq
        FROM landed_v1 AS l JOIN user_map AS u USING (user_id) JOIN item_map AS i USING (item_id)
        WHERE l.ingest_seq <= (SELECT max(ingest_seq) FROM events)""")


def test_store_of_the_first_layout_is_migrated_in_place(paths):
    events = [ev("a", "x", 1), ev("a", "y", 2, "purchase"), ev("b", "x", 3), ev("a", "z", 3)]
    ingest_frame(pd.DataFrame(events), "t", data_paths=paths)
    build_features(paths, FeatureConfig(text_encoder="none"))
    before = events_table(paths)
    seqs = table(paths, "user_sequences", "user_idx")
    with open_store(paths) as con:
        downgrade_events_to_v1(con, paths)
        assert "event_id" in con.sql("SELECT * FROM events").columns
    build_features(paths, FeatureConfig(text_encoder="none"))  # migrates, then rebuilds
    pd.testing.assert_frame_equal(events_table(paths), before)
    pd.testing.assert_frame_equal(table(paths, "user_sequences", "user_idx"), seqs)
    ingest_frame(pd.DataFrame([ev("b", "y", 4)]), "later", data_paths=paths)
    build_features(paths, FeatureConfig(text_encoder="none"))
    assert list(table(paths, "user_sequences", "user_idx")["n_events"]) == [3, 2]


def test_sequences_order_ties_and_extreme_timestamps(paths):
    """Same-second events order by landing sequence, then item; a 1991 event sorts first."""
    first = [ev("a", "m", 0), ev("a", "k", 0), ev("a", "old", -12000)]
    ingest_frame(pd.DataFrame(first), "one", data_paths=paths)
    ingest_frame(pd.DataFrame([ev("a", "b", 0, "cart")]), "two", data_paths=paths)
    build_features(paths, FeatureConfig(text_encoder="none"))
    items = table(paths, "item_map", "item_idx").set_index("item_idx")["item_id"]
    row = table(paths, "user_sequences", "user_idx").iloc[0]
    # m and k share a timestamp and a landing part, so the item index breaks the tie (items
    # first seen at the same time are numbered by id: k before m); b landed later, same second.
    assert [items[i] for i in row["item_seq"]] == ["old", "k", "m", "b"]
    assert list(row["type_seq"]) == [1, 1, 1, 3]


def test_refresh_refuses_a_store_written_past_its_watermark(paths):
    ingest_frame(pd.DataFrame([ev("a", "x", 1), ev("a", "y", 2)]), "t", data_paths=paths)
    build_features(paths, FeatureConfig(text_encoder="none"))
    with open_store(paths) as con:
        con.execute("UPDATE events SET ingest_seq = ingest_seq + 5")
        with pytest.raises(RuntimeError, match="2 events beyond its watermark 1"):
            refresh_events(con, paths)
