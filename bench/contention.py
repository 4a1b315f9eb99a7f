"""Jobs side by side on one machine: thread budgets (``recsys.threads``) against torch's defaults.

The stack runs an every-minute micro-batch update, the real-time service and a nightly or
hand-started full retrain on the same cores. In one run, each with budgets ON (every job its
share of threads, passive OpenMP waits) and OFF (every process uses every core, libgomp's
default spinning waits), this measures:

(a) the micro-batch update alone and beside a full retrain: wall time of ``update()``
    (target: within 45 s beside a retrain);
(b) the service's latency at 200 requests/s alone and beside a full retrain, over loopback
    HTTP, open loop (``bench/serving.py``'s generator; target: p99 under 30 ms beside);
(c) two full retrains side by side against one alone: target positions/s of each (target:
    each keeps at least 40% of its solo speed; a fair share of the cores is 50%).

Every job is a real process: this script started again as a child (``--child``), which calls
the library entry the CLI calls (``train``, ``update``, ``serve``) with the environment and
thread counts of its mode. Each retrain and update works on its own copy of the prepared
project, so only the cores are shared. The load average is printed with each figure: other
processes on the machine blur them.

    .venv/bin/python bench/contention.py          # the stack's small world (~15 min; quiet machine)
    .venv/bin/python bench/contention.py --quick  # a tiny world and short runs (~5 min)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from loadgen import open_loop
from microbatch_update import prepare

from recsys import console, precision, threads
from recsys.config import ModelConfig, Paths, ThreadConfig, TrackingConfig, TrainConfig
from recsys.data.features import read_store
from recsys.registry.registry import Registry
from recsys.stack import free_port
from recsys.threads import Job

MODES = ("off", "on")
# What a child must not inherit: thread settings of whoever started the bench, and a tracking
# server (each copy of the project has its own SQLite store).
CLEARED = (*threads.COUNT_VARS, "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT",
           "MLFLOW_TRACKING_URI")


def load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


# -- the children --------------------------------------------------------------------------
def child_env(job: Job, mode: str, cfg: ThreadConfig) -> dict[str, str]:
    """The environment of a child running ``job``: the budget's variables, or none (OFF)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return {**env, **threads.env(job, cfg)} if mode == "on" else env


def run_child(spec: dict) -> None:
    """The body of a child process: one job, its result as JSON on the last stdout line."""
    console.configure()
    job, mode, cfg = Job(spec["job"]), spec["mode"], ThreadConfig(**spec["threads"])
    if mode == "on":
        threads.apply(job, cfg)
    paths = Paths(root=spec["root"], tracking_home=spec["tracking"])
    if job is Job.service:
        from recsys.config import ImpressionConfig, ServeConfig
        from recsys.scoring.service import serve

        n = threads.budget(job, cfg).intra if mode == "on" else threads.available_cores()
        serve(paths, ServeConfig(port=spec["port"]), threads=n,
              impressions=ImpressionConfig(enabled=spec["impressions"]))
        return
    if job is Job.micro_batch:
        from recsys.config import UpdateConfig
        from recsys.training.update import update

        t0 = time.perf_counter()
        result = update(paths, UpdateConfig(precision=spec["precision"]))
        out = {"wall_s": time.perf_counter() - t0, "status": result.status,
               "timings": result.timings, "trained_share": result.trained_share}
    else:
        import torch

        from recsys.training import full_retrain

        if marker := spec.get("marker"):  # tell the parent when the fit itself starts
            fit = full_retrain._fit

            def marked_fit(*args, **kwargs):
                Path(marker).write_text(str(time.time()))
                return fit(*args, **kwargs)

            full_retrain._fit = marked_fit
        result = full_retrain.train(
            paths, ModelConfig(),
            TrainConfig(max_epochs=spec["epochs"], patience=spec["epochs"],
                        max_steps_per_epoch=spec["steps"], max_val_users=spec["val_users"],
                        precision=spec["precision"], progress_bar=False),
            tracking_cfg=TrackingConfig(register_model=False), promote=False)
        out = {"positions_per_s": result.positions_per_s, "epochs": len(result.history),
               "threads": torch.get_num_threads()}
    print(json.dumps(out), flush=True)


class Child:
    """One job in its own process group, its output in a log file."""

    def __init__(self, spec: dict, logs: Path):
        logs.mkdir(parents=True, exist_ok=True)
        self.log = logs / f"{spec['job']}-{spec['mode']}-{time.monotonic_ns()}.log"
        self.started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                env=child_env(Job(spec["job"]), spec["mode"], ThreadConfig(**spec["threads"])),
                stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def result(self, timeout: float = 3600) -> dict:
        self.proc.wait(timeout=timeout)
        self.wall_s = time.perf_counter() - self.started
        lines = self.log.read_text().strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"child failed ({self.proc.returncode}): see {self.log}")
        return json.loads(lines[-1]) | {"process_s": self.wall_s}

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# -- the set-up ----------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, home: Path, base: Paths, precision_: str,
                 cfg: ThreadConfig):
        self.args, self.home, self.base, self.precision = args, home, base, precision_
        self.cfg = cfg
        self.logs = home / "logs"
        self.copies = 0

    def copy(self) -> Paths:
        """A fresh copy of the prepared project (store, landing zone, registry)."""
        self.copies += 1
        dest = self.home / f"copy-{self.copies}"
        shutil.copytree(self.base.root, dest / "home")
        shutil.copytree(self.base.tracking_home, dest / "tracking")
        return Paths(root=dest / "home", tracking_home=dest / "tracking")

    def spec(self, job: Job, mode: str, paths: Paths, **extra) -> dict:
        return {"job": job.value, "mode": mode, "root": str(paths.root),
                "tracking": str(paths.tracking_home), "precision": self.precision,
                "threads": self.cfg.model_dump(mode="json"), **extra}

    def retrain(self, mode: str, epochs: int, marker: Path | None = None) -> Child:
        a = self.args
        return Child(self.spec(Job.full_retrain, mode, self.copy(), epochs=epochs,
                               steps=a.steps_per_epoch, val_users=a.val_users,
                               marker=str(marker) if marker else None), self.logs)

    @contextlib.contextmanager
    def beside_retrain(self, mode: str):
        """A full retrain that has reached its fit (and runs until the block ends)."""
        marker = self.home / f"fit-started-{time.monotonic_ns()}"
        background = self.retrain(mode, epochs=10_000, marker=marker)
        try:
            deadline = time.monotonic() + 600
            while not marker.exists():
                if background.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the background retrain did not start: {background.log}")
                time.sleep(0.5)
            time.sleep(self.args.settle_s)  # past the first steps' allocations
            yield background
        finally:
            background.stop()


# -- the three measurements ----------------------------------------------------------------
def measure_update(bench: Bench) -> dict:
    print("\n(a) micro-batch update: wall time of update() (target <= 45 s beside a retrain)")
    out = {}
    for mode in MODES:
        for beside in (False, True):
            ctx = bench.beside_retrain(mode) if beside else contextlib.nullcontext()
            with ctx:
                r = Child(bench.spec(Job.micro_batch, mode, bench.copy()), bench.logs).result()
            label = f"{mode:3s} {'beside a retrain' if beside else 'alone':16s}"
            out[(mode, beside)] = r["wall_s"]
            share = r.get("trained_share")
            print(f"  {label}: {r['wall_s']:6.1f} s ({r['status']}; train "
                  f"{r['timings'].get('train', 0):.1f} s, trained share "
                  f"{'-' if share is None else f'{share:.2f}'}; process "
                  f"{r['process_s']:.1f} s; {load()})", flush=True)
    for mode in MODES:
        print(f"  {mode}: beside / alone {out[(mode, True)] / out[(mode, False)]:.2f}x"
              + ("  <- target met" if out[(mode, True)] <= 45 else "  <- over 45 s"))
    return out


def start_service(bench: Bench, mode: str) -> tuple[Child, str]:
    port = free_port()
    service = Child(bench.spec(Job.service, mode, bench.base, port=port,
                               impressions=not bench.args.no_impressions), bench.logs)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).json().get("status") == "ok":
                return service, url
        if service.proc.poll() is not None:
            break
        time.sleep(0.5)
    service.stop()
    raise RuntimeError(f"the service did not become healthy: see {service.log}")


def measure_service(bench: Bench, users: list[str]) -> dict:
    rate, seconds = 200, bench.args.seconds
    print(f"\n(b) service at {rate} requests/s for {seconds:.0f} s, open loop (target p99 < 30 ms "
          "beside a retrain)")
    out = {}
    for mode in MODES:
        service, url = start_service(bench, mode)
        try:
            open_loop(url, users, rate, 2.0)  # warm-up: first requests, connections
            for beside in (False, True):
                ctx = bench.beside_retrain(mode) if beside else contextlib.nullcontext()
                with ctx:
                    r = open_loop(url, users, rate, seconds)
                ms = np.asarray(r["latencies"])
                p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
                out[(mode, beside)] = p99
                print(f"  {mode:3s} {'beside a retrain' if beside else 'alone':16s}: p50 "
                      f"{p50:6.1f} ms, p99 {p99:7.1f} ms, achieved {r['achieved']:.0f}/s, errors "
                      f"{r['errors']} ({load()})", flush=True)
        finally:
            service.stop()
    for mode in MODES:
        print(f"  {mode}: p99 beside / alone {out[(mode, True)] / out[(mode, False)]:.1f}x"
              + ("  <- target met" if out[(mode, True)] < 30 else "  <- over 30 ms"))
    return out


def measure_retrains(bench: Bench) -> dict:
    epochs = bench.args.epochs
    print(f"\n(c) full retrains of {epochs} epochs: target positions/s, two side by side "
          "against one alone (target: each >= 40% of solo)")
    out = {}
    for mode in MODES:
        solo = bench.retrain(mode, epochs).result()["positions_per_s"]
        print(f"  {mode:3s} alone           : {solo:9,.0f} positions/s ({load()})", flush=True)
        pair = [bench.retrain(mode, epochs), bench.retrain(mode, epochs)]
        side = [c.result()["positions_per_s"] for c in pair]
        out[mode] = (solo, side)
        ratios = [s / solo for s in side]
        print(f"  {mode:3s} side by side    : {side[0]:9,.0f} and {side[1]:,.0f} positions/s = "
              f"{ratios[0]:.0%} and {ratios[1]:.0%} of solo ({load()})"
              + ("  <- target met" if min(ratios) >= 0.4 else "  <- under 40%"), flush=True)
    (off_solo, off_side), (on_solo, on_side) = out["off"], out["on"]
    print(f"  on / off: alone {on_solo / off_solo:.2f}x, side by side "
          f"{sum(on_side) / sum(off_side):.2f}x (sum of both)")
    return out


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny world, short runs")
    parser.add_argument("--items", type=int, help="catalogue (default 2,000; quick 300)")
    parser.add_argument("--users", type=int, help="users (default 4,000; quick 400)")
    parser.add_argument("--new-events", type=int,
                        help="events an update trains on (default 5,000; quick 600)")
    parser.add_argument("--epochs", type=int, help="epochs of each retrain in (c) (default 3)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="steps per epoch of a retrain (default 20; quick 10): bounds the "
                             "OFF pair, which crawls")
    parser.add_argument("--val-users", type=int, default=500, help="validation users")
    parser.add_argument("--seconds", type=float, help="per service load (default 20; quick 6)")
    parser.add_argument("--settle-s", type=float, default=3.0,
                        help="seconds a background retrain trains before a measurement")
    parser.add_argument("--precision", default="auto",
                        help="training precision of every job (auto: what precision=auto "
                             "picks for this world's model, resolved once before measuring)")
    parser.add_argument("--no-impressions", action="store_true",
                        help="the service without its impressions log (a write and fsync a "
                             "second)")
    parser.add_argument("--budget", action="append", default=[], metavar="FIELD=VALUE",
                        help="a ThreadConfig field for the ON runs, e.g. full_retrain=2 "
                             "(repeatable): to compare plans")
    parser.add_argument("--only", choices=("update", "service", "retrains"), action="append",
                        help="run only these measurements (repeatable)")
    parser.add_argument("--keep", type=Path, help="keep the projects and logs in this folder")
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return
    quick = args.quick
    args.items = args.items or (300 if quick else 2000)
    args.users = args.users or (400 if quick else 4000)
    args.new_events = args.new_events or (600 if quick else 5000)
    args.epochs = args.epochs or (2 if quick else 3)
    args.steps_per_epoch = args.steps_per_epoch or (10 if quick else 20)
    args.seconds = args.seconds or (6.0 if quick else 20.0)
    console.configure()
    # This script owns its process: MLflow's artifact bars have no other switch.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    m = precision.machine()
    cfg = ThreadConfig(**dict(b.split("=", 1) for b in args.budget))
    cores = threads.available_cores()
    print(f"{m['cpu']}: {cores} cores for this process ({os.cpu_count()} online), "
          f"{m['isa']}, avx512_bf16={m['avx512_bf16']}, amx={m['amx']}, torch {m['torch']}; "
          f"{load()}")
    print("budgets ON: " + ", ".join(f"{j.value} {threads.budget(j, cfg, environ={}).intra}"
                                     for j in Job)
          + f" intra-op threads, inter-op {cfg.interop}, OMP_WAIT_POLICY="
          f"{cfg.wait_policy.value}; OFF: every process {cores} threads, libgomp's default wait")
    home = args.keep or Path(tempfile.mkdtemp(prefix="bench-contention-"))
    try:
        t0 = time.perf_counter()
        base = prepare(home / "base", args.items, args.users, args.new_events, parts=4)
        registry = Registry(base, TrackingConfig())
        if registry.champion() is None:  # a brief model may lose to popularity: use it anyway
            registry.promote(registry.versions()[0].version, "bench: the briefly trained model")
        resolved = args.precision
        if resolved == "auto":
            from recsys.training.full_retrain import read_training_data
            from recsys.training.precision import TrainShape
            from recsys.training.trainer import resolve_precision

            data = read_training_data(base, TrainConfig(), ModelConfig())
            resolved = resolve_precision("auto", "cpu", TrainShape(
                ModelConfig(), data.n_items, data.text.shape[1]))
        with read_store(base) as con:
            users = [u for (u,) in con.execute(
                "SELECT user_id FROM user_map ORDER BY user_idx LIMIT 2000").fetchall()]
        print(f"set-up {time.perf_counter() - t0:.0f} s; every job trains in {resolved}")
        bench = Bench(args, home, base, resolved, cfg)
        only = set(args.only or ("update", "service", "retrains"))
        if "update" in only:
            measure_update(bench)
        if "service" in only:
            measure_service(bench, users)
        if "retrains" in only:
            measure_retrains(bench)
        print(f"\ntotal {time.perf_counter() - t0:.0f} s; {load()}")
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
