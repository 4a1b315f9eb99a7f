"""Soak: everything at once for ten minutes, as in production (opt-in: ``pytest -m soak -n0 -s``).

A replay streams a month of synthetic events into the landing zone at ~130 events/s, the
micro-batch update runs every minute, batch scoring every two and a half, and the real-time
service answers a closed loop of concurrent clients the whole time. Afterwards: no failed
request, no failed or lock-timed-out job, the champion advanced, and the service's memory did
not grow (resident set size at start and end are printed). ``RECSYS_SOAK_SECONDS`` shortens it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from recsys.config import ModelConfig, Paths, TrackingConfig, TrainConfig
from recsys.data.features import build_features
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone
from recsys.data.synthetic import generate, preset
from recsys.registry.registry import Registry
from recsys.stack import free_port
from recsys.training.full_retrain import train

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("RECSYS_SOAK_SECONDS", "600"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Periodic(threading.Thread):
    """Runs a CLI command every ``every`` seconds (or right after the last one if slower)."""

    def __init__(self, name: str, command: list[str], every: float, env: dict, stop):
        super().__init__(name=name, daemon=True)
        self.command, self.every, self.env, self.stop = command, every, env, stop
        self.runs: list[tuple[int, float, str]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            out = subprocess.run(self.command, env=self.env, capture_output=True, text=True)
            self.runs.append((out.returncode, time.monotonic() - t,
                              (out.stdout + out.stderr)[-1500:]))
            self.stop.wait(max(0.0, self.every - (time.monotonic() - t)))


def test_soak(tmp_path):
    paths = Paths(root=tmp_path / "home", tracking_home=tmp_path / "tracking")
    data = generate(preset("small", n_users=3000, n_items=1500, days=60.0))
    events = data.events.sort_values("ts", kind="stable", ignore_index=True)
    cut = events["ts"].quantile(0.5)
    ingest_frame(data.items, "items", kind="items", data_paths=paths)
    ingest_frame(events[events["ts"] <= cut], "history", data_paths=paths)
    build_features(paths)
    result = train(paths, ModelConfig(d_model=32, max_len=30),
                   TrainConfig(max_epochs=2, batch_size=128, progress_bar=False))
    registry = Registry(paths, TrackingConfig())
    if registry.champion() is None:
        registry.promote(result.version, "soak: serve the first model")
    first = registry.champion().version
    live = events[events["ts"] > cut]
    live_file = tmp_path / "live.parquet"
    live.to_parquet(live_file)
    span = (pd.Timestamp(live["ts"].max()) - pd.Timestamp(live["ts"].min())).total_seconds()

    env = {**os.environ, "RECSYS_TRACKING_HOME": str(paths.tracking_home),
           "RECSYS_HOME": str(paths.root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    recsys = [sys.executable, "-m", "recsys.cli"]
    port = free_port()
    server = subprocess.Popen([*recsys, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    replay_log = tmp_path / "replay.log"
    with open(replay_log, "wb") as out:
        replay = subprocess.Popen([*recsys, "replay", str(live_file), "--speedup",
                                   str(span / SECONDS), "--tick", "5"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    stop = threading.Event()
    jobs = [Periodic("update", [*recsys, "update"], 60, env, stop),
            Periodic("score", [*recsys, "score", "--no-progress"], 150, env, stop)]
    url = f"http://127.0.0.1:{port}"
    users = events[events["ts"] <= cut]["user_id"].unique().tolist()
    sessions = live["item_id"].tolist()
    served, failures = [0], []
    lock = threading.Lock()

    def client(n: int) -> None:
        k = n
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                k += 7
                try:
                    if k % 4:
                        r = http.get(f"/recommendations/{users[k % len(users)]}")
                    else:
                        r = http.post("/recommendations", json={
                            "item_ids": sessions[k % len(sessions):][:10], "k": 10})
                    ok = r.status_code == 200
                except httpx.HTTPError as exc:
                    ok, r = False, exc
                with lock:
                    served[0] += 1
                    if not ok:
                        failures.append(str(getattr(r, "text", r))[:200])

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "no service"
            time.sleep(0.5)
        for job in jobs:
            job.start()
        clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(6)]
        for c in clients:
            c.start()
        time.sleep(min(30.0, SECONDS / 10))
        rss_start = rss_mb(server.pid)
        time.sleep(SECONDS - min(30.0, SECONDS / 10))
        rss_end = rss_mb(server.pid)
    finally:
        stop.set()
        replay.terminate()
        for job in jobs:
            job.join(timeout=600)
        server.terminate()
        server.wait(timeout=30)

    updates, scores = jobs[0].runs, jobs[1].runs
    champion = registry.champion()
    statuses = {k: int(v) for k, v in pd.Series([r[2] for r in updates])
                .str.extract(r"update (\w+)")[0].value_counts().items()}
    print(f"\nsoak {SECONDS:.0f} s: {served[0]:,} requests served, {len(failures)} failed; "
          f"{len(updates)} updates ({statuses}), {len(scores)} batch scores; champion "
          f"{first} -> {champion.version}; service RSS {rss_start:.0f} MB -> {rss_end:.0f} MB "
          f"({rss_end - rss_start:+.0f} MB)")
    landed_parts = len(LandingZone(paths).event_parts())
    assert landed_parts > 10, replay_log.read_text()[-3000:]
    assert not failures, failures[:5]
    failed_jobs = [(rc, out) for rc, _, out in updates + scores if rc != 0]
    assert not failed_jobs, failed_jobs[:2]
    assert not any("LockTimeout" in out or "lock" in out.lower() and "error" in out.lower()
                   for _, _, out in updates + scores)
    assert champion.version != first, "the champion never advanced"
    assert rss_end < rss_start * 1.25 + 50, (rss_start, rss_end)
    assert served[0] > 1000
