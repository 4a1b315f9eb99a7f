"""Batch scoring with the champion: complete, filtered, atomic, from one model version."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from recsys.config import ScoreConfig, UpdateConfig
from recsys.data.features import read_store
from recsys.scoring.batch import read_recommendations, score_users
from recsys.training.update import update


def _active_users(world, window_days: float) -> int:
    with read_store(world.paths) as con:
        return con.execute(
            "SELECT count(*) FROM (SELECT user_idx FROM events GROUP BY user_idx HAVING max(ts) > "
            "(SELECT max(ts) FROM events) - to_microseconds(CAST($w * 86400e6 AS BIGINT)))",
            {"w": window_days}).fetchall()[0][0]


def test_lists_for_every_active_user_from_the_champion(world):
    report = score_users(world.paths, ScoreConfig(k=5, window_days=5, progress_bar=False,
                                                  chunk_size=32))
    table = read_recommendations(world.paths).to_pandas()
    assert report.users == _active_users(world, 5) > 32  # several chunks
    assert table["user_id"].nunique() == report.users and len(table) == report.rows
    assert all(r == [1, 2, 3, 4, 5] for r in table.groupby("user_id")["rank"].apply(list))
    assert set(table["model_version"]) == {world.champion().version}
    assert table.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()
    export = pq.read_table(world.paths.recommendations_export).to_pandas()
    assert len(export) == len(table)
    one = read_recommendations(world.paths, table["user_id"].iloc[0])
    assert one.num_rows == 5


def test_purchases_and_excluded_categories_never_appear(world):
    score_users(world.paths, ScoreConfig(k=10, exclude_categories=("coffee",),
                                         progress_bar=False))
    table = read_recommendations(world.paths).to_pandas()
    coffee = set(world.items.loc[world.items["category"] == "coffee", "item_id"])
    assert coffee and not coffee & set(table["item_id"])
    with read_store(world.paths) as con:
        bought = con.execute("SELECT u.user_id, i.item_id FROM events JOIN user_map AS u "
                             "USING (user_idx) JOIN item_map AS i USING (item_idx) "
                             "WHERE event_type IN ('purchase', 'rating')").df()
    assert len(bought)
    assert not set(map(tuple, bought.values)) & set(map(tuple, table[["user_id", "item_id"]]
                                                       .values))


def test_a_new_champion_replaces_every_list(world):
    score_users(world.paths, ScoreConfig(progress_bar=False))
    world.land(2)
    assert update(world.paths, UpdateConfig(max_steps=10, batch_size=64)).promoted
    score_users(world.paths, ScoreConfig(progress_bar=False))
    table = read_recommendations(world.paths).to_pandas()
    assert set(table["model_version"]) == {world.champion().version}


def test_no_champion_is_a_clear_error(paths):
    with pytest.raises(LookupError, match="no champion"):
        score_users(paths, ScoreConfig(progress_bar=False))
