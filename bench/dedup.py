"""The duplicate check of a small seal as the landing zone grows: the event id index against
the scan of every part it replaced, timed in the same process on the same zone.

A landing zone is grown in bulk chunks (each timed, with the index's share of it), and at
each size seal-sized batches of events are checked both ways, best of ``--repeats``: one of
new ids only (most seals), one where a share repeats the last seal's ids (a client's
retry), and one where that share repeats ids from anywhere in the zone (the worst case: the
index then names many parts, each read in full):

- **index**: ``Ingestor._landing_status`` as it runs now: the index names the parts that
  may hold the batch's ids, and the exact check reads only those;
- **scan**: what it ran before the index, the same exact check over every landed part.

Both give the same answer (checked at every size), and the ratio is scan over index. One
whole seal of new events (``ingest_frame``: validation, check, part, index) is timed too.

    .venv/bin/python bench/dedup.py                              # 10M events, ~3 min
    .venv/bin/python bench/dedup.py --events 2000000 --step 1000000   # quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import sql
from recsys.config import IngestConfig, Paths
from recsys.data.event_index import EventIndex
from recsys.data.ingest import Ingestor, ingest_frame
from recsys.data.landing import LandingZone
from recsys.precision import machine


def frame(rng: np.random.Generator, start: int, n: int) -> pd.DataFrame:
    """``n`` view events with ids ``start..start+n`` (hex-scrambled, as client ids are)."""
    return ids_frame(rng, np.arange(start, start + n))


def ids_frame(rng: np.random.Generator, ids: np.ndarray) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "event_id": [f"{(i * 2654435761) % 2**40:010x}-{i}" for i in ids.tolist()],
        "user_id": [f"u{u}" for u in rng.integers(0, 200_000, n)],
        "item_id": [f"i{i}" for i in rng.integers(0, 50_000, n)],
        "event_type": "view",
        "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 86400 * 30, n), "s"),
    })


def check_both_ways(paths: Paths, batch: pd.DataFrame, repeats: int) -> tuple[float, float]:
    """Best-of seconds of the duplicate check by the index and by the scan; same answer."""
    zone = LandingZone(paths)
    with zone.writer() as writer, Ingestor(writer, IngestConfig(), threads=1) as ingestor:
        con = ingestor.con
        con.register("raw", batch.astype(str))
        accepted = con.sql("SELECT row_number() OVER () AS _row, event_id, "
                           "event_content_hash(user_id, item_id, event_type, "
                           "CAST(ts AS TIMESTAMP), NULL) AS content_hash, "
                           "event_id_key(event_id) AS id_key FROM raw").to_arrow_table()
        con.unregister("raw")
        assert ingestor.index.covered_through  # caught up before the timings, as a sealer
        by_index, by_scan = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            keys = accepted.column("id_key").to_numpy()
            fast = ingestor._landing_status(accepted, keys)
            by_index.append(time.perf_counter() - t)
            t = time.perf_counter()
            slow = scan(ingestor, accepted)
            by_scan.append(time.perf_counter() - t)
        assert fast.to_pylist() == slow.to_pylist(), "the index and the scan disagree"
    return min(by_index), min(by_scan)


def scan(ingestor: Ingestor, accepted) -> object:
    """The check before the index: ``events_already_landed`` over every landed part."""
    con = ingestor.con
    con.register("batch", accepted.select(["_row", "event_id", "content_hash"]))
    con.read_parquet([str(p) for p in ingestor.zone.event_parts()],
                     union_by_name=True).create_view("landed", replace=True)
    out = sql.query(con, "events_already_landed").to_arrow_table().column("landing_status")
    con.unregister("batch")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000, help="landing zone size at the end")
    ap.add_argument("--step", type=int, default=2_000_000, help="events landed between checks")
    ap.add_argument("--chunk", type=int, default=1_000_000, help="events per bulk chunk")
    ap.add_argument("--batch", type=int, default=500, help="events per seal-sized batch")
    ap.add_argument("--repeat-share", type=float, default=0.05,
                    help="share of the batch that repeats landed event ids")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    m = machine()
    print(f"CPU: {m['cpu']} ({m['isa']}, amx={m['amx']}), {os.cpu_count()} cores")
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="recsys-dedup-"))
    paths = Paths(root=root, tracking_home=root)
    indexing: list[float] = []
    real_add = EventIndex.add

    def timed_add(self, seq, keys):
        t = time.perf_counter()
        real_add(self, seq, keys)
        indexing.append(time.perf_counter() - t)

    EventIndex.add = timed_add
    try:
        landed, bulk_s = 0, 0.0
        n_old = int(args.batch * args.repeat_share)
        print(f"\nduplicate check of {args.batch} events, best of {args.repeats}, one DuckDB "
              f"thread (as the service's sealer), by the index against the scan; and a whole seal")
        print(f"  new: no id landed before (most seals); retry: {n_old} ids of the last seal "
              f"sent again; scattered: {n_old} ids from anywhere in the zone (the worst case)")
        print(f"{'landed events':>14} {'scan':>9} {'new':>16} {'retry':>16} {'scattered':>16} "
              f"{'whole seal':>11} {'index MB':>9}")
        print("  (the whole seal: ingest_frame on all cores, validation to index)")
        while landed < args.events:
            target = min(args.events, landed + args.step)
            while landed < target:
                n = min(args.chunk, target - landed)
                t = time.perf_counter()
                ingest_frame(frame(rng, landed, n), f"bulk{landed}", data_paths=paths,
                             chunk_rows=args.chunk)
                bulk_s += time.perf_counter() - t
                landed += n
            t = time.perf_counter()
            sealed = np.arange(2 * 10**12 + landed, 2 * 10**12 + landed + args.batch)
            ingest_frame(ids_frame(rng, sealed), f"seal{landed}", data_paths=paths)
            seal = time.perf_counter() - t
            fresh = frame(rng, 10**12 + landed, args.batch - n_old)
            kinds = {"new": frame(rng, 10**12 + landed, args.batch),
                     "retry": pd.concat([fresh, ids_frame(rng, sealed[:n_old])]),
                     "scattered": pd.concat([fresh, ids_frame(
                         rng, rng.choice(landed, n_old, replace=False))])}
            timed = {k: check_both_ways(paths, b, args.repeats) for k, b in kinds.items()}
            slow = min(s for _, s in timed.values())
            cells = " ".join(f"{f * 1e3:>6.1f}ms {slow / f:>6.1f}x" for f, _ in timed.values())
            size = (root / "landing" / "event_ids.sqlite").stat().st_size / 1e6
            print(f"{landed:>14,} {slow * 1e3:>7.1f}ms {cells} {seal * 1e3:>9.1f}ms "
                  f"{size:>9.1f}", flush=True)
        print(f"\nbulk ingestion of {landed:,} events in chunks of {args.chunk:,}: {bulk_s:.1f} s "
              f"({landed / bulk_s:,.0f} events/s), of which indexing {sum(indexing):.1f} s "
              f"({sum(indexing) / bulk_s:.0%})")
        (root / "landing" / "event_ids.sqlite").unlink()
        zone = LandingZone(paths)
        with zone.writer(), sql.connect() as con:
            t = time.perf_counter()
            EventIndex.open(zone, con).close()
            rebuild = time.perf_counter() - t
        print(f"rebuilding the index from the {len(zone.event_parts())} parts (as after the "
              f"upgrade, or after deleting a damaged index): {rebuild:.1f} s")
    finally:
        EventIndex.add = real_add
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
