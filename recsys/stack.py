"""The local stack: Prefect server + worker, MLflow server, deployments, data and a replay.

``recsys stack up`` starts each service as its own process group on 127.0.0.1, waits until it
is healthy, and records what it started (pid, process start time, command, log file) in
``<state>/stack.json``. ``down`` stops exactly those processes (a pid that now belongs to
another process is left alone); ``up`` while they run says so instead of starting twins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recsys.config import Paths, StackConfig

log = logging.getLogger(__name__)

WORK_POOL = "recsys-local"


@dataclass
class Service:
    name: str
    pid: int
    started: str  # /proc start time: a pid reused by another process does not match
    command: list[str]
    log: str
    url: str | None = None


@dataclass
class StackState:
    services: list[Service] = field(default_factory=list)
    prefect_url: str = ""
    mlflow_url: str = ""

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls([Service(**s) for s in raw["services"]], raw["prefect_url"],
                   raw["mlflow_url"])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, waiting to be reaped by its parent
        return None
    return fields[19]  # field 22 of stat: start time


def alive(service: Service) -> bool:
    return _start_time(service.pid) == service.started


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for tests and benches that start servers)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _bin(name: str) -> str:
    """A console script of this environment (prefect, mlflow, recsys)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


class Stack:
    """One local stack: its code folder, its state folder and the data folders it serves."""

    def __init__(self, project: Path, state_dir: Path, paths: Paths,
                 cfg: StackConfig | None = None):
        self.project, self.state_dir, self.paths = project, state_dir, paths
        self.cfg = cfg or StackConfig()
        self.state_file = state_dir / "stack.json"
        self.logs = state_dir / "logs"

    @property
    def prefect_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.prefect_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.mlflow_port}"

    def env(self) -> dict[str, str]:
        """What every process of the stack (and every flow run) sees."""
        return {
            **os.environ,
            "PREFECT_HOME": str(self.state_dir / "prefect"),
            "PREFECT_API_URL": f"{self.prefect_url}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "RECSYS_HOME": str(self.paths.root),
            "RECSYS_TRACKING_HOME": str(self.paths.tracking_home),
            "PYTHONUNBUFFERED": "1",
        }

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str], url: str | None = None) -> Service:
        self.logs.mkdir(parents=True, exist_ok=True)
        logfile = self.logs / f"{name}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(command, cwd=self.project, env=self.env(), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        for _ in range(50):
            started = _start_time(proc.pid)
            if started:
                break
            time.sleep(0.02)
        log.info("started %s (pid %d), log %s", name, proc.pid, logfile)
        return Service(name, proc.pid, started or "", command, str(logfile), url)

    def _wait_healthy(self, service: Service, health: str) -> None:
        deadline = time.monotonic() + self.cfg.health_timeout_s
        while time.monotonic() < deadline:
            if healthy(health):
                log.info("%s is healthy at %s", service.name, service.url)
                return
            if not alive(service):
                raise RuntimeError(f"{service.name} exited while starting: see {service.log}")
            time.sleep(1.0)
        raise TimeoutError(f"{service.name} not healthy at {health} after "
                           f"{self.cfg.health_timeout_s:.0f}s: see {service.log}")

    def _run(self, command: list[str], check: bool = True, timeout: float = 900) -> str:
        out = subprocess.run(command, cwd=self.project, env=self.env(), capture_output=True,
                             text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout + out.stderr

    def running(self) -> list[Service]:
        state = StackState.load(self.state_file)
        return [s for s in state.services if alive(s)] if state else []

    # -- the commands ----------------------------------------------------------------------
    def up(self, bootstrap: bool = True) -> StackState:
        if self.running():
            raise RuntimeError(f"the stack is already running ({self.state_file}): "
                               "`recsys stack status` shows it, `recsys stack down` stops it")
        state = StackState(prefect_url=self.prefect_url, mlflow_url=self.mlflow_url)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.mlruns.mkdir(parents=True, exist_ok=True)
        try:
            prefect = self._spawn("prefect-server", [
                _bin("prefect"), "server", "start", "--host", self.cfg.host,
                "--port", str(self.cfg.prefect_port)], self.prefect_url)
            state.services.append(prefect)
            state.save(self.state_file)
            mlflow = self._spawn("mlflow-server", [
                _bin("mlflow"), "server", "--host", self.cfg.host,
                "--port", str(self.cfg.mlflow_port), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{self.paths.mlflow_db}",
                "--default-artifact-root", self.paths.mlruns.resolve().as_uri(),
                "--no-serve-artifacts"], self.mlflow_url)
            state.services.append(mlflow)
            state.save(self.state_file)
            self._wait_healthy(mlflow, f"{self.mlflow_url}/health")
            self._wait_healthy(prefect, f"{self.prefect_url}/api/health")
            self.deploy()
            worker = self._spawn("prefect-worker", [
                _bin("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"])
            state.services.append(worker)
            state.save(self.state_file)
            if bootstrap:
                live = self.bootstrap()
                if live is not None:
                    replay = self._spawn("replay", [
                        _bin("recsys"), "replay", str(live), "--speedup",
                        str(self.cfg.speedup), "--tick", str(self.cfg.tick_seconds)])
                    state.services.append(replay)
                    state.save(self.state_file)
        except BaseException:
            self.down()
            raise
        return state

    def deploy(self) -> None:
        """Work pool, the registry's global concurrency limit, then every deployment."""
        prefect = _bin("prefect")
        pools = self._run([prefect, "work-pool", "ls"])
        if WORK_POOL not in pools:
            self._run([prefect, "work-pool", "create", WORK_POOL, "--type", "process"])
        from recsys.orchestration import REGISTRY_LIMIT

        limits = self._run([prefect, "gcl", "ls"], check=False)
        if REGISTRY_LIMIT not in limits:
            self._run([prefect, "gcl", "create", REGISTRY_LIMIT, "--limit", "1"])
        self._run([prefect, "--no-prompt", "deploy", "--all"])
        log.info("deployed every deployment of %s", self.project / "prefect.yaml")

    def bootstrap(self) -> Path | None:
        """Synthetic data and a first champion, unless a champion exists.

        Returns the file of events to replay live (None when there is none).
        """
        recsys = _bin("recsys")
        raw = self.paths.raw
        live = raw / "live.parquet"
        # A champion only counts together with the data it was trained from.
        if not (self.paths.features_db.exists() and self._has_champion()):
            self._run([recsys, "generate", "--preset", self.cfg.preset.value, "--out", str(raw)])
            import pandas as pd

            from recsys.data.live_split import split_live

            history, tail = split_live(pd.read_parquet(raw / "events.parquet"),
                                       self.cfg.live_fraction)
            history.to_parquet(raw / "history.parquet")
            tail.to_parquet(live)
            self._run([recsys, "ingest", str(raw / "items.parquet"), "--kind", "items"])
            self._run([recsys, "ingest", str(raw / "history.parquet")])
            log.info("first full retrain (deployment full-retrain, %d epochs) ...",
                     self.cfg.epochs)
            params = {"training": {"max_epochs": self.cfg.epochs}}
            self._run([_bin("prefect"), "deployment", "run", "full-retrain/full-retrain",
                       "--params", json.dumps(params), "--watch"], timeout=3600)
            if not self._has_champion():
                raise RuntimeError("the first full retrain did not produce a champion: see "
                                   f"the full-retrain run in {self.prefect_url}")
        return live if live.exists() else None

    def _has_champion(self) -> bool:
        from recsys.config import TrackingConfig
        from recsys.registry.registry import Registry

        tracking_cfg = TrackingConfig(tracking_uri=self.mlflow_url)
        return Registry(self.paths, tracking_cfg).champion() is not None

    def down(self, grace_s: float = 15.0) -> list[str]:
        """Stop the processes this stack started (newest first); returns their names."""
        state = StackState.load(self.state_file)
        if state is None:
            return []
        stopped = []
        for service in reversed(state.services):
            if not alive(service):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while alive(service) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(service):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.pid, signal.SIGKILL)
            stopped.append(service.name)
            log.info("stopped %s (pid %d)", service.name, service.pid)
        self.state_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, str]:
        state = StackState.load(self.state_file)
        if state is None:
            return {}
        out = {}
        for s in state.services:
            health = ""
            if s.url and alive(s):
                path = "/api/health" if s.name.startswith("prefect") else "/health"
                health = ", healthy" if healthy(s.url + path) else ", NOT responding"
            out[s.name] = (f"{'running' if alive(s) else 'stopped'} (pid {s.pid}{health}); "
                           f"log {s.log}" + (f"; {s.url}" if s.url else ""))
        return out
