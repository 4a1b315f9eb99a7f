"""The local stack: Prefect, MLflow, deployments, the real-time service, data, live traffic.

``recsys stack up`` surveys the project folder (``recsys.stack_survey``) and says what it found
and will do, starts each service as its own process group on 127.0.0.1, waits until it is
healthy (saying what it waits for), bootstraps only what is missing, then starts the real-time
service and the live traffic (``recsys.traffic``): by default the world's simulated users
asking that service for lists and posting their reactions back to it. It records what it
started (pid, process start time, command, log file) and the traffic source in
``<state>/stack.json``. ``down`` stops exactly those processes (a pid that now belongs to another
process is left alone); ``up`` while they run says so instead of starting twins; ``reset``
returns the folder to fresh.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recsys import threads, traffic
from recsys.config import Paths, SimulateConfig, StackConfig, TrafficSource
from recsys.stack_survey import Survey, champion_line, last_update, reset_targets, survey

log = logging.getLogger(__name__)

WORK_POOL = "recsys-local"
PROGRESS_EVERY_S = 15.0  # a long wait says what it waits for this often


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
    traffic: dict | None = None  # traffic.TrafficSpec.as_dict() of the running source

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls([Service(**s) for s in raw["services"]], raw["prefect_url"],
                   raw["mlflow_url"], raw.get("traffic"))

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


def _request(url: str, body: dict | None = None, timeout: float = 30.0,
             attempts: int = 6) -> dict:
    """JSON from the Prefect REST API (GET, or POST with ``body``).

    A 503 is tried again after a growing pause, as Prefect's own client does: on a loaded
    machine the server's SQLite database is busy for a moment, and the request did nothing.
    """
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == attempts - 1:
                raise
            log.info("%s answered 503 (busy): trying again", url)
            time.sleep(min(2.0 ** attempt, 10.0))
    raise AssertionError("unreachable")


def _elapsed(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s" if seconds >= 60 \
        else f"{seconds:.0f} s"


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
                 cfg: StackConfig | None = None, say: Callable[[str], None] | None = None):
        self.project, self.state_dir, self.paths = project, state_dir, paths
        self.cfg = cfg or StackConfig()
        self.state_file = state_dir / "stack.json"
        self.traffic_progress = state_dir / "traffic.json"
        self.logs = state_dir / "logs"
        self.say = say or log.info  # what `up` found, does and waits for, one line each

    @property
    def prefect_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.prefect_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.mlflow_port}"

    @property
    def service_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.serve_port}"

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
    def _spawn(self, name: str, command: list[str], url: str | None = None,
               env: dict[str, str] | None = None) -> Service:
        """Start one process; ``env`` adds to the stack's environment (its thread budget)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        logfile = self.logs / f"{name}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(command, cwd=self.project, env={**self.env(), **(env or {})},
                                    stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        for _ in range(50):
            started = _start_time(proc.pid)
            if started:
                break
            time.sleep(0.02)
        log.debug("started %s (pid %d), log %s", name, proc.pid, logfile)
        return Service(name, proc.pid, started or "", command, str(logfile), url)

    def _wait_healthy(self, service: Service, health: str) -> None:
        t0 = time.monotonic()
        deadline, next_say = t0 + self.cfg.health_timeout_s, t0 + PROGRESS_EVERY_S
        while time.monotonic() < deadline:
            if healthy(health):
                self.say(f"{service.name} is healthy at {service.url} "
                         f"({_elapsed(time.monotonic() - t0)})")
                return
            if not alive(service):
                raise RuntimeError(f"{service.name} exited while starting: see {service.log}")
            if time.monotonic() >= next_say:
                self.say(f"  waiting for {service.name} to answer {health}: "
                         f"{_elapsed(time.monotonic() - t0)}")
                next_say += PROGRESS_EVERY_S
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
        found = survey(self.paths, self._champion(local=True))
        plan = found.plan()
        source = self.traffic_source(found)
        for line in found.lines():
            self.say(f"found: {line}")
        if bootstrap:
            for line in plan.lines(self.cfg_traffic_line(source),
                                   hold_back=source == traffic.REPLAY_LOOP):
                self.say(f"will: {line}")
        else:
            self.say("will: start the servers and deployments only (--no-bootstrap)")
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
                _bin("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"],
                env=threads.launcher_env())  # flows apply their own budgets (docs/compute.md)
            state.services.append(worker)
            state.save(self.state_file)
            if bootstrap:
                self.bootstrap(found, source)
                service = self._spawn("service", [
                    _bin("recsys"), "serve", "--host", self.cfg.host,
                    "--port", str(self.cfg.serve_port), "--home", str(self.paths.root)],
                    self.service_url, env=threads.env(threads.Job.service))
                state.services.append(service)
                state.save(self.state_file)
                self._wait_healthy(service, f"{self.service_url}/health")
                spec = self.traffic_spec(source)
                state.traffic = spec.as_dict()
                state.save(self.state_file)
                self.traffic_progress.unlink(missing_ok=True)
                state.services.append(self._spawn("traffic", [
                    _bin("recsys"), "stack", "traffic", "--state", str(self.state_dir),
                    "--home", str(self.paths.root)], env=threads.env(threads.Job.traffic)))
                state.save(self.state_file)
                self.say(f"started live traffic: {spec.describe()}")
        except BaseException:
            self.down()
            raise
        return state

    def traffic_source(self, found: Survey) -> str:
        """Simulated users when asked for and the world's ground truth is (or will be) there."""
        truth = found.world_truth is not None or found.plan().generate
        if self.cfg.traffic == TrafficSource.simulate and truth:
            return traffic.SIMULATE
        if self.cfg.traffic == TrafficSource.simulate:
            self.say("no world ground truth (raw/world.npz) to simulate users from: the live "
                     "traffic replays the events instead")
        return traffic.REPLAY_LOOP

    def cfg_traffic_line(self, source: str = traffic.REPLAY_LOOP) -> str:
        if source == traffic.SIMULATE:
            cfg = self.simulate_config()
            return (f"the world's users ask the real-time service at {cfg.url} for lists, "
                    f"{cfg.rate:g} requests/s, and post their reactions")
        return (f"{traffic.REPLAY_LOOP} of the world's events at {self.cfg.speedup:g}x, "
                "each lap dated after the last")

    def simulate_config(self) -> SimulateConfig:
        """The simulator's defaults, against this stack's service, until the stack stops."""
        return SimulateConfig(url=self.service_url, duration_s=0)

    def deploy(self) -> None:
        """Work pool, the registry's global concurrency limit, then every deployment."""
        prefect = _bin("prefect")
        self.say("deploying prefect.yaml (work pool, concurrency limit, deployments) ...")
        pools = self._run([prefect, "work-pool", "ls"])
        if WORK_POOL not in pools:
            self._run([prefect, "work-pool", "create", WORK_POOL, "--type", "process"])
        from recsys.orchestration import REGISTRY_LIMIT

        limits = self._run([prefect, "gcl", "ls"], check=False)
        if REGISTRY_LIMIT not in limits:
            self._run([prefect, "gcl", "create", REGISTRY_LIMIT, "--limit", "1"])
        self._run([prefect, "--no-prompt", "deploy", "--all"])
        self.say(f"deployed every deployment of {self.project / 'prefect.yaml'}")

    def bootstrap(self, found: Survey, source: str = traffic.REPLAY_LOOP) -> None:
        """Only what is missing: the world, its history in the landing zone, a champion.

        A replay holds the world's newest events back to land them live later. Simulated users
        make new events, dated now: everything the world generated lands as history, so the
        first champion knows each user up to their last item, where the simulator takes over.
        """
        plan = found.plan()
        raw = self.paths.raw
        if plan.generate:
            self.say(f"generating the {self.cfg.preset.value} synthetic world into {raw} ...")
            self._run([_bin("recsys"), "generate", "--preset", self.cfg.preset.value,
                       "--out", str(raw)])
        if plan.land_history:
            import pandas as pd

            from recsys.data.ingest import ingest_frame
            from recsys.data.live_split import split_live

            hold_back = self.cfg.live_fraction if source == traffic.REPLAY_LOOP else 0.0
            history, _ = split_live(pd.read_parquet(raw / "events.parquet"), hold_back)
            if (raw / "items.parquet").exists():
                items = pd.read_parquet(raw / "items.parquet")
                self.say(ingest_frame(items, "items", kind="items",
                                      data_paths=self.paths).summary())
            self.say(ingest_frame(history, "history", data_paths=self.paths).summary())
        if plan.retrain:
            self.run_deployment("full-retrain/full-retrain",
                                {"training": {"max_epochs": self.cfg.epochs}},
                                f"the first full retrain ({self.cfg.epochs} epochs)")
            if self._champion() is None:
                raise RuntimeError("the first full retrain did not produce a champion: see "
                                   f"the full-retrain run in {self.prefect_url}")

    def run_deployment(self, name: str, parameters: dict, what: str,
                       timeout: float = 3600.0) -> dict:
        """Start a flow run of deployment ``flow/deployment`` and wait, saying how it goes."""
        api = f"{self.prefect_url}/api"
        deployment = _request(f"{api}/deployments/name/{name}")
        run = _request(f"{api}/deployments/{deployment['id']}/create_flow_run",
                       {"parameters": parameters})
        self.say(f"waiting for {what}: flow run {run['name']} "
                 f"({self.prefect_url}/runs/flow-run/{run['id']})")
        t0 = time.monotonic()
        next_say, last_state = t0 + PROGRESS_EVERY_S, ""
        while True:
            run = _request(f"{api}/flow_runs/{run['id']}")
            state = (run.get("state") or {}).get("name") or run.get("state_type") or "?"
            elapsed = time.monotonic() - t0
            if run.get("state_type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                self.say(f"  {what}: {state} after {_elapsed(elapsed)}")
                if run["state_type"] != "COMPLETED":
                    raise RuntimeError(f"{what} ended {state}: see {self.prefect_url}"
                                       f"/runs/flow-run/{run['id']}")
                return run
            if state != last_state or time.monotonic() >= next_say:
                self.say(f"  {what}: {state}, {_elapsed(elapsed)} elapsed")
                last_state, next_say = state, time.monotonic() + PROGRESS_EVERY_S
            if elapsed > timeout:
                raise TimeoutError(f"{what} still {state} after {_elapsed(elapsed)}")
            time.sleep(2.0)

    def traffic_spec(self, source: str = traffic.REPLAY_LOOP) -> traffic.TrafficSpec:
        """What the traffic process runs: ``source``, or a replay without a world file.

        A replay loops the world's events (without an events file: the landed ones) from just
        after the newest landed event.
        """
        from recsys.data.replay import newest_landed_ts

        truth = traffic.world_file(self.paths)
        if source == traffic.SIMULATE and truth is not None:
            return traffic.TrafficSpec(traffic.SIMULATE, str(truth), None, self.cfg.speedup,
                                       self.cfg.tick_seconds,
                                       self.simulate_config().model_dump(mode="json"))
        world = traffic.world_events(self.paths)
        newest = newest_landed_ts(self.paths)
        return traffic.TrafficSpec(
            traffic.REPLAY_LOOP, str(world) if world else traffic.LANDED,
            newest.isoformat() if newest is not None else None, self.cfg.speedup,
            self.cfg.tick_seconds)

    def run_traffic(self) -> None:
        """The traffic process's body (``recsys stack traffic``): runs until stopped."""
        state = StackState.load(self.state_file)
        if state is None or not state.traffic:
            raise RuntimeError(f"no traffic source recorded in {self.state_file}")
        traffic.run(traffic.TrafficSpec(**state.traffic), self.paths, self.traffic_progress)

    def _champion(self, local: bool = False, url: str | None = None):
        """The champion from the MLflow server at ``url`` (this stack's), or its SQLite file."""
        from recsys.config import TrackingConfig
        from recsys.registry.registry import Registry
        from recsys.registry.tracking import local_uri

        if local and not self.paths.mlflow_db.exists():
            return None
        uri = local_uri(self.paths) if local else (url or self.mlflow_url)
        return Registry(self.paths, TrackingConfig(tracking_uri=uri)).champion()

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
        """One line per service, then the traffic, the last update and the champion."""
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
        out.update(self.readings(state))
        return out

    def readings(self, state: StackState) -> dict[str, str]:
        """What the stack is doing: its traffic, the last update's decision, the champion."""
        out = {"traffic source": traffic.TrafficSpec(**state.traffic).describe()
               if state.traffic else "none"}
        progress = traffic.read_progress(self.traffic_progress)
        if progress:
            out["traffic progress"] = traffic.progress_line(progress)
        out["last update"] = last_update(self.paths) or "none yet"
        # The server the state records (this Stack's config may name other ports), if it
        # answers: MLflow's client retries a refused connection for minutes.
        mlflow_up = any(s.name == "mlflow-server" and alive(s) for s in state.services) \
            and healthy(f"{state.mlflow_url}/health")
        try:
            out["champion"] = champion_line(self._champion(local=not mlflow_up,
                                                           url=state.mlflow_url))
        except Exception as exc:  # a status line, not a crash, when MLflow does not answer
            out["champion"] = f"unknown ({type(exc).__name__}: {exc})"
        return out

    def reset_targets(self) -> list[Path]:
        return reset_targets(self.paths, self.state_dir, self.project)

    def reset(self) -> list[Path]:
        """Return the folder to fresh; refuses while the stack runs. Returns what it removed."""
        if self.running():
            raise RuntimeError("the stack is running: stop it first with `recsys stack down`")
        removed = self.reset_targets()
        for path in removed:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        return removed
