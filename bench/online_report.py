"""Online-report refresh time: attribution and online metrics over 10M impressions.

Writes a day of synthetic traffic as Parquet parts in a temp folder (vectorised): impressions
in lists of ``--list-len`` from ``--versions`` model versions, and the reactions a position-biased
population would have (``--click-rate`` of impressions clicked, a third of clicks carted, a third
of carts bought, half of them carrying the request_id, the rest credited by the window; delays
from an exponential of mean 2 min, so some land late and out of order), plus views and a
catalogue. Then times the refresh (``recsys.evaluation.online.online_report``), median of
``--repeat``, and prints how the time splits (items, attribution, the pass over the impressions,
the roll-ups), the process's CPU seconds (on a shared machine the wall time also measures the
neighbours; the CPU time less so) and the load average.

    .venv/bin/python bench/online_report.py                          # 10M impressions, 1,000 parts
    .venv/bin/python bench/online_report.py --impressions 1000000    # quick
    .venv/bin/python bench/online_report.py --parts 20000            # small parts: file overhead
    .venv/bin/python bench/online_report.py --parts 20000 --compact  # ... merged into 24 files
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys import columns as C
from recsys.config import AttributionConfig, Paths
from recsys.data.impression_compaction import compact_impressions, impression_files
from recsys.data.landing import part_name
from recsys.evaluation.online import online_report
from recsys.files import atomic_write_parquet

NOW = dt.datetime(2026, 3, 2)
EPOCH = np.datetime64("1970-01-01T00:00:00", "us")


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all of DuckDB's threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ids(prefix: str, n: int) -> pa.Array:
    return pa.array([f"{prefix}{i:07d}" for i in range(n)], pa.string())


def _us(now: dt.datetime) -> int:
    return int((np.datetime64(now, "us") - EPOCH).astype(np.int64))


def write_parts(table: pa.Table, folder: Path, n_parts: int, name) -> int:
    bounds = np.linspace(0, table.num_rows, n_parts + 1).astype(np.int64)
    for j in range(n_parts):
        atomic_write_parquet(table.slice(bounds[j], bounds[j + 1] - bounds[j]), folder / name(j))
    return n_parts


def generate(paths: Paths, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, int]:
    """A day of impressions and reactions under ``paths``, sorted by time as a service writes."""
    n_req = args.impressions // args.list_len
    n = n_req * args.list_len
    users, items = ids("u", args.users), ids("i", args.items)
    t1 = _us(NOW)
    t0 = t1 - 24 * 3600 * 1_000_000
    req_ts = np.sort(rng.integers(t0, t1, n_req))
    req_user = rng.integers(0, args.users, n_req)
    req_version = rng.integers(0, args.versions, n_req)
    # popular items more often: a power law over the catalogue
    item = (args.items * rng.random(n) ** 3).astype(np.int64)
    position = np.tile(np.arange(1, args.list_len + 1, dtype=np.int32), n_req)
    req = np.repeat(np.arange(n_req), args.list_len)
    request_ids = pa.array([f"r{i:09d}" for i in range(n_req)], pa.string())
    versions = pa.array([str(v + 1) for v in range(args.versions)], pa.string())
    impressions = pa.table({
        C.REQUEST_ID: request_ids.take(pa.array(req)),
        C.USER_ID: users.take(pa.array(req_user[req])),
        C.ITEM_ID: items.take(pa.array(item)),
        C.POSITION: pa.array(position, pa.int32()),
        C.SCORE: pa.array(rng.random(n)),
        C.MODEL_VERSION: versions.take(pa.array(req_version[req])),
        C.VARIANT: pa.nulls(n, pa.string()),
        C.SURFACE: pa.array(np.full(n, "user", dtype=object), pa.string()),
        C.TS: pa.array(req_ts[req], pa.timestamp("us")),
    }, schema=C.IMPRESSION_SCHEMA)
    # each part named when a service would have written it: at its last row
    bounds = np.linspace(0, n, args.parts + 1).astype(np.int64)
    stamps = [str(np.datetime64(int(req_ts[req[b - 1]]), "us").astype("datetime64[s]"))
              .replace("-", "").replace("T", "").replace(":", "") for b in bounds[1:]]
    write_parts(impressions, paths.impressions, args.parts,
                lambda j: f"part-{stamps[j]}-0badc0de-{j:06d}.parquet")

    # position bias: clicks fall off as 1 / position^0.8, scaled to the click rate
    bias = 1.0 / position ** 0.8
    clicked = np.flatnonzero(rng.random(n) < bias * args.click_rate / bias.mean())
    carted = clicked[rng.random(len(clicked)) < 1 / 3]
    bought = carted[rng.random(len(carted)) < 1 / 3]
    kinds = [("click", clicked), ("cart", carted), ("purchase", bought)]
    rows = np.concatenate([k for _, k in kinds])
    event_type = np.concatenate([np.full(len(k), t, dtype=object) for t, k in kinds])
    delay = rng.exponential(120e6, len(rows)).astype(np.int64)
    ev_ts = req_ts[req[rows]] + delay
    with_request = rng.random(len(rows)) < 0.5
    views = rng.integers(0, n, 2 * len(clicked))  # views of what was shown, no request_id
    n_ev = len(rows) + len(views)
    all_rows = np.concatenate([rows, views])
    events = pa.table({
        C.EVENT_ID: pa.array([f"e{i:010d}" for i in range(n_ev)], pa.string()),
        C.USER_ID: users.take(pa.array(req_user[req[all_rows]])),
        C.ITEM_ID: items.take(pa.array(item[all_rows])),
        C.EVENT_TYPE: pa.array(np.concatenate([event_type, np.full(len(views), "view",
                                                                   dtype=object)])),
        C.TS: pa.array(np.concatenate([ev_ts, req_ts[req[views]] + 1_000_000]),
                       pa.timestamp("us")),
        C.VALUE: pa.nulls(n_ev, pa.float64()),
        C.INGEST_SEQ: pa.array(np.zeros(n_ev, np.int64)),
        C.INGESTED_AT: pa.array(np.full(n_ev, t1), pa.timestamp("us")),
        C.SOURCE: pa.array(np.full(n_ev, "bench", dtype=object), pa.string()),
        C.REQUEST_ID: request_ids.take(pa.array(
            req[all_rows], mask=~np.concatenate([with_request, np.zeros(len(views), bool)]))),
    })
    events = events.take(pa.array(np.argsort(events[C.TS].to_numpy(), kind="stable")))
    write_parts(events, paths.landing_events, args.event_parts, lambda j: part_name(j + 2))
    catalogue = pa.table({C.ITEM_ID: items, C.TITLE: items, C.CATEGORY: pa.nulls(args.items,
                          pa.string()), C.DESCRIPTION: pa.nulls(args.items, pa.string()),
                          C.CREATED_AT: pa.nulls(args.items, pa.timestamp("us")),
                          C.INGEST_SEQ: pa.array(np.ones(args.items, np.int64)),
                          C.INGESTED_AT: pa.array(np.full(args.items, t0), pa.timestamp("us")),
                          C.SOURCE: pa.array(np.full(args.items, "bench", dtype=object))},
                         schema=C.LANDING_ITEM_SCHEMA)
    atomic_write_parquet(catalogue, paths.landing_items / part_name(1))
    return {"impressions": n, "events": n_ev, "clicks": len(clicked)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--impressions", type=int, default=10_000_000)
    ap.add_argument("--parts", type=int, default=1_000, help="impression parts")
    ap.add_argument("--event-parts", type=int, default=200)
    ap.add_argument("--list-len", type=int, default=10)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--versions", type=int, default=3)
    ap.add_argument("--click-rate", type=float, default=0.03)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep this data folder")
    ap.add_argument("--compact", action="store_true",
                    help="merge the parts into hourly files first (as the flow does), timed")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-online-"))
    paths = Paths(root=root, tracking_home=root)
    print(f"{cpu()}, {os.cpu_count()} cores")
    if not paths.impressions.is_dir():
        t = time.perf_counter()
        sizes = generate(paths, args, np.random.default_rng(0))
        print(f"generated {sizes['impressions']:,} impressions ({args.parts} parts), "
              f"{sizes['events']:,} events ({sizes['clicks']:,} clicks) in "
              f"{time.perf_counter() - t:.1f}s")
    if args.compact:
        t = time.perf_counter()
        done = compact_impressions(paths)
        print(f"compacted {done.merged:,} parts into {len(done.hours)} hourly files in "
              f"{time.perf_counter() - t:.1f}s (once an hour in service)")
    cfg = AttributionConfig()
    runs = []
    for _ in range(args.repeat):
        c, t = cpu_seconds(), time.perf_counter()
        report = online_report(paths, cfg, now=NOW)
        runs.append((time.perf_counter() - t, cpu_seconds() - c, report))
    total, used, report = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    print(report.totals.to_string(index=False))
    print(report.matched.to_string(index=False))
    files = len(impression_files(paths))
    print(f"\nrefresh of {report.overall.impressions:,} impressions in {files:,} files "
          f"(median of {args.repeat}): {total:.2f} s wall, {used:.2f} s CPU; target < 5 s")
    print("  steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items()))
    print(f"  all runs (wall / CPU s): {', '.join(f'{r[0]:.2f}/{r[1]:.2f}' for r in runs)}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
