"""Every .sql file runs in the data pipeline on fixture data, and none is dead code."""

from __future__ import annotations

import pandas as pd

from recsys import sql
from recsys.config import ExperimentConfig, IngestConfig, UpdateConfig
from recsys.data.experiments import Experiment
from recsys.data.features import build_features, get_watermark, open_store, read_store
from recsys.data.ingest import ingest_frame
from recsys.data.intake import _prevalidate, request_rows
from recsys.data.microbatch import extract, plan_batch, refresh
from recsys.data.sequences import load_training_data
from recsys.data.status import status_report
from recsys.data.synthetic import generate, preset
from recsys.evaluation.experiment_analysis import look
from recsys.evaluation.online import online_report
from recsys.forget import forget_user
from recsys.models.baselines import ItemCF
from recsys.scoring.history import RecentHistories
from recsys.timeutil import utc_now
from tests.unit.data.test_features import downgrade_events_to_v1


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
    # A zone without an event id index (landed before it existed): the next ingest indexes
    # the parts, then reads the one the repeats name.
    (paths.root / "landing" / "event_ids.sqlite").unlink()
    ingest_frame(data.events.head(5), "again", data_paths=paths)
    build_features(paths)
    with open_store(paths) as con:
        downgrade_events_to_v1(con, paths)
    build_features(paths)  # migrates the store first
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
    with read_store(paths) as con:
        for protocol in ("leave_last_out", "temporal"):
            data = load_training_data(con, protocol, max_len=10, popularity_window_days=7)
            assert len(data.train_items) and len(data.test) and data.text.shape[1] == 256
        active = sql.query(con, "active_user_sequences", window_days=3, max_len=10).df()
        assert len(active) and active["item_seq"].map(len).max() <= 10
        assert len(sql.query(con, "item_filters").df()) == data.n_items
    _served_lists_round_trip(paths.root / "recommendations.duckdb")
    histories = RecentHistories(paths, max_len=10)  # the service reads landing parts itself
    assert histories.users and histories.popular
    ItemCF.fit(data.train_histories(), data.n_items, data.catalogue.counts)
    report = forget_user("u", paths)  # the bad row above was theirs
    assert report.quarantine_rows_removed == 1
    _online_statements(paths)
    with sql.connect() as con:  # the HTTP intake's answer (check_events.sql)
        verdicts = _prevalidate(con, request_rows([{"user_id": "u", "item_id": "i",
                                                    "event_type": "nope", "ts": "1"}]),
                                IngestConfig())
        assert verdicts[0][:2] == ("rejected", "unknown_event_type")
    assert set(sql.names()) - used == set()


def _online_statements(paths):
    """The online report and an experiment's look of each design (nothing served: empty)."""
    online_report(paths)
    for mode in ("ab", "interleave"):
        exp = Experiment(id=f"exp-{mode}", config=ExperimentConfig(mode=mode).model_dump(),
                         control_version="1", treatment_version="2",
                         started_at=utc_now().isoformat())
        assert look(paths, exp).impressions == 0


def _served_lists_round_trip(db):
    """The batch scorer's statements: stage, append, swap, export, read."""
    with sql.connect(db) as out:
        for version in ("1", "2"):  # the second run replaces the first entirely
            sql.run(out, "recommendations_staging")
            chunk = pd.DataFrame({"user_id": ["u1", "u1"], "rank": [1, 2],
                                  "item_id": ["a", "b"], "score": [2.0, 1.0],
                                  "model_version": [version] * 2,
                                  "scored_at": pd.Timestamp("2026-01-01")})
            out.register("chunk", chunk)
            sql.run(out, "recommendations_append")
            out.unregister("chunk")
            sql.run(out, "recommendations_swap")
        sql.run(out, "recommendations_export", path=str(db.with_suffix(".parquet")))
        rows = sql.query(out, "recommendations_read", user_id="u1").fetchall()
        assert [r[4] for r in rows] == ["2", "2"]
        assert len(sql.query(out, "recommendations_read", user_id=None).fetchall()) == 2
        assert pd.read_parquet(db.with_suffix(".parquet"))["item_id"].tolist() == ["a", "b"]


def test_sql_named_parameters_are_bound_not_interpolated(paths):
    with sql.connect() as con:
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        evil = "x'); DROP TABLE meta; --"
        sql.run(con, "meta_set", key=evil, value=evil)
        assert sql.run(con, "meta_get", key=evil).fetchone() == (evil,)
