"""The service serving an experiment: arms per user, interleaved lists, what the log records."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys.config import ExperimentConfig, ImpressionConfig, UpdateConfig
from recsys.data.experiments import STOPPED, ExperimentStore
from recsys.scoring import assignment
from recsys.scoring.service import create_app
from recsys.training.update import update


@pytest.fixture
def two_versions(world):
    """The full retrain (v1) and an update of it, the champion (v2): control v2, treatment v1."""
    world.land(2)
    assert update(world.paths, UpdateConfig(max_steps=10, batch_size=64)).promoted
    assert world.champion().version != world.full_version
    return world


@pytest.fixture
def serving(two_versions):
    def start(**settings):
        world = two_versions
        store = ExperimentStore(world.paths)
        exp = store.create(ExperimentConfig(**settings), world.champion().version,
                           world.full_version)
        app = create_app(world.paths, follow=False,
                         impressions=ImpressionConfig(flush_interval_s=60))
        return world, store, exp, app

    return start


def _users(world, n=40) -> list[str]:
    return [str(u) for u in world.chunks[0]["user_id"].unique()[:n]]


def _logged(app) -> pd.DataFrame:
    app.state.impressions.flush()
    parts = sorted(app.state.impressions.folder.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def test_ab_each_user_gets_their_arm_model_and_the_log_says_which(serving):
    world, store, exp, app = serving(mode="ab", traffic_share=0.7)
    champion, treatment = world.champion().version, world.full_version
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["experiment"] == {
            "id": exp.id, "mode": "ab", "treatment_version": treatment, "loaded": True,
            "error": None}
        assert client.get("/model").json()["experiment"]["id"] == exp.id
        answers = {}
        for user in _users(world):
            body = client.get(f"/recommendations/{user}", params={"k": 5}).json()
            again = client.get(f"/recommendations/{user}", params={"k": 5}).json()
            assert again.get("experiment") == body.get("experiment")  # stable per user
            answers[user] = body
        arms = {u: (a.get("experiment") or {}).get("arm") for u, a in answers.items()}
        assert arms == {u: assignment.arm(exp.salt, u, 0.7) for u in answers}
        assert {"control", "treatment", None} == set(arms.values())
        for user, body in answers.items():
            assert body["model_version"] == {"treatment": treatment}.get(arms[user], champion)
        session = client.post("/recommendations", json={"item_ids": ["x"], "k": 3}).json()
        assert session["model_version"] == champion and "experiment" not in session
        df = _logged(app)
    for user, body in answers.items():
        rows = df[df.request_id == body["request_id"]]
        assert len(rows) == 5 and set(rows.model_version) == {body["model_version"]}
        expected = exp.variant(arms[user]) if arms[user] else None
        assert [v if isinstance(v, str) else None for v in rows.variant] == [expected] * 5


def test_interleaving_mixes_both_models_and_logs_each_items_team(serving):
    world, store, exp, app = serving(mode="interleave")
    champion, treatment = world.champion().version, world.full_version
    version = {exp.variant("control"): champion, exp.variant("treatment"): treatment,
               exp.variant("both"): champion}  # an item both models proposed
    with TestClient(app) as client:
        answers = [client.get(f"/recommendations/{u}", params={"k": 10}).json()
                   for u in _users(world, 20)]
        df = _logged(app)
    for body in answers:
        items = [r["item_id"] for r in body["recommendations"]]
        assert len(items) == 10 == len(set(items))
        assert body["experiment"] == {"id": exp.id, "arm": "interleaved"}
        assert body["model_version"] == champion
        rows = df[df.request_id == body["request_id"]].sort_values("position")
        assert rows.item_id.tolist() == items
        assert set(rows.variant) <= set(version)
        assert rows.model_version.tolist() == [version[v] for v in rows.variant]
        teams = rows.variant.value_counts()
        picks = [teams.get(exp.variant(t), 0) for t in ("control", "treatment")]
        assert abs(picks[0] - picks[1]) <= 1  # drafted in turns
    assert set(df.model_version) == {champion, treatment}
    assert set(df.variant) >= {exp.variant("control"), exp.variant("treatment")}


def test_a_stopped_or_unloadable_experiment_leaves_the_champion_alone(serving):
    world, store, exp, app = serving(mode="ab")
    champion = world.champion().version
    user = _users(world, 1)[0]
    with TestClient(app) as client:
        assert client.get(f"/recommendations/{user}").json()["experiment"]["id"] == exp.id
        store.finish(exp, STOPPED)
        app.state.follower.refresh()
        body = client.get(f"/recommendations/{user}").json()
        assert "experiment" not in body and body["model_version"] == champion
        assert client.get("/health").json()["experiment"] is None
        assert app.state.follower.experiment is None  # the treatment model is dropped

        broken = store.create(ExperimentConfig(mode="ab"), champion, "999")
        app.state.follower.refresh()
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert health["experiment"]["id"] == broken.id and not health["experiment"]["loaded"]
        assert health["experiment"]["error"]
        body = client.get(f"/recommendations/{user}").json()
        assert "experiment" not in body and body["model_version"] == champion
        df = _logged(app)
    assert df.variant.isna().all() or set(df.variant.dropna()) == {
        exp.variant(assignment.arm(exp.salt, user))}
