"""The simulator's HTTP side against a small real server: lists in, events out, restarts ridden.

The real service is exercised by the stack's end-to-end test; here a tiny FastAPI app with the
same two routes runs under uvicorn on a free port, so what is tested is the HTTP itself.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request

from recsys.config import SimulateConfig
from recsys.data.synthetic import generate, preset
from recsys.simulate import ServiceClient, Simulator, Stopper, service_url
from recsys.simulate.population import GaveUp
from recsys.stack import free_port


def tiny_service(with_events: bool = True) -> FastAPI:
    app = FastAPI()
    app.state.served, app.state.events = [], []

    @app.get("/recommendations/{user_id:path}")
    def recommend(user_id: str, k: int = 10) -> dict:
        request_id = f"q{len(app.state.served)}"
        app.state.served.append((request_id, user_id))
        items = [f"i{n:06d}" for n in range(k)]
        return {"user_id": user_id, "request_id": request_id,
                "recommendations": [{"item_id": i, "score": 1.0} for i in items]}

    if with_events:
        @app.post("/events")
        async def events(request: Request) -> dict:
            body = await request.json()
            app.state.events += body
            return {"accepted": len(body), "rejected": []}

    return app


class Served:
    """A uvicorn server in a thread of this process."""

    def __init__(self, app: FastAPI, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def world():
    return generate(preset("tiny")).world


def test_lists_come_in_and_reactions_go_out_with_their_request_ids(world):
    port = free_port()
    app = tiny_service()
    cfg = SimulateConfig(url=f"http://127.0.0.1:{port}", seed=2, batch_events=5)
    stopper = Stopper(0)
    with Served(app, port):
        client = ServiceClient(cfg.url, cfg, stopper)
        counts = Simulator(world, cfg, client.recommend, client.post_events,
                           stopper).run_requests(80)
        client.close()
    assert counts.requests == len(app.state.served) == 80
    assert counts.events_posted == len(app.state.events) > 0
    served = dict(app.state.served)
    for event in app.state.events:
        if event["event_type"] != "view":
            assert served[event["request_id"]] == event["user_id"]


def test_a_service_away_or_restarting_is_waited_for_and_said_once(world, caplog):
    port = free_port()
    cfg = SimulateConfig(url=f"http://127.0.0.1:{port}", max_backoff_s=0.2)
    stopper = Stopper(0)
    stopper.start()
    client = ServiceClient(cfg.url, cfg, stopper)
    app = tiny_service()
    later = Served(app, port)
    threading.Timer(1.0, later.__enter__).start()  # nothing listens for the first second
    try:
        with caplog.at_level(logging.WARNING, logger="recsys.simulate.client"):
            request_id, items = client.recommend("u000001", 3)
        assert request_id == "q0" and items == ["i000000", "i000001", "i000002"]
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 2, said  # once when it went away, once when it came back
        assert "does not answer" in said[0] and "answers again" in said[1]
        assert client.post_events([{"user_id": "u1", "item_id": "i1", "event_type": "click",
                                    "ts": "2026-12-01T00:00:00"}]) == 1
    finally:
        client.close()
        later.__exit__()


def test_a_refused_batch_counts_as_rejected_and_a_stopped_run_gives_up(world, caplog):
    port = free_port()
    cfg = SimulateConfig(url=f"http://127.0.0.1:{port}", max_backoff_s=0.1)
    stopper = Stopper(0)
    stopper.start()
    client = ServiceClient(cfg.url, cfg, stopper)
    with Served(tiny_service(with_events=False), port), \
            caplog.at_level(logging.WARNING, logger="recsys.simulate.client"):
        assert client.post_events([{"user_id": "u1"}]) == 0  # 404: no intake here
        assert client.post_events([{"user_id": "u2"}]) == 0
    assert len([r for r in caplog.records if "answered 404" in r.getMessage()]) == 1
    stopper.stop()
    with pytest.raises(GaveUp):
        client.recommend("u000001", 3)  # nothing listens and the run is over
    client.close()
    assert service_url(SimulateConfig()) == "http://127.0.0.1:8000"  # ServeConfig's default


def test_recsys_simulate_runs_for_its_duration_and_sums_up(world, tmp_path):
    from typer.testing import CliRunner

    from recsys.cli import app as cli

    runner = CliRunner()
    missing = runner.invoke(cli, ["simulate", "--home", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "recsys generate" in missing.output
    path = world.save(tmp_path / "world.npz")
    port = free_port()
    service = tiny_service()
    with Served(service, port):
        result = runner.invoke(cli, [
            "simulate", "--world", str(path), "--url", f"http://127.0.0.1:{port}",
            "--duration", "1.5", "--rate", "40", "--report-every-s", "0.5", "--seed", "4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"simulating the users of {path} against http://127.0.0.1:{port}: "
                        "40 requests/s, for 1.5 s")
    assert lines[-2].startswith("done: ") and lines[-1].startswith("CTR by position 1..10 (%): ")
    assert 1 <= len(lines) - 3 <= 3  # a progress line every 0.5 s, none repeating the summary
    requests = int(lines[-2].removeprefix("done: ").split(" requests in ")[0].replace(",", ""))
    assert requests == len(service.state.served) > 10
    assert len(service.state.events) > 0
