"""The MLflow or the Prefect server dies in the middle of a micro-batch; then it comes back.

The run must fail cleanly (or retry), leave the registry and the watermark consistent, and the
next run after the server returns must succeed. Real servers on free local ports; the
micro-batch is held at a named point (``RECSYS_STALL_AT``) while the server is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys.orchestration import caused_by_io
from recsys.stack import _bin, free_port, healthy
from recsys.training import update as update_module
from recsys.training.update import update
from tests.faults.invariants import check_champion_serves

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
FAST = update_module.UpdateConfig(max_steps=10, batch_size=64)


class Server:
    """A server process we can kill (SIGKILL, the whole group) and start again."""

    def __init__(self, command: list[str], health: str, env: dict, log: Path):
        self.command, self.health, self.env, self.log = command, health, env, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=PROJECT)
        deadline = time.monotonic() + timeout
        while not healthy(self.health):
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"not healthy: {self.log.read_text()[-3000:]}"
            time.sleep(0.5)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def mlflow_server(world, tmp_path) -> Server:
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return Server([_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--backend-store-uri",
                   f"sqlite:///{world.paths.mlflow_db}", "--default-artifact-root",
                   world.paths.mlruns.resolve().as_uri(), "--no-serve-artifacts"],
                  f"http://127.0.0.1:{port}/health", env, tmp_path / "mlflow.log")


@pytest.mark.parametrize("point", ["update.after_extract", "update.after_register"])
def test_mlflow_server_dies_mid_update_then_returns(world, tmp_path, monkeypatch, point):
    server = mlflow_server(world, tmp_path)
    server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.health.removesuffix("/health"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    try:
        world.land(2)
        before = world.champion()
        real = update_module.crash_point

        def server_dies(name: str) -> None:
            if name == point:
                server.kill()
            real(name)

        monkeypatch.setattr(update_module, "crash_point", server_dies)
        with pytest.raises(Exception) as failure:
            update(world.paths, FAST)
        assert server.proc.poll() is not None  # it really died mid-run
        assert caused_by_io(failure.value)  # so the flow's task retries it (retry_on_io)
        print(f"\n{point}: the update failed with {type(failure.value).__name__}: "
              f"{str(failure.value)[:200]}")
        monkeypatch.setattr(update_module, "crash_point", real)

        server.start()  # it comes back
        assert world.champion().version == before.version  # nothing moved
        check_champion_serves(world)
        recovered = update(world.paths, FAST)
        assert recovered.status == "promoted", recovered.reason
        assert recovered.plan.low == before.watermark  # the interrupted batch, repeated
        world.assert_lineage_consistent()
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill()


def test_prefect_server_dies_mid_flow_then_the_next_run_succeeds(world, tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "RECSYS_HOME": str(world.paths.root),
           "RECSYS_TRACKING_HOME": str(world.paths.tracking_home),
           # The client gives up on a dead server after a few quick retries, not minutes.
           "PREFECT_CLIENT_MAX_RETRIES": "2", "PREFECT_CLIENT_RETRY_EXTRA_CODES": "",
           "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = Server([_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                     str(port)], f"http://127.0.0.1:{port}/api/health", env,
                    tmp_path / "prefect.log")
    flow_cmd = [sys.executable, "-c", "from flows.micro_batch import micro_batch_update; "
                "print(micro_batch_update(update={'max_steps': 10}, "
                "score_after_promotion=False))"]
    stall = tmp_path / "stall"
    try:
        server.start()
        world.land(2)
        before = world.champion()
        run = subprocess.Popen(flow_cmd, cwd=PROJECT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**env, "RECSYS_STALL_AT": "update.after_extract",
                                    "RECSYS_STALL_FILE": str(stall)})
        deadline = time.monotonic() + 300
        while not stall.exists():
            assert run.poll() is None, run.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the flow never reached the stall point"
            time.sleep(0.2)
        server.kill()
        stall.unlink()  # the update goes on without its orchestrator
        output, _ = run.communicate(timeout=600)
        print(f"\nflow with its server gone: exit {run.returncode}\n{output[-1500:]}")
        # Consistent whatever happened: the update itself either finished or changed nothing.
        champion = world.champion()
        assert champion.version == before.version or champion.kind == "incremental"
        check_champion_serves(world)
        world.assert_lineage_consistent()

        server.start()
        world.land(2)
        done = subprocess.run(flow_cmd, cwd=PROJECT, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "'status': 'promoted'" in done.stdout, done.stdout[-2000:]
        world.assert_lineage_consistent()
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill()
