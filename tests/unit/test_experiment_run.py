"""Experiments end to end below the flow: start, look, decide, act, stop; a kill in between.

A real MLflow registry (SQLite) with two versions; impressions and events written as the
service and ingestion write them; every figure checked by hand.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from recsys import columns as C
from recsys import experiment_run
from recsys.config import ExperimentConfig, Paths, TrackingConfig
from recsys.data.experiments import DECIDING, PROMOTED, RUNNING, STOPPED, ExperimentStore
from recsys.evaluation.experiment_analysis import look
from recsys.registry import runs, tracking
from recsys.registry.registry import Registry
from recsys.timeutil import utc_now
from tests.unit.evaluation.test_online import event, shown, write_events, write_impressions


@pytest.fixture
def home(tmp_path, monkeypatch) -> Paths:
    """Version 1 is champion, version 2 challenger."""
    paths = Paths(root=tmp_path / "home", tracking_home=tmp_path / "tracking")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrackingConfig()
    client = MlflowClient(tracking.local_uri(paths))
    client.create_registered_model(cfg.registered_model)
    for _ in range(2):
        with runs.start_run(paths, cfg, "train") as run:
            pass
        client.create_model_version(cfg.registered_model, f"runs:/{run.id}/model", run.id)
    client.set_registered_model_alias(cfg.registered_model, "champion", "1")
    client.set_registered_model_alias(cfg.registered_model, "challenger", "2")
    return paths


def _interleaved_traffic(paths: Paths, exp, users: int, treatment_wins: int, start):
    """Each user gets one interleaved list of 4 items (teams alternate, treatment first) and
    clicks one item: a treatment item for the first ``treatment_wins`` users."""
    imps, evs = [], []
    for u in range(users):
        at = start + dt.timedelta(seconds=10 + u)
        rows = shown(f"r{u}", f"u{u}", [f"a{u}", f"b{u}", f"c{u}", f"d{u}"], at)
        for row, team in zip(rows, ("treatment", "control") * 2, strict=True):
            row[C.VARIANT] = exp.variant(team)
        imps += rows
        item = f"a{u}" if u < treatment_wins else f"b{u}"
        evs.append(event(f"e{u}", f"u{u}", item, "click", at + dt.timedelta(seconds=5), f"r{u}"))
    write_impressions(paths, imps)
    write_events(paths, evs)


def test_look_counts_wins_and_losses_by_hand(home):
    exp = experiment_run.start(home, ExperimentConfig(mode="interleave", min_users=5,
                                                      min_minutes=0))
    start = dt.datetime.fromisoformat(exp.started_at)
    _interleaved_traffic(home, exp, users=10, treatment_wins=7, start=start)
    seen = look(home, exp, now=start + dt.timedelta(minutes=2))
    primary = seen.verdict.evidence["primary"]
    assert seen.impressions == 40 and seen.verdict.evidence["users"] == 10
    assert primary["difference"] == pytest.approx((7 - 3) / 10, abs=1e-6)  # margin
    assert primary["treatment"] == pytest.approx(0.5 + 0.4 / 2, abs=1e-6)  # preference share
    # The table shows both models' shares, which add up to 1, and their margin.
    table = experiment_run.markdown(exp, seen)
    assert "| metric | control | treatment | margin | always-valid p |" in table
    assert "| clicks | 0.3000 | 0.7000 | +0.4000 |" in table


def test_ab_look_by_hand(home):
    exp = experiment_run.start(home, ExperimentConfig(mode="ab"))
    start = dt.datetime.fromisoformat(exp.started_at)
    imps, evs = [], []
    for u, (arm, clicks) in enumerate([("control", 0), ("control", 1), ("treatment", 2),
                                       ("treatment", 1)]):
        rows = shown(f"r{u}", f"u{u}", ["x", "y", "z"], start + dt.timedelta(seconds=5))
        for row in rows:
            row[C.VARIANT] = exp.variant(arm)
        imps += rows
        evs += [event(f"e{u}-{n}", f"u{u}", item, "click", start + dt.timedelta(seconds=9),
                      f"r{u}") for n, item in enumerate(["x", "y"][:clicks])]
    write_impressions(home, imps)
    write_events(home, evs)
    primary = look(home, exp, now=start + dt.timedelta(minutes=1)).verdict.evidence["primary"]
    assert primary["control"] == pytest.approx(1 / 6, abs=1e-6)
    assert primary["treatment"] == pytest.approx(3 / 6, abs=1e-6)


def test_a_winner_is_promoted_with_the_evidence_on_both_versions(home):
    cfg = ExperimentConfig(mode="interleave", min_users=20, min_minutes=0)
    exp = experiment_run.start(home, cfg)
    with pytest.raises(experiment_run.ExperimentError, match="still running"):
        experiment_run.start(home, cfg)
    start = dt.datetime.fromisoformat(exp.started_at)
    _interleaved_traffic(home, exp, users=200, treatment_wins=160, start=start)
    done = experiment_run.decide(home, now=start + dt.timedelta(minutes=5))
    assert done.acted and done.experiment.status == PROMOTED
    registry = Registry(home, TrackingConfig())
    assert registry.champion().version == "2"
    for version, role in (("2", "treatment"), ("1", "control")):
        tags = registry.get(version).tags
        assert tags["experiment"] == exp.id and tags["experiment.role"] == role
        assert tags["experiment.status"] == PROMOTED and "p_value" in tags["experiment.evidence"]
    assert experiment_run.decide(home) is None  # nothing active any more


def test_a_loser_is_stopped_and_the_champion_stays(home):
    exp = experiment_run.start(home, ExperimentConfig(mode="interleave", min_users=20,
                                                      min_minutes=0))
    start = dt.datetime.fromisoformat(exp.started_at)
    _interleaved_traffic(home, exp, users=200, treatment_wins=40, start=start)
    done = experiment_run.decide(home, now=start + dt.timedelta(minutes=5))
    assert done.experiment.status == STOPPED and "guardrail" in done.experiment.reason
    assert Registry(home, TrackingConfig()).champion().version == "1"


def test_too_early_records_nothing_and_the_operator_can_stop(home):
    exp = experiment_run.start(home, ExperimentConfig(min_minutes=10))
    out = experiment_run.decide(home, now=utc_now())
    assert not out.acted and ExperimentStore(home).get(exp.id).status == RUNNING
    stopped = experiment_run.stop(home, reason="changed my mind")
    assert stopped.status == STOPPED and stopped.reason == "changed my mind"
    with pytest.raises(experiment_run.ExperimentError, match="already stopped"):
        experiment_run.stop(home, exp.id)


def test_killed_between_recording_and_promoting_finishes_on_the_next_run(home):
    """SIGKILL right after the decision is recorded (before the alias moves); rerun."""
    exp = experiment_run.start(home, ExperimentConfig(mode="interleave", min_users=20,
                                                      min_minutes=0))
    start = dt.datetime.fromisoformat(exp.started_at)
    _interleaved_traffic(home, exp, users=200, treatment_wins=160, start=start)
    script = ("import sys, datetime as dt; from recsys import experiment_run; "
              "from recsys.config import Paths; experiment_run.decide(Paths(root=sys.argv[1], "
              "tracking_home=sys.argv[2]), now=dt.datetime.fromisoformat(sys.argv[3]))")
    env = {**os.environ, "RECSYS_KILL_AT": "experiment.after_decision"}
    later = (start + dt.timedelta(minutes=5)).isoformat()
    killed = subprocess.run([sys.executable, "-c", script, str(home.root),
                             str(home.tracking_home), later], env=env, timeout=120)
    assert killed.returncode == -9
    assert ExperimentStore(home).get(exp.id).status == DECIDING
    assert Registry(home, TrackingConfig()).champion().version == "1"  # not half-done...
    done = experiment_run.decide(home)  # ...and the next run finishes it
    assert done.experiment.status == PROMOTED and done.look is None
    registry = Registry(home, TrackingConfig())
    assert registry.champion().version == "2"
    assert registry.alias("previous-champion").version == "1"


def test_the_default_treatment_is_the_version_waiting_as_challenger(home):
    """A full retrain that waits as challenger is what `recsys experiment start` means by
    default, until an experiment has judged it; the alias is the fallback."""
    registry = Registry(home, TrackingConfig())
    registry.tag("2", {"decision": "challenger"})
    registry.set_challenger("1")  # on a version promoted since: the champion
    exp = experiment_run.start(home, ExperimentConfig(mode="ab"))
    assert (exp.treatment_version, exp.control_version) == ("2", "1")
    experiment_run.stop(home, exp.id)
    # Version 2 has met its experiment: the default falls back to the alias, which names the
    # champion itself, and that is refused with the reason.
    with pytest.raises(experiment_run.ExperimentError, match="names version 1, the control"):
        experiment_run.start(home, ExperimentConfig(mode="ab"))
    # By number it is the operator's choice: a frozen version against the moving champion.
    assert experiment_run.start(home, ExperimentConfig(treatment="1")).treatment_version == "1"


def test_a_version_waiting_as_challenger_gets_its_experiment_when_none_runs(home):
    registry = Registry(home, TrackingConfig())
    assert experiment_run.start_waiting(home) is None  # nothing waits
    registry.tag("2", {"decision": "challenger"})
    running = experiment_run.start(home, ExperimentConfig(treatment="1"))
    assert experiment_run.start_waiting(home) is None  # one at a time
    experiment_run.stop(home, running.id)
    exp = experiment_run.start_waiting(home)
    assert exp is not None and (exp.treatment_version, exp.control_version) == ("2", "1")
    experiment_run.stop(home, exp.id)
    assert experiment_run.start_waiting(home) is None  # judged once
