"""Feature-extraction throughput: DuckDB SQL vs a straightforward pandas implementation.

Both start from the same landing zone (Parquet parts written by the real
ingestion path) and produce the same thing: each user's time-ordered sequence
of item indices (last N). Figures are events/s and the DuckDB/pandas ratio,
measured in the same process, best of ``--repeat`` runs.

    .venv/bin/python bench/feature_extraction.py              # 10M events (~2 min set-up)
    .venv/bin/python bench/feature_extraction.py --users 25000  # ~1M events, quick
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from recsys import sql
from recsys.config import FeatureConfig, Paths
from recsys.data.features import build_derived, open_store, refresh_events
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone
from recsys.data.synthetic import generate, preset


def pandas_sequences(parts: list[Path], max_len: int) -> pd.Series:
    """The obvious pandas pipeline: read, index ids, sort, group into lists.

    Like the DuckDB path it trusts ingestion, which lets each event id land once, so neither
    deduplicates again.
    """
    df = pd.concat([pd.read_parquet(p, columns=["user_id", "item_id", "ts", "ingest_seq"])
                    for p in parts], ignore_index=True)
    df["user_idx"] = pd.factorize(df.user_id)[0] + 1
    df["item_idx"] = pd.factorize(df.item_id)[0] + 1
    df = df.sort_values(["user_idx", "ts", "ingest_seq", "item_idx"], kind="stable")
    return df.groupby("user_idx", sort=True).item_idx.agg(lambda s: s.to_numpy()[-max_len:])


def duckdb_features(paths: Paths, cfg: FeatureConfig) -> tuple[float, float, dict[str, float]]:
    """Seconds for (refresh: id maps + events table, sequences), and the refresh's steps."""
    paths.features_db.unlink(missing_ok=True)
    with open_store(paths) as con:
        t0 = time.perf_counter()
        report = refresh_events(con, paths)
        t1 = time.perf_counter()
        sql.run(con, "user_sequences", max_len=cfg.max_seq_len)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, report.timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=250_000, help="synthetic users (40 events each)")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep this data folder")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-features-"))
    paths = Paths(root=root)
    cfg = FeatureConfig(max_seq_len=args.max_len)
    zone = LandingZone(paths)
    if not zone.event_parts():
        t = time.perf_counter()
        data = generate(preset("large", n_users=args.users, n_items=args.items))
        print(f"generated {len(data.events):,} events in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        rep = ingest_frame(data.events, "bench", data_paths=paths)
        dt_ingest = time.perf_counter() - t
        print(f"ingested (validate + land): {rep.accepted:,} events in {dt_ingest:.1f}s "
              f"= {rep.accepted / dt_ingest:,.0f} events/s")
        del data
        gc.collect()
    parts = zone.event_parts()

    best_refresh = best_seq = best_pd = float("inf")
    steps: dict[str, float] = {}
    for _ in range(args.repeat):
        r, s, step_times = duckdb_features(paths, cfg)
        if r < best_refresh:
            steps = step_times
        best_refresh, best_seq = min(best_refresh, r), min(best_seq, s)
        gc.collect()
        t = time.perf_counter()
        seqs = pandas_sequences(parts, args.max_len)
        best_pd = min(best_pd, time.perf_counter() - t)
        n_users = len(seqs)
        del seqs
        gc.collect()

    with open_store(paths) as con:
        n = con.execute("SELECT count(*) FROM events").fetchone()[0]
        t = time.perf_counter()
        build_derived(con, cfg)
        t_derived = time.perf_counter() - t
    duck = best_refresh + best_seq
    print(f"\nevents: {n:,}  users: {n_users:,}  parts: {len(parts)}  max_len: {args.max_len}")
    print(f"{'path':<44}{'seconds':>10}{'events/s':>16}")
    print(f"{'duckdb refresh (id maps, events table)':<44}{best_refresh:>10.2f}"
          f"{n / best_refresh:>16,.0f}")
    for step, sec in steps.items():
        print(f"{'  refresh step: ' + step:<44}{sec:>10.2f}")
    print(f"{'duckdb sequences (from events table)':<44}{best_seq:>10.2f}{n / best_seq:>16,.0f}")
    print(f"{'duckdb total: landing -> sequences':<44}{duck:>10.2f}{n / duck:>16,.0f}")
    print(f"{'pandas total: landing -> sequences':<44}{best_pd:>10.2f}{n / best_pd:>16,.0f}")
    print(f"{'duckdb all derived tables (seq, stats, 2 splits)':<44}{t_derived:>10.2f}"
          f"{n / t_derived:>16,.0f}")
    print(f"\nratio duckdb/pandas (landing -> sequences): {best_pd / duck:.1f}x faster")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
