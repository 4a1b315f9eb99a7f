"""Every .sql file runs in the data pipeline on fixture data, and none is dead code."""

from __future__ import annotations

import pandas as pd

from recsys import sql
from recsys.config import UpdateConfig
from recsys.data.features import build_features, get_watermark, open_store, read_store
from recsys.data.ingest import ingest_frame
from recsys.data.microbatch import extract, plan_batch, refresh
from recsys.data.sequences import load_training_data
from recsys.data.status import status_report
from recsys.data.synthetic import generate, preset
from recsys.models.baselines import ItemCF


def test_every_sql_file_is_run_by_the_pipeline(paths, monkeypatch):
    used: set[str] = set()
    real_load = sql.load

    def spy(name):
        used.add(name)
        return real_load(name)

    monkeypatch.setattr(sql, "load", spy)
    data = generate(preset("tiny"))
    ingest_frame(data.items, "items", kind="items", data_paths=paths)
    bad = pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "event_type": ["nope"], "ts": ["1"]})
    ingest_frame(pd.concat([data.events, bad]), "events", data_paths=paths)
    ingest_frame(data.events.head(5), "again", data_paths=paths)
    build_features(paths)
    status_report(paths)
    with open_store(paths) as con:  # a micro-batch of two newer parts
        low = get_watermark(con)
        for day in (1, 2):
            later = data.events.tail(30).copy()
            later["ts"] = pd.to_datetime(later["ts"]) + pd.Timedelta(days=day)
            ingest_frame(later, f"later{day}", data_paths=paths)
        refresh(con, paths)
        plan = plan_batch(con, low, UpdateConfig())
        batch = extract(con, plan, UpdateConfig(), max_len=10)
        assert plan.trainable and len(batch.new) and len(batch.replay) and len(batch.holdout)
    con = read_store(paths)
    try:
        for protocol in ("leave_last_out", "temporal"):
            data = load_training_data(con, protocol, max_len=10, popularity_window_days=7)
            assert len(data.train_items) and len(data.test) and data.text.shape[1] == 256
    finally:
        con.close()
    ItemCF.fit(data.train_histories(), data.n_items, data.catalogue.counts)
    assert set(sql.names()) - used == set()


def test_sql_named_parameters_are_bound_not_interpolated(paths):
    con = sql.connect()
    try:
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        evil = "x'); DROP TABLE meta; --"
        sql.run(con, "meta_set", key=evil, value=evil)
        assert sql.run(con, "meta_get", key=evil).fetchone() == (evil,)
    finally:
        con.close()
