"""Time one micro-batch update end to end, split into load / extract / eval / train / register.

The setting of the issue: a ~50k-item catalogue (synthetic, with item text) and ~20k new events
in the batch (plus a held-out share). A champion is trained briefly (its quality is not the
point here), the new events land as ingestion parts, and the update runs; the champion is then
rolled back so each variant fine-tunes the very same batch from the very same model. Variants:
the default precision (bf16 autocast where the CPU has it) against fp32, in the same process.

    .venv/bin/python bench/microbatch_update.py            # ~50k items, ~20k new events
    .venv/bin/python bench/microbatch_update.py --items 5000 --new-events 2000   # quick
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from recsys.config import (
    EvalConfig,
    Paths,
    TrackingConfig,
    TrainConfig,
    UpdateConfig,
)
from recsys.data.features import build_features
from recsys.data.ingest import ingest_frame
from recsys.data.synthetic import SyntheticConfig, generate
from recsys.registry.registry import Registry
from recsys.training.full_retrain import train
from recsys.training.update import update

STEPS = ("load", "extract", "eval", "train", "register")


def prepare(home: Path, n_items: int, n_users: int, new_events: int, parts: int) -> Paths:
    paths = Paths(root=home / "home", tracking_home=home / "tracking")
    t0 = time.perf_counter()
    data = generate(SyntheticConfig(n_users=n_users, n_items=n_items, mean_events_per_user=30,
                                    seed=1))
    events = data.events.sort_values("ts", kind="stable", ignore_index=True)
    # Held-out share included: the update trains on (1 - holdout_fraction) of what lands.
    landing = int(new_events / (1 - UpdateConfig().holdout_fraction))
    history = events.iloc[:-landing]
    ingest_frame(data.items, "items", kind="items", data_paths=paths)
    ingest_frame(history, "history", data_paths=paths)
    build_features(paths)
    print(f"store: {len(history):,} events, {n_items:,} items, {n_users:,} users "
          f"({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    result = train(paths, train_cfg=TrainConfig(max_epochs=1, max_steps_per_epoch=40,
                                                max_val_users=500, progress_bar=False),
                   eval_cfg=EvalConfig(), tracking_cfg=TrackingConfig())
    print(f"champion: version {result.version} ({result.decision}), brief full retrain "
          f"{time.perf_counter() - t0:.0f} s")
    rest = events.iloc[-landing:]
    for i in range(parts):
        ingest_frame(rest.iloc[i * len(rest) // parts:(i + 1) * len(rest) // parts],
                     f"part{i}", data_paths=paths)
    print(f"landed {len(rest):,} new events in {parts} parts")
    return paths


def run(paths: Paths, cfg: UpdateConfig, label: str) -> dict[str, float]:
    t0 = time.perf_counter()
    result = update(paths, cfg)
    total = time.perf_counter() - t0
    print(f"\n[{label}] {result.summary()}")
    Registry(paths, TrackingConfig()).rollback(f"bench: rerun the batch ({label})")
    return {**{k: result.timings.get(k, 0.0) for k in STEPS}, "total": total,
            "positions": result.figures.get("finetune_positions", 0.0),
            "train_events": result.plan.train_events if result.plan else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--new-events", type=int, default=20_000, help="events trained on")
    parser.add_argument("--parts", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--keep", type=Path, help="keep the store in this folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU threads: {torch.get_num_threads()} (os.cpu_count {os.cpu_count()})")
    home = args.keep or Path(tempfile.mkdtemp(prefix="bench-update-"))
    try:
        paths = prepare(home, args.items, args.users, args.new_events, args.parts)
        results = {
            "default precision": run(paths, UpdateConfig(), "default precision"),
            "fp32": run(paths, UpdateConfig(precision="32-true"), "fp32"),
        }
        print("\n| variant | " + " | ".join(STEPS) + " | total s | positions/s (train) |")
        print("|---" * (len(STEPS) + 3) + "|")
        for label, r in results.items():
            pps = r["positions"] / r["train"] if r["train"] else 0.0
            print(f"| {label} | " + " | ".join(f"{r[k]:.2f}" for k in STEPS)
                  + f" | {r['total']:.2f} | {pps:,.0f} |")
        base = results["fp32"]["total"]
        print(f"\ndefault precision / fp32 total time: "
              f"{results['default precision']['total'] / base:.2f}x; "
              f"{results['default precision']['train_events']:,} events trained")
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
