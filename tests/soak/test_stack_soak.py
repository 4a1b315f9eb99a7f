"""Soak: the local stack left up for 15 minutes keeps moving (opt-in: ``pytest -m soak -n0 -s``).

A fresh stack on the tiny world (its live traffic: the simulated users, posting their
reactions to the service) runs its schedules untouched. Afterwards, in each third of the time:
traffic posted events, at least one micro-batch update was promoted, and no update found nothing
to do for want of events. ``RECSYS_STACK_SOAK_SECONDS`` shortens it (default 900).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from recsys.config import Paths, StackConfig, TrackingConfig
from recsys.registry.registry import Registry
from recsys.stack import Stack, StackState, alive, free_port
from recsys.traffic import read_progress

pytestmark = [pytest.mark.soak, pytest.mark.e2e]

PROJECT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("RECSYS_STACK_SOAK_SECONDS", 900))


def test_a_stack_left_up_keeps_promoting_updates(tmp_path, monkeypatch):
    paths = Paths(root=tmp_path / "data", tracking_home=tmp_path / "tracking")
    stack = Stack(PROJECT, tmp_path / "state", paths, StackConfig(
        prefect_port=free_port(), mlflow_port=free_port(), preset="tiny", epochs=10),
        say=print)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow_url)
    thirds: list[dict] = []
    try:
        stack.up()
        start = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for i in range(3):
            time.sleep(SECONDS / 3)
            progress = read_progress(stack.traffic_progress) or {}
            # The simulator counts events the service acknowledged (fsynced: they land within
            # a second); a replay source counts the events it landed itself.
            posted = progress.get("events_posted", progress.get("events_landed", 0))
            thirds.append({"events": posted,
                           "lap": progress.get("lap"),
                           "alive": [s.name for s in stack.running()]})
            readings = stack.readings(StackState.load(stack.state_file))
            print(f"third {i + 1}: {thirds[-1]}; {readings}")
        champion = Registry(paths, TrackingConfig()).champion()
    finally:
        started = StackState.load(stack.state_file)
        stack.down()
    assert started is not None and not any(alive(s) for s in started.services)

    updates = [json.loads(line) for line in (paths.root / "updates.jsonl").read_text().splitlines()]
    edges = [start + dt.timedelta(seconds=SECONDS * k / 3) for k in range(4)]
    for k in range(3):
        window = [u for u in updates
                  if edges[k] <= dt.datetime.fromisoformat(u["at"]) < edges[k + 1]]
        statuses = [u["status"] for u in window]
        print(f"third {k + 1}: {len(window)} updates: {statuses}")
        assert "promoted" in statuses, f"no promotion in third {k + 1}: {statuses}"
        assert "no_events" not in statuses, f"traffic ran dry in third {k + 1}"
    events = [t["events"] for t in thirds]
    assert events[0] > 0 and events[0] < events[1] < events[2], events
    assert all("traffic" in t["alive"] for t in thirds)
    assert champion is not None and champion.kind == "incremental"
