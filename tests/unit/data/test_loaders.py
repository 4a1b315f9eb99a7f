"""Each public-format loader on a small fixture written in that exact format."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.data.ingest import ingest_frame
from recsys.data.loaders import load

FIX = Path(__file__).resolve().parents[2] / "fixtures"


def test_movielens_dat_with_movies_and_a_broken_line(paths):
    loaded = load(FIX / "movielens_dat", "movielens")
    assert loaded.events.user_id.tolist()[:3] == ["1", "1", "2"]
    assert loaded.events.item_id.tolist()[:3] == ["10", "20", "10"]
    r = ingest_frame(loaded.events, "ml", data_paths=paths)
    assert (r.accepted, dict(r.quarantined)) == (3, {"missing_field": 1})
    assert loaded.items.set_index("item_id").loc["20"].category == "Action"


def test_movielens_csv_with_movies(paths):
    loaded = load(FIX / "movielens_csv" / "ratings.csv", "movielens")
    ev = loaded.events
    assert ev.user_id.tolist() == ["1", "1"] and ev.item_id.tolist() == ["10", "20"]
    assert ev.event_type.unique().tolist() == ["rating"]
    assert ev.ts.iloc[0] == pd.Timestamp(964982703, unit="s")
    assert ev.value.tolist() == [4.0, 4.5]
    assert loaded.items.set_index("item_id").loc["10"].title == "American President, The (1995)"
    assert loaded.items.set_index("item_id").loc["10"].category == "Comedy"
    assert ingest_frame(ev, "ml", data_paths=paths).accepted == 2


def test_movielens_dat_good_lines(tmp_path, paths):
    folder = tmp_path / "ml"
    folder.mkdir()
    lines = (FIX / "movielens_dat" / "ratings.dat").read_text().splitlines()
    (folder / "ratings.dat").write_text("\n".join(lines[:3]) + "\n")
    (folder / "movies.dat").write_bytes((FIX / "movielens_dat" / "movies.dat").read_bytes())
    loaded = load(folder, "movielens")
    assert len(loaded.events) == 3
    assert loaded.items.set_index("item_id").loc["20"].title == "Heat (1995)"
    descr = loaded.items.set_index("item_id").loc["10"].description
    assert descr == "Animation, Children's, Comedy"


def test_ml100k(paths):
    ev = load(FIX / "u.data", "ml100k").events
    assert ev.iloc[0].to_dict() | {} == {"user_id": "196", "item_id": "242",
                                          "event_type": "rating",
                                          "ts": pd.Timestamp(881250949, unit="s"), "value": 3.0}


def test_retailrocket_maps_events_and_unknown_ones_are_quarantined(paths):
    ev = load(FIX / "retailrocket_events.csv", "retailrocket").events
    assert ev.event_type.tolist() == ["view", "cart", "purchase", "teleport"]
    assert ev.ts.iloc[0] == pd.Timestamp(1433221332117, unit="ms")
    r = ingest_frame(ev, "rr", data_paths=paths)
    assert (r.accepted, dict(r.quarantined)) == (3, {"unknown_event_type": 1})


def test_sasrec_txt_keeps_file_order_as_time_order():
    ev = load(FIX / "sasrec.txt", "sasrec").events
    assert ev.item_id.tolist() == ["1", "2", "3", "2", "4"]
    assert ev.ts.is_monotonic_increasing and ev.ts.is_unique
