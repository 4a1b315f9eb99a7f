"""The whole stack, for real: Prefect server + worker and MLflow server on free local ports.

Deploys prefect.yaml, bootstraps a champion, replays events, lets the every-minute schedule
fire, then checks what a user would see in the two UIs and in DuckDB.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from recsys.config import Paths, TrackingConfig
from recsys.registry.registry import Registry
from recsys.scoring.batch import read_recommendations
from recsys.stack import Stack, StackConfig, StackState, alive, free_port

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]


def _post(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _runs(stack: Stack, flow: str) -> list[dict]:
    return _post(f"{stack.prefect_url}/api/flow_runs/filter",
                 {"flows": {"name": {"any_": [flow]}}, "sort": "EXPECTED_START_TIME_ASC"})


def _wait(what: str, check, timeout: float, poll: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_stack_runs_scheduled_micro_batches_promotes_and_scores(tmp_path, monkeypatch):
    paths = Paths(root=tmp_path / "data", tracking_home=tmp_path / "tracking")
    stack = Stack(PROJECT, tmp_path / "state", paths, StackConfig(
        prefect_port=free_port(), mlflow_port=free_port(), preset="tiny", epochs=10,
        speedup=1920.0, tick_seconds=10.0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow_url)
    try:
        stack.up()
        with pytest.raises(RuntimeError, match="already running"):
            stack.up()  # no twins
        registry = Registry(paths, TrackingConfig())
        first = registry.champion()
        assert first is not None and first.kind == "full"

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
    finally:
        started = StackState.load(stack.state_file)
        stack.down()
    assert started is not None and not any(alive(s) for s in started.services)
