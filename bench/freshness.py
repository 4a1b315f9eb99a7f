"""Freshness on real data: a prequential replay of MovieLens-100K (real timestamps).

The first half of the events (by time) trains the static model; the rest is replayed in
windows. Every window is scored first by the static model, the micro-batch-updated champion
and a model fully retrained every few windows, then learnt by the latter two. Prints the
per-window table, the means over all and over the later half of the windows, the ratios
against the static model (the baseline, same process) and the mean freshness lag.

    .venv/bin/python bench/freshness.py                    # ml-100k, 10 windows
    .venv/bin/python bench/freshness.py --windows 6 --epochs 10
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from recsys.config import BacktestConfig, ModelConfig, Paths, TrainConfig, UpdateConfig
from recsys.data.loaders import load
from recsys.training.backtest import backtest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
                         lr=args.update_lr),
            report_paths=Paths(root=Path(tmp) / "report", tracking_home=Path(tmp) / "report"))
        print(result.table())
    base_all = result.mean("static", "ndcg@10")
    base_late = result.mean("static", "ndcg@10", later_half=True)
    for m in ("micro", "full"):
        print(f"{m} / static NDCG@10: {result.mean(m, 'ndcg@10') / base_all:.2f}x over all "
              f"windows, {result.mean(m, 'ndcg@10', True) / base_late:.2f}x over the later half")
    print(f"{args.data.name}: {len(loaded.events):,} events, {args.windows} windows, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
