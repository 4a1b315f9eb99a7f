"""The whole stack, for real: Prefect server + worker and MLflow server on free local ports.

Deploys prefect.yaml, bootstraps a champion, starts the live traffic, lets the every-minute
schedule fire, then checks what a user would see in the two UIs and in DuckDB. A second test
follows the README's order, `recsys demo` and then `recsys stack up`, through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from recsys import experiment_run
from recsys.config import ExperimentConfig, Paths, TrackingConfig
from recsys.data.experiments import FINAL, ExperimentStore
from recsys.evaluation.online import online_report
from recsys.registry.registry import Registry
from recsys.registry.tracking import local_uri
from recsys.scoring.batch import read_recommendations
from recsys.stack import Stack, StackConfig, StackState, _bin, alive, free_port

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]


def _post(url: str, body: dict) -> list[dict]:
    """POST to the Prefect API; a 503 (its database busy on 2 loaded cores) is tried again."""
    for attempt in range(5):
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 4:
                raise
            time.sleep(3)
    raise AssertionError("unreachable")


def _runs(stack: Stack, flow: str) -> list[dict]:
    return _post(f"{stack.prefect_url}/api/flow_runs/filter",
                 {"flows": {"name": {"any_": [flow]}}, "sort": "EXPECTED_START_TIME_ASC"})


def _wait(what: str, check, timeout: float, poll: float = 5.0):
    """Poll until `check` is truthy; print how long it took (pytest -s), where the minutes go."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            print(f"[stack e2e] {time.monotonic() - start:5.1f}s waiting for {what}")
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_stack_runs_scheduled_micro_batches_promotes_and_scores(tmp_path, monkeypatch):
    paths = Paths(root=tmp_path / "data", tracking_home=tmp_path / "tracking")
    stack = Stack(PROJECT, tmp_path / "state", paths, StackConfig(
        prefect_port=free_port(), mlflow_port=free_port(), serve_port=free_port(),
        preset="tiny", epochs=10, speedup=1920.0, tick_seconds=10.0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow_url)
    try:
        start = time.monotonic()
        stack.up()
        print(f"[stack e2e] {time.monotonic() - start:5.1f}s for stack.up()")
        with pytest.raises(RuntimeError, match="already running"):
            stack.up()  # no twins
        registry = Registry(paths, TrackingConfig())
        first = registry.champion()
        assert first is not None and first.kind == "full"
        state = StackState.load(stack.state_file)
        assert state.traffic["source"] == "simulate"
        assert [s.name for s in state.services if alive(s)][-2:] == ["service", "traffic"]
        # An experiment from the start: the first full model (treatment, by version number)
        # beside the champion as micro-batches move it; it ends by itself, inconclusive or not.
        exp = experiment_run.start(paths, ExperimentConfig(
            treatment=first.version, min_minutes=0.5, max_minutes=1.5, min_users=5))

        def completed_micro_batches():
            runs = [r for r in _runs(stack, "micro-batch-update")
                    if r["state_type"] == "COMPLETED" and r["deployment_id"]]
            return runs if len(runs) >= 2 else None

        _wait("two scheduled micro-batch runs to complete", completed_micro_batches, 420)
        champion = _wait("the champion to move", lambda: (
            c if (c := registry.champion()).version != first.version else None), 240)
        assert champion.kind == "incremental" and int(champion.version) > int(first.version)

        runs = sorted((r for r in _runs(stack, "micro-batch-update") if r["start_time"]),
                      key=lambda r: r["start_time"])
        for a, b in zip(runs, runs[1:], strict=False):  # never two at once
            assert a["end_time"] and a["end_time"] <= b["start_time"], (a["name"], b["name"])

        def scored_by_champion():
            if not paths.recommendations_db.exists():
                return None
            try:
                versions = set(read_recommendations(paths).to_pandas()["model_version"])
            except Exception:  # the scorer holds the file: try again
                return None
            current = registry.champion().version
            return versions if versions == {current} else None

        _wait("batch scores from the current champion", scored_by_champion, 240)
        artifacts = _post(f"{stack.prefect_url}/api/artifacts/filter",
                          {"artifacts": {"key": {"any_": ["micro-batch-update"]}}})
        assert artifacts and any("NDCG@10" in (a["data"] or "") for a in artifacts)

        # The closed loop: the simulated users' clicks are credited to what they were shown.
        report = online_report(paths)
        every = report.overall
        assert every is not None and every.impressions > 0 and every.ctr_at_k > 0
        clicks = report.matched.set_index("event_type").loc["click"]
        assert clicks["exact"] > 0  # credited by the request_id the simulator sent back
        deployment = _post(f"{stack.prefect_url}/api/deployments/filter",
                           {"deployments": {"name": {"any_": ["online-report"]}}})[0]
        _post(f"{stack.prefect_url}/api/deployments/{deployment['id']}/create_flow_run", {})
        # A scheduled run at start-up may have reported an empty period first: wait for one
        # that saw the simulated traffic.
        _wait("an online-report artifact with figures", lambda: [
            a for a in _post(f"{stack.prefect_url}/api/artifacts/filter",
                             {"artifacts": {"key": {"any_": ["online-report"]}}})
            if "CTR@10" in (a["data"] or "")], 240)

        # The experiment was decided by the every-minute deployment, recorded on both versions.
        ended = _wait("the experiment to end", lambda: (
            e if (e := ExperimentStore(paths).get(exp.id)).status in FINAL else None), 300)
        decided = _post(f"{stack.prefect_url}/api/artifacts/filter",
                        {"artifacts": {"key": {"any_": ["experiment"]}}})
        assert any(f"# Experiment {exp.id}: {ended.status}" in (a["data"] or "")
                   for a in decided)
        assert registry.get(first.version).tags["experiment.status"] == ended.status
    finally:
        started = StackState.load(stack.state_file)
        stack.down()
    assert started is not None and not any(alive(s) for s in started.services)


@pytest.mark.slow  # about 6-8 minutes on 2 shared cores: a demo, then a stack and its updates
def test_readme_order_demo_then_stack_up_moves_the_champion(tmp_path):
    """`recsys demo`, then `recsys stack up`: traffic starts and the champion moves in 5 min."""
    paths = Paths(root=tmp_path / "data", tracking_home=tmp_path / "tracking")
    env = {**os.environ, "RECSYS_HOME": str(paths.root),
           "RECSYS_TRACKING_HOME": str(paths.tracking_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    recsys, state = _bin("recsys"), str(tmp_path / ".stack")

    def cli(*args: str, timeout: float = 900) -> str:
        out = subprocess.run([recsys, *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, f"recsys {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    cli("demo", "--preset", "tiny", "--epochs", "3")
    after_demo = Registry(paths, TrackingConfig(tracking_uri=local_uri(paths))).champion()
    assert after_demo is not None
    mlflow_port = free_port()
    try:
        up = cli("stack", "up", "--state", state, "--prefect-port", str(free_port()),
                 "--mlflow-port", str(mlflow_port), "--serve-port", str(free_port()))
        print(up)  # with -s: what a user sees
        assert f"found: champion: version {after_demo.version} " in up
        assert "will: no bootstrap: data and champion are in place" in up
        assert "started live traffic: simulate: users of " in up and "world.npz" in up
        registry = Registry(paths, TrackingConfig(tracking_uri=f"http://127.0.0.1:{mlflow_port}"))
        moved = _wait("the champion to move", lambda: (
            c if (c := registry.champion()).version != after_demo.version else None), 300)
        assert moved.kind == "incremental" and int(moved.version) > int(after_demo.version)
        status = cli("stack", "status", "--state", state)
        print(status)
        assert "traffic source: simulate:" in status and "traffic progress: " in status
        assert " requests, " in status
        assert "traffic: running (pid " in status
        assert f"champion: version {moved.version} (incremental)" in status
        assert "last update: " in status and "last update: none yet" not in status
    finally:
        cli("stack", "down", "--state", state)
    reset = cli("stack", "reset", "--yes", "--state", state)
    assert "the folder is fresh" in reset
    assert not paths.root.exists() and not paths.mlflow_db.exists()
