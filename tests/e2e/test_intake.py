"""The real service (``recsys serve``) is SIGKILLed around POST /events and its impressions.

An acknowledged event must be in the landing zone exactly once after a restart, whether the
process died right after the answer (the journal is recovered) or in the middle of sealing it
(the part landed, the segment was not yet deleted: sealed again, nothing twice). Impressions may
lose at most the last write window.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest

from recsys.config import ImpressionConfig, IntakeConfig
from recsys.data.landing import LandingZone
from recsys.stack import _bin, free_port
from tests.e2e.test_server_faults import Server

pytestmark = pytest.mark.e2e

SEAL_S = IntakeConfig().seal_interval_s
FLUSH_S = ImpressionConfig().flush_interval_s


def service(paths, tmp_path: Path, **env) -> tuple[Server, str]:
    port = free_port()
    environ = {**os.environ, "RECSYS_TRACKING_HOME": str(paths.tracking_home),
               "PYTHONUNBUFFERED": "1", **env}
    environ.pop("MLFLOW_TRACKING_URI", None)
    url = f"http://127.0.0.1:{port}"
    return Server([_bin("recsys"), "serve", "--home", str(paths.root), "--port", str(port)],
                  f"{url}/health", environ, tmp_path / "serve.log"), url


def landed(paths) -> pd.DataFrame:
    parts = [str(p) for p in LandingZone(paths).event_parts()]
    if not parts:
        return pd.DataFrame(columns=["user_id", "item_id", "ts", "request_id"])
    return duckdb.sql(f"SELECT * FROM read_parquet({parts!r}, union_by_name = true)").df()


def quarantined(paths) -> pd.DataFrame:
    parts = [str(p) for p in LandingZone(paths).quarantine_parts()]
    if not parts:
        return pd.DataFrame(columns=["reason", "source"])
    return duckdb.sql(f"SELECT * FROM read_parquet({parts!r})").df()


def batches(n_requests: int, size: int) -> list[list[dict]]:
    """Distinct events; every third has a client id, every tenth row of a batch is bad."""
    out = []
    for r in range(n_requests):
        batch = []
        for i in range(size):
            e = {"user_id": f"u{r}", "item_id": f"i{i}", "event_type": "view",
                 "ts": f"2024-05-01T{r % 24:02d}:{i // 60:02d}:{i % 60:02d}"}
            if i % 3 == 0:
                e["event_id"] = f"r{r}-e{i}"
            if i % 10 == 9:
                e["event_type"] = "teleport"
            batch.append(e)
        out.append(batch)
    return out


def post_all(url: str, requests: list[list[dict]], threads: int = 4) -> tuple[list[dict], int]:
    """POST concurrently until done or the service dies; returns the events the 2xx answers
    acknowledged (their rejected rows left out) and how many rows they rejected."""
    acked, rejected, lock = [], [0], threading.Lock()
    todo = list(requests)

    def worker():
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    batch = todo.pop()
                try:
                    r = client.post("/events", json=batch)
                except httpx.HTTPError:  # the service died: this request was not acknowledged
                    return
                assert r.status_code == 200, r.text
                bad = {x["index"] for x in r.json()["rejected"]}
                assert r.json()["accepted"] == len(batch) - len(bad)
                with lock:
                    acked.extend(e for i, e in enumerate(batch) if i not in bad)
                    rejected[0] += len(bad)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return acked, rejected[0]


def key(e: dict) -> str:
    return f"{e['user_id']}|{e['item_id']}|{pd.Timestamp(e['ts'])}"


def wait_for_recovery(paths, dead_boots: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(b in p.name for p in paths.intake.glob("seg-*") for b in dead_boots):
        assert time.monotonic() < deadline, "the restarted service did not recover the journal"
        time.sleep(0.2)


def boots(paths) -> set[str]:
    return {p.stem for p in paths.intake.glob("*.lock")}


@pytest.mark.parametrize("death", ["right after the 2xx", "while sealing"])
def test_every_acknowledged_event_lands_exactly_once_across_a_sigkill(paths, tmp_path, death):
    requests = batches(24, 50)
    env = {"RECSYS_KILL_AT": "ingest.after_quarantine_part"} if death == "while sealing" else {}
    server, url = service(paths, tmp_path, **env)
    server.start()
    try:
        acked, rejected = post_all(url, requests)
        if death == "right after the 2xx":
            server.kill()
            assert len(acked) == 24 * 45 and rejected == 24 * 5
        else:  # the first seal publishes its parts, then the process dies before the delete
            server.proc.wait(timeout=10 * SEAL_S + 30)
            assert LandingZone(paths).event_parts() and list(paths.intake.glob("seg-*"))
            assert acked
        dead = boots(paths)
        print(f"\n{death}: {len(acked)} events acknowledged, "
              f"{len(list(paths.intake.glob('seg-*')))} journal segments left to recover")

        server, url = service(paths, tmp_path)
        server.start()
        wait_for_recovery(paths, dead)
        df = landed(paths)
        keys = df[["user_id", "item_id", "ts"]].astype(str).agg("|".join, axis=1)
        assert keys.is_unique and {key(e) for e in acked} <= set(keys)  # each one, once
        assert set(keys) <= {key(e) for batch in requests for e in batch}
        q = quarantined(paths)
        assert q.quarantine_id.is_unique and len(q) >= rejected
        assert set(q.reason) == {"unknown_event_type"}
        # The restarted service's own journal works.
        r = httpx.post(f"{url}/events", json=requests[0][0], timeout=30)
        assert r.json() == {"accepted": 1, "rejected": []}
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill()


def test_posted_events_show_at_once_and_impressions_survive_a_sigkill_but_the_last_window(
        world, tmp_path):
    server, url = service(world.paths, tmp_path)
    server.start()
    user = "e2e-new-user"
    items = world.items["item_id"].tolist()[:5]
    ts = pd.Timestamp(world.chunks[-1]["ts"].max())
    answered: list[tuple[float, str]] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get(f"/recommendations/{user}").json()["fallback"]
            t0 = time.monotonic()
            r = client.post("/events", json=[{"user_id": user, "item_id": item,
                                               "event_type": "click",
                                               "ts": str(ts + pd.Timedelta(seconds=i))}
                                              for i, item in enumerate(items)])
            assert r.status_code == 200 and r.json()["accepted"] == 5
            body = client.get(f"/recommendations/{user}").json()
            assert time.monotonic() - t0 < 1.0
            assert body["fallback"] is None and body["history_length"] == 5

            users = world.chunks[0]["user_id"].astype(str).unique().tolist()
            start = time.monotonic()
            while time.monotonic() - start < 3 * FLUSH_S + 1:
                for u in users[:5]:
                    answer = client.get(f"/recommendations/{u}", params={"k": 5}).json()
                    answered.append((time.monotonic(), answer["request_id"]))
                time.sleep(0.05)
        killed_at = time.monotonic()
        server.kill()
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill()
    parts = sorted(world.paths.impressions.glob("part-*.parquet"))
    on_disk = set(pd.concat([pd.read_parquet(p, columns=["request_id"]) for p in parts])
                  .request_id) if parts else set()
    old = [rid for t, rid in answered if killed_at - t > 2 * FLUSH_S]
    recent = [rid for t, rid in answered if killed_at - t <= 2 * FLUSH_S]
    assert old and set(old) <= on_disk, f"{len(set(old) - on_disk)} old answers lost"
    lost = len(set(recent) - on_disk)
    print(f"\n{len(answered)} answers; of the last {2 * FLUSH_S:.0f} s, {lost} of {len(recent)} "
          "not yet written when the service was killed")
