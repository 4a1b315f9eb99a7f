"""The local stack without its servers: the survey and plan of `up`, `status` readings, `reset`,
and its live traffic source (simulated users, or a replay)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys import traffic
from recsys.cli import app
from recsys.config import Paths, SimulateConfig, StackConfig
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone
from recsys.registry.registry import Version
from recsys.stack import Service, Stack, StackState, _start_time, free_port
from recsys.stack_survey import Plan, last_update, survey
from recsys.traffic import TrafficSpec

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A project folder as a previous stack leaves it."""
    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(tmp_path / "tracking"))
    (tmp_path / "data" / "landing").mkdir(parents=True)
    (tmp_path / "data" / "features.duckdb").write_text("x")
    tracking = tmp_path / "tracking"
    (tracking / "mlruns" / "1" / "abc").mkdir(parents=True)
    (tracking / "mlruns" / ".gitkeep").write_text("")
    (tracking / "mlflow.db").write_text("x")
    (tmp_path / ".stack" / "logs").mkdir(parents=True)
    StackState(prefect_url="u", mlflow_url="v").save(tmp_path / ".stack" / "stack.json")
    return tmp_path


def _reset(folder: Path, *args: str, answer: str = ""):
    return runner.invoke(app, ["stack", "reset", "--home", str(folder / "data"), "--state",
                               str(folder / ".stack"), *args], input=answer)


def test_stack_reset_yes_returns_the_folder_to_fresh(folder):
    result = _reset(folder, "--yes")
    assert result.exit_code == 0, result.output
    assert "removed 4 path(s)" in result.output
    for gone in ("data", "tracking/mlflow.db", "tracking/mlruns/1", ".stack"):
        assert not (folder / gone).exists(), gone
        assert str(folder / gone) in result.output  # says what it removes
    assert (folder / "tracking" / "mlruns" / ".gitkeep").exists()
    again = _reset(folder, "--yes")
    assert again.exit_code == 0 and "already fresh" in again.output


def test_stack_reset_asks_and_a_no_removes_nothing(folder):
    result = _reset(folder, answer="n\n")
    assert result.exit_code == 1 and "remove them?" in result.output
    assert (folder / "data").exists() and (folder / "tracking" / "mlflow.db").exists()


def test_stack_reset_refuses_while_the_stack_is_up(folder):
    me = Service("prefect-server", os.getpid(), _start_time(os.getpid()), ["x"], "log")
    StackState([me], "u", "v").save(folder / ".stack" / "stack.json")
    result = _reset(folder, "--yes")
    assert result.exit_code == 1 and "recsys stack down" in result.output
    assert (folder / "data").exists() and (folder / ".stack").exists()


def test_stack_reset_never_removes_the_project_folder(tmp_path):
    stack = Stack(PROJECT, tmp_path / ".stack", Paths(root=PROJECT, tracking_home=tmp_path))
    with pytest.raises(ValueError, match="holds the project"):
        stack.reset()


def test_the_survey_plans_only_what_is_missing(paths):
    fresh = survey(paths, champion=None)
    assert fresh.plan().generate and fresh.plan().land_history and fresh.plan().retrain
    events = pd.DataFrame({"user_id": ["a", "b"], "item_id": "i", "event_type": "view",
                           "ts": pd.to_datetime(["2026-01-01", "2026-01-02"])})
    paths.raw.mkdir(parents=True)
    events.to_parquet(paths.raw / "events.parquet")
    ingest_frame(events, "history", data_paths=paths)
    no_champion = survey(paths, champion=None)
    assert no_champion.newest_landed == pd.Timestamp("2026-01-02")
    assert not no_champion.plan().generate and not no_champion.plan().land_history
    assert no_champion.plan().retrain  # landed data, no champion: train one
    paths.features_db.write_text("x")
    champion = Version("3", {"kind": "incremental"}, None, None, ("champion",))
    after_demo = survey(paths, champion)
    plan = after_demo.plan()
    assert not (plan.generate or plan.land_history or plan.retrain)
    lines = plan.lines("replay-loop")
    assert lines[0].startswith("no bootstrap") and lines[-1] == "start live traffic (replay-loop)"
    assert "version 3 (incremental)" in "\n".join(after_demo.lines())


def test_status_readings_name_the_traffic_the_last_update_and_the_champion(paths, tmp_path):
    paths.root.mkdir(parents=True)
    with open(paths.root / "updates.jsonl", "w") as fh:
        for status, version in (("waiting", None), ("promoted", "7")):
            fh.write(json.dumps({"status": status, "reason": f"r-{status}", "version": version,
                                 "at": "2026-12-02T10:00:00"}) + "\n")
    assert last_update(paths) == "2026-12-02T10:00:00: promoted, candidate version 7: r-promoted"
    stack = Stack(PROJECT, tmp_path / ".stack", paths)
    spec = {"source": "replay-loop", "events": "w.parquet", "start": "2026-03-01T00:00:00",
            "speedup": 2880.0, "tick_seconds": 10.0}
    stack.traffic_progress.parent.mkdir(parents=True)
    stack.traffic_progress.write_text(json.dumps({
        "source": "replay-loop", "lap": 2, "tick": 40, "events_landed": 1234,
        "newest_ts": "2026-05-01T00:00:00", "at": "2026-12-02T10:00:05"}))
    got = stack.readings(StackState(traffic=spec))
    assert got["traffic source"].startswith("replay-loop: w.parquet, 2880 event s per wall s")
    assert got["traffic progress"].startswith("lap 2, tick 40, 1,234 events landed")
    assert got["last update"].endswith("r-promoted") and got["champion"] == "none"


# -- the simulated users as the stack's live traffic ------------------------------------------
@pytest.fixture
def generated(paths):
    """A folder where `recsys generate --preset tiny` wrote the world (events, items, truth)."""
    result = runner.invoke(app, ["generate", "--preset", "tiny", "--home", str(paths.root)])
    assert result.exit_code == 0, result.output
    assert "world.npz" in result.output
    return paths


def test_the_stack_simulates_users_when_the_world_has_its_ground_truth(generated, tmp_path):
    said = []
    stack = Stack(PROJECT, tmp_path / ".stack", generated, StackConfig(serve_port=8123),
                  say=said.append)
    found = survey(generated, champion=None)
    assert found.world_truth == generated.raw / "world.npz"
    assert "world ground truth: " + str(found.world_truth) in found.lines()
    assert stack.traffic_source(found) == "simulate"
    spec = stack.traffic_spec("simulate")
    assert (spec.source, spec.events) == ("simulate", str(found.world_truth))
    assert spec.simulate["url"] == "http://127.0.0.1:8123" and spec.simulate["duration_s"] == 0
    assert spec.describe().startswith(f"simulate: users of {found.world_truth} asking "
                                      "http://127.0.0.1:8123 for 10 items, 5 requests/s")
    assert TrafficSpec(**json.loads(json.dumps(spec.as_dict()))) == spec  # as in stack.json
    lines = found.plan().lines(stack.cfg_traffic_line("simulate"), hold_back=False)
    assert "land its items and all its events" in lines
    assert lines[-1].startswith("start live traffic (the world's users ask the real-time "
                                "service at http://127.0.0.1:8123")
    # A fresh folder: the world will be generated, with its truth, so users are simulated.
    fresh = survey(Paths(root=tmp_path / "empty", tracking_home=tmp_path), champion=None)
    assert stack.traffic_source(fresh) == "simulate"
    assert not said
    # Asked for a replay, or no truth to simulate from (a loaded dataset): the events loop.
    replay = Stack(PROJECT, tmp_path / ".stack", generated,
                   StackConfig(traffic="replay-loop"), say=said.append)
    assert replay.traffic_source(found) == "replay-loop" and not said
    (generated.raw / "world.npz").unlink()
    assert stack.traffic_source(survey(generated, champion=None)) == "replay-loop"
    assert "no world ground truth" in said[0]
    assert stack.traffic_spec("simulate").source == "replay-loop"


@pytest.mark.parametrize("source, held_back", [("simulate", 0.0), ("replay-loop", 0.2)])
def test_simulated_traffic_lands_all_the_history_a_replay_holds_its_tail_back(
        generated, tmp_path, source, held_back):
    """Simulated events are new, dated now: nothing of the world needs holding back, and the
    first champion knows each user up to the last item the simulator starts from."""
    stack = Stack(PROJECT, tmp_path / ".stack", generated, StackConfig(live_fraction=0.2),
                  say=lambda line: None)
    found = survey(generated, champion=Version("1", {"kind": "full"}, None, None,
                                               ("champion",)))
    found = dataclasses.replace(found, features=True)  # no retrain: only the landing
    assert found.plan() == Plan(generate=False, land_history=True, retrain=False)
    stack.bootstrap(found, source)
    world_events = pd.read_parquet(generated.raw / "events.parquet")
    landed = sum(pq.read_metadata(p).num_rows for p in LandingZone(generated).event_parts())
    assert landed == len(world_events) - int(len(world_events) * held_back)


def test_the_traffic_process_simulates_and_status_shows_requests_clicks_and_ctr(
        generated, tmp_path):
    stack = Stack(PROJECT, tmp_path / ".stack", generated)
    port = free_port()  # nothing listens: the simulator waits, gives up at its end, reports
    spec = TrafficSpec("simulate", str(generated.raw / "world.npz"), None, 1.0, 1.0,
                       SimulateConfig(url=f"http://127.0.0.1:{port}", duration_s=0.3,
                                      timeout_s=0.2).model_dump(mode="json"))
    traffic.run(spec, generated, stack.traffic_progress)
    progress = traffic.read_progress(stack.traffic_progress)
    assert progress["source"] == "simulate" and progress["requests"] == 0
    stack.traffic_progress.write_text(json.dumps(progress | {
        "requests": 1200, "impressions": 12000, "clicks": 960, "ctr": 0.08, "carts": 300,
        "purchases": 120, "events_posted": 1800, "elapsed_s": 240.0}))
    got = stack.readings(StackState(traffic=spec.as_dict()))
    assert got["traffic source"].startswith("simulate: users of ")
    assert got["traffic progress"].startswith(
        "1,200 requests, 12,000 impressions, 960 clicks (CTR 8.00%), 300 carts, 120 purchases, "
        "1,800 events accepted in 240 s, last report at ")


def test_a_busy_prefect_server_503_is_tried_again_and_a_lasting_one_is_raised(monkeypatch):
    import http.server
    import threading
    import urllib.error

    from recsys import stack as stack_module

    monkeypatch.setattr(stack_module.time, "sleep", lambda s: None)
    answers = iter([503, 503, 200] + [503] * 10)
    seen: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            code = next(answers)
            self.send_response(code)
            self.end_headers()
            if code == 200:
                self.wfile.write(b'{"id": "run-1"}')

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/x"
    try:
        assert stack_module._request(url, {"a": 1}) == {"id": "run-1"}
        assert seen == [b'{"a": 1}'] * 3  # the same request, three times
        with pytest.raises(urllib.error.HTTPError, match="503"):
            stack_module._request(url, {"a": 1}, attempts=3)
        assert len(seen) == 6
    finally:
        server.shutdown()
