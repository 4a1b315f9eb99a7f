"""Train RecTools' SASRecModel on a split exported by bench/model_quality.py.

Runs in its own virtual environment (RecTools pins older Lightning/numpy/pandas), so it imports
nothing from this project. Input: a folder with train.parquet (user_idx, history) and
test.parquet (user_idx, history, target). Output in the same folder: recos.parquet
(user_idx, items: top-K list) and rectools.json (timings).

    bench/.venv-rectools/bin/python bench/rectools_sasrec.py FOLDER --epochs 8
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_lightning import Trainer
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel
from rectools.models.nn.item_net import IdEmbeddingsItemNet


def peak_rss_mb() -> float:
    """VmHWM of this process: unlike ru_maxrss it is not inherited from the parent at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interactions(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item) in sequence order; datetime = position keeps that order."""
    df = rows[["user_idx", "history"]].explode("history").dropna()
    df["pos"] = df.groupby("user_idx").cumcount()
    return pd.DataFrame({
        Columns.User: df["user_idx"].astype(np.int64),
        Columns.Item: df["history"].astype(np.int64),
        Columns.Weight: 1.0,
        Columns.Datetime: pd.Timestamp("2000-01-01") + pd.to_timedelta(df["pos"], unit="s"),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--filter-viewed", action="store_true", help="Drop seen items from lists.")
    ap.add_argument("--limit-batches", type=int, default=0,
                    help="Throughput only: stop each epoch after this many batches (0 = full).")
    args = ap.parse_args()

    train = pd.read_parquet(args.folder / "train.parquet")
    test = pd.read_parquet(args.folder / "test.parquet")
    torch.manual_seed(42)

    def trainer_factory() -> Trainer:
        return Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False,
                       enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False,
                       limit_train_batches=args.limit_batches or None)

    model = SASRecModel(
        n_blocks=args.blocks, n_heads=args.heads, n_factors=args.d_model,
        dropout_rate=args.dropout, session_max_len=args.max_len, loss="softmax",
        lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        item_net_block_types=(IdEmbeddingsItemNet,), get_trainer_func=trainer_factory,
        recommend_torch_device="cpu",
    )
    train_df = interactions(train)
    t0 = time.perf_counter()
    model.fit(Dataset.construct(train_df))
    fit_s = time.perf_counter() - t0

    lengths = train["history"].map(len).to_numpy()
    # Target positions per epoch, counted as SASRec trains them: last max_len + 1 items.
    positions = int(np.clip(np.minimum(lengths, args.max_len + 1) - 1, 0, None)[lengths >= 2].sum())
    n_batches = int(np.ceil((lengths >= 2).sum() / args.batch_size))
    if args.limit_batches:
        positions = positions * min(args.limit_batches, n_batches) / n_batches
        (args.folder / "rectools.json").write_text(json.dumps({
            "fit_s": fit_s, "epochs": args.epochs, "limit_batches": args.limit_batches,
            "positions_per_s": positions * args.epochs / fit_s,
            "peak_rss_mb": peak_rss_mb()}))
        return
    # Recommend from the test histories (train items + the validation item) of test users.
    test_df = interactions(test)
    t0 = time.perf_counter()
    recos = model.recommend(users=test["user_idx"].to_numpy(), dataset=Dataset.construct(test_df),
                            k=args.k, filter_viewed=args.filter_viewed)
    rec_s = time.perf_counter() - t0
    lists = recos.sort_values([Columns.User, Columns.Rank]).groupby(Columns.User)[Columns.Item]
    out = lists.apply(list).reset_index().rename(columns={Columns.User: "user_idx",
                                                          Columns.Item: "items"})
    out.to_parquet(args.folder / "recos.parquet")
    (args.folder / "rectools.json").write_text(json.dumps({
        "fit_s": fit_s, "recommend_s": rec_s, "epochs": args.epochs,
        "positions_per_epoch": positions, "positions_per_s": positions * args.epochs / fit_s,
        "peak_rss_mb": peak_rss_mb(),
    }))


if __name__ == "__main__":
    main()
