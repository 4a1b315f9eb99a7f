"""The experiment-decision flow under Prefect's test harness: idle, then a decision acted on."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from flows.experiments import experiment_decision
from recsys import experiment_run
from recsys.config import ExperimentConfig, GateConfig, TrackingConfig
from recsys.data.experiments import ExperimentStore
from recsys.registry.registry import Registry
from tests.flows.test_online_report import _artifact
from tests.unit.test_experiment_run import _interleaved_traffic, home  # noqa: F401 (fixture)


def test_the_flow_promotes_a_winner_and_says_so_in_its_artifact(home, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RECSYS_HOME", str(home.root))
    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(home.tracking_home))
    assert experiment_decision()["status"] == "idle"
    exp = experiment_run.start(home, ExperimentConfig(mode="interleave", min_users=20,
                                                      min_minutes=0))
    # started ten minutes ago; the traffic came in its first minutes
    start = dt.datetime.fromisoformat(exp.started_at) - dt.timedelta(minutes=10)
    exp = replace(exp, started_at=start.isoformat())
    ExperimentStore(home).save(exp)
    _interleaved_traffic(home, exp, users=200, treatment_wins=160, start=start)
    out = experiment_decision(attribution={"window_minutes": 30})
    assert out == {"status": "promoted", "experiment": exp.id, "decision": "promote"}
    assert Registry(home, TrackingConfig()).champion().version == "2"
    artifact = _artifact("experiment")
    assert f"# Experiment {exp.id}: promoted" in artifact and "| clicks |" in artifact


def test_the_flow_starts_the_experiment_of_a_waiting_challenger(home, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RECSYS_HOME", str(home.root))
    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(home.tracking_home))
    Registry(home, TrackingConfig()).tag("2", {"decision": "challenger"})
    assert experiment_decision()["status"] == "idle"  # off unless asked (no traffic known)
    online = GateConfig(full_retrain_online=True)
    out = experiment_decision(gate=online)
    assert out["status"] == "started"
    exp = ExperimentStore(home).get(out["experiment"])
    assert (exp.treatment_version, exp.control_version) == ("2", "1")
    assert experiment_decision(gate=online)["status"] == "running"
