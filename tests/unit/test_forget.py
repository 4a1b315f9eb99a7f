import json

import pandas as pd
import pyarrow.parquet as pq

from recsys.config import ScoreConfig, TrackingConfig
from recsys.data.features import read_store
from recsys.data.forget_log import TAG, log_path, user_hash
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone
from recsys.forget import forget_user
from recsys.scoring.batch import read_recommendations, score_users
from recsys.scoring.service import ChampionFollower
from recsys.training.update import update
from tests.conftest import MODEL, TRAIN


def landed_events(paths) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in LandingZone(paths).event_parts()])


def user_index(paths, user_id: str) -> int:
    with read_store(paths) as con:
        return con.execute("SELECT user_idx FROM user_map WHERE user_id = $u",
                           {"u": user_id}).fetchone()[0]


def store_rows(paths, user_id: str, user_idx: int) -> dict:
    """The user's rows in the store; events know them by index only, which outlives the map."""
    with read_store(paths) as con:
        return {
            "events": con.execute("SELECT count(*) FROM events WHERE user_idx = $i",
                                  {"i": user_idx}).fetchone()[0],
            "user_map": con.execute("SELECT count(*) FROM user_map WHERE user_id = $u",
                                    {"u": user_id}).fetchone()[0],
        }


def test_forget_user_removes_their_data_everywhere_and_flags_models(world):
    paths = world.paths
    world.land(1)
    before = landed_events(paths)
    # A user with events both in the champion's training data and in the newest part.
    user = before[before["ingest_seq"] == before["ingest_seq"].max()]["user_id"].iloc[0]
    other = before[before["user_id"] != user]["user_id"].iloc[0]
    # ... and a quarantined row of theirs, and a served list.
    bad = pd.DataFrame({"user_id": [user], "item_id": ["i1"], "event_type": ["teleport"],
                        "ts": ["2024-01-01T00:00:00Z"]})
    ingest_frame(bad, "bad", data_paths=paths)
    score_users(paths, ScoreConfig(progress_bar=False, window_days=1e4))
    assert len(read_recommendations(paths, user)) > 0
    follower = ChampionFollower(paths)
    assert follower.histories.get(user) is not None
    champion = world.champion().version
    user_idx, other_idx = user_index(paths, user), user_index(paths, other)
    assert store_rows(paths, user, user_idx)["events"] > 0

    report = forget_user(user, paths, TrackingConfig())

    after = landed_events(paths)
    assert report.events_removed == (before["user_id"] == user).sum() > 0
    assert (after["user_id"] != user).all()
    assert len(after) == len(before) - report.events_removed  # nobody else lost anything
    assert report.quarantine_rows_removed == 1
    for part in LandingZone(paths).quarantine_parts():
        assert not [r for r in pq.read_table(part).column("raw").to_pylist() if user in r]
    assert store_rows(paths, user, user_idx) == {"events": 0, "user_map": 0}
    assert store_rows(paths, other, other_idx)["events"] > 0
    assert len(read_recommendations(paths, user)) == 0
    assert len(read_recommendations(paths, other)) > 0
    assert champion in report.affected_versions and report.champion_affected
    assert report.request_id in world.registry.get(champion).tags[TAG]
    text = log_path(paths).read_text()
    assert user_hash(user) in text and f'"{user}"' not in text  # the id itself is not kept
    assert json.loads(text.splitlines()[-1])["status"] == "done"

    follower.refresh()  # the real-time service drops them
    assert follower.histories.get(user) is None and follower.histories.get(other) is not None

    # Running it again (e.g. after a crash) finds nothing left and fails nothing.
    again = forget_user(user, paths, TrackingConfig())
    assert again.events_removed == 0 and again.affected_versions == []

    # A fine-tune of a flagged champion is flagged too: it keeps what its parent learnt.
    world.land(1)
    result = update(paths)
    assert result.version is not None
    assert report.request_id in world.registry.get(result.version).tags[TAG]


def test_the_next_full_retrain_is_clean(world):
    from recsys.data.features import build_features
    from recsys.training.full_retrain import train

    user = landed_events(world.paths)["user_id"].iloc[0]
    report = forget_user(user, world.paths, TrackingConfig())
    assert world.full_version in report.affected_versions
    build_features(world.paths)
    result = train(world.paths, MODEL, TRAIN)
    assert TAG not in world.registry.get(result.version).tags
