"""Train RecTools' SASRecModel on a split exported by bench/model_quality.py.

Runs in its own virtual environment (RecTools pins older Lightning/numpy/pandas), so it imports
nothing from this project. Input: a folder with train.parquet (user_idx, history) and
test.parquet (user_idx, history, target), and optionally valid.parquet (the same columns).
Output in the same folder: recos.parquet (user_idx, items: top-K list) and rectools.json
(timings and, with valid.parquet, the validation curve).

With valid.parquet, a Lightning callback scores validation NDCG@10 after every epoch the way
the project's evaluator does (full ranking of every item RecTools knows, one target per user,
users it cannot score count as misses) and, with --patience, stops after that many epochs
without a better figure. Each epoch's time is the training wall clock since fit start with the
validation passes left out, so RecTools is timed as it would train without them.

    bench/.venv-rectools/bin/python bench/rectools_sasrec.py FOLDER --epochs 8
    bench/.venv-rectools/bin/python bench/rectools_sasrec.py FOLDER --epochs 200 --patience 5 \\
        --max-len 200
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
from pytorch_lightning import Callback, Trainer
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


def ndcg_at_10(recos: pd.DataFrame, rows: pd.DataFrame) -> float:
    """Mean of 1/log2(rank + 1) over ``rows``' targets ranked in the top 10, else 0."""
    rank = {(u, i): r for u, i, r in zip(recos[Columns.User], recos[Columns.Item],
                                          recos[Columns.Rank], strict=True)}
    gains = [1.0 / np.log2(rank[(u, t)] + 1) if rank.get((u, t), 11) <= 10 else 0.0
             for u, t in zip(rows["user_idx"], rows["target"], strict=True)]
    return float(np.mean(gains)) if gains else float("nan")


class ValidationCurve(Callback):
    """Validation NDCG@10 after each epoch, against training wall clock; early stopping.

    ``model.recommend`` refuses an unfitted model, so the flag is raised for the pass only; the
    Lightning module is put back in training mode afterwards.
    """

    def __init__(self, valid: pd.DataFrame, patience: int, filter_viewed: bool):
        self.model: SASRecModel | None = None  # set once the model exists (it makes the Trainer)
        self.valid, self.patience = valid, patience
        self.dataset = Dataset.construct(interactions(valid))
        self.filter_viewed = filter_viewed
        self.curve: list[dict[str, float]] = []
        self._t0 = 0.0
        self._eval_s = 0.0

    def __deepcopy__(self, memo: dict) -> ValidationCurve:
        # RecTools fits a deep copy of the Trainer it was given: keep this one, which holds the
        # curve and the model (a copy would hold a copy of the model, not the one training).
        return self

    def on_fit_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        t = time.perf_counter()
        wall = t - self._t0 - self._eval_s
        self.model.is_fitted = True
        try:
            recos = self.model.recommend(users=self.valid["user_idx"].to_numpy(),
                                         dataset=self.dataset, k=10,
                                         filter_viewed=self.filter_viewed)
        finally:
            self.model.is_fitted = False
            pl_module.train()
        ndcg = ndcg_at_10(recos, self.valid)
        self.curve.append({"epoch": trainer.current_epoch + 1, "wall_s": wall,
                           "val_ndcg@10": ndcg})
        self._eval_s += time.perf_counter() - t
        best = max(range(len(self.curve)), key=lambda i: self.curve[i]["val_ndcg@10"])
        print(f"rectools epoch {len(self.curve)}: {wall:.1f} s, validation NDCG@10 {ndcg:.4f}",
              flush=True)
        if self.patience and len(self.curve) - 1 - best >= self.patience:
            trainer.should_stop = True


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
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--patience", type=int, default=0,
                    help="With valid.parquet: stop after this many epochs without a better "
                         "validation NDCG@10 (0 = run every epoch).")
    ap.add_argument("--filter-viewed", action="store_true", help="Drop seen items from lists.")
    ap.add_argument("--limit-batches", type=int, default=0,
                    help="Throughput only: stop each epoch after this many batches (0 = full).")
    args = ap.parse_args()

    train = pd.read_parquet(args.folder / "train.parquet")
    test = pd.read_parquet(args.folder / "test.parquet")
    valid_path = args.folder / "valid.parquet"
    valid = pd.read_parquet(valid_path) if valid_path.exists() else None
    torch.manual_seed(args.seed)
    curve = None
    if valid is not None and not args.limit_batches:
        curve = ValidationCurve(valid, args.patience, args.filter_viewed)
    callbacks: list[Callback] = [curve] if curve else []

    def trainer_factory() -> Trainer:
        return Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False,
                       enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, callbacks=callbacks,
                       limit_train_batches=args.limit_batches or None)

    model = SASRecModel(
        n_blocks=args.blocks, n_heads=args.heads, n_factors=args.d_model,
        dropout_rate=args.dropout, session_max_len=args.max_len, loss="softmax",
        lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        item_net_block_types=(IdEmbeddingsItemNet,), get_trainer_func=trainer_factory,
        recommend_torch_device="cpu",
    )
    if curve:
        curve.model = model
    train_df = interactions(train)
    t0 = time.perf_counter()
    model.fit(Dataset.construct(train_df))
    fit_s = time.perf_counter() - t0
    epochs = len(curve.curve) if curve else args.epochs
    if curve:  # the training time alone, as RecTools would run it without our validation
        fit_s = curve.curve[-1]["wall_s"]

    lengths = train["history"].map(len).to_numpy()
    # Target positions per epoch, counted as SASRec trains them: last max_len + 1 items.
    positions = int(np.clip(np.minimum(lengths, args.max_len + 1) - 1, 0, None)[lengths >= 2].sum())
    n_batches = int(np.ceil((lengths >= 2).sum() / args.batch_size))
    if args.limit_batches:
        positions = positions * min(args.limit_batches, n_batches) / n_batches
        (args.folder / "rectools.json").write_text(json.dumps({
            "fit_s": fit_s, "epochs": epochs, "limit_batches": args.limit_batches,
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
        "fit_s": fit_s, "recommend_s": rec_s, "epochs": epochs,
        "positions_per_epoch": positions, "positions_per_s": positions * epochs / fit_s,
        "peak_rss_mb": peak_rss_mb(), "curve": curve.curve if curve else [],
    }))


if __name__ == "__main__":
    main()
