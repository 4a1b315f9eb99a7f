"""Freshness on real data: a prequential replay of MovieLens-100K (real timestamps).

The first half of the events (by time) trains the static model; the rest is replayed in
windows. Every window is scored first by the static model, the micro-batch-updated champion
and a model fully retrained every few windows, then learnt by the latter two. Prints the
per-window table, the means over all and over the later half of the windows, the ratios
against the static model (the baseline, same process) and the mean freshness lag.

    .venv/bin/python bench/freshness.py                    # ml-100k, 10 windows
    .venv/bin/python bench/freshness.py --update-epochs 3 --update-steps 100  # docs/benchmarks.md
    .venv/bin/python bench/freshness.py --gate-z 0     # the gate on point estimates only
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from recsys.config import (
    BacktestConfig,
    GateConfig,
    ModelConfig,
    Paths,
    TrainConfig,
    UpdateConfig,
)
from recsys.data.loaders import load
from recsys.training.backtest import backtest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def gate_noise(log: Path) -> None:
    """How noisy the gate's holdout comparison was: the paired standard error per update."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    rel = [r["figures"]["holdout.drop_se"] / r["figures"]["holdout.champion.ndcg@10"]
           for r in records if r["figures"].get("holdout.drop_se")
           and r["figures"].get("holdout.champion.ndcg@10")]
    decisions = [r["status"] for r in records]
    print(f"gate: {decisions.count('promoted')} promoted, {decisions.count('rejected')} "
          f"rejected; paired standard error of the holdout NDCG@10 difference: median "
          f"{statistics.median(rel):.0%} of the champion's NDCG@10" if rel else "gate: no SE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "ml-100k" / "u.data")
    parser.add_argument("--format", default="ml100k")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--initial-fraction", type=float, default=0.5)
    parser.add_argument("--full-every", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--update-steps", type=int, default=40)
    parser.add_argument("--update-epochs", type=int, default=1)
    parser.add_argument("--update-lr", type=float, default=1e-3)
    parser.add_argument("--update-bucket-window", type=int, default=UpdateConfig().bucket_window,
                        help="fine-tune batches: 1 = random, 50 = grouped by length")
    parser.add_argument("--gate-z", type=float, default=GateConfig().z,
                        help="standard errors a drop must exceed to block (0: point estimates)")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: see ../shared/data/README.md")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("recsys.training.backtest").setLevel(logging.INFO)
    loaded = load(args.data, args.format)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as tmp:
        result = backtest(
            loaded.events, loaded.items, Path(tmp) / "replay",
            BacktestConfig(windows=args.windows, initial_fraction=args.initial_fraction,
                           full_every=args.full_every),
            ModelConfig(),
            TrainConfig(max_epochs=args.epochs, patience=3, progress_bar=False),
            UpdateConfig(max_steps=args.update_steps, epochs=args.update_epochs,
                         lr=args.update_lr, bucket_window=args.update_bucket_window),
            GateConfig(z=args.gate_z),
            report_paths=Paths(root=Path(tmp) / "report", tracking_home=Path(tmp) / "report"))
        print(result.table())
        gate_noise(Path(tmp) / "replay" / "data" / "updates.jsonl")
    base_all = result.mean("static", "ndcg@10")
    base_late = result.mean("static", "ndcg@10", later_half=True)
    for m in ("micro", "full"):
        print(f"{m} / static NDCG@10: {result.mean(m, 'ndcg@10') / base_all:.2f}x over all "
              f"windows, {result.mean(m, 'ndcg@10', True) / base_late:.2f}x over the later half")
    print(f"{args.data.name}: {len(loaded.events):,} events, {args.windows} windows, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
