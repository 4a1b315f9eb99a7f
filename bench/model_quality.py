"""Model quality and training speed on real datasets, against baselines and RecTools' SASRec.

For each dataset: load it into a fresh project folder, build features, fully retrain our model
(leave-last-out, full ranking, early stopping on validation NDCG@10 unless --fixed-epochs) and
print NDCG@10/HR@10 for the model, the popularity and item-CF baselines, epochs and wall time to
the best validation epoch, training throughput and peak memory. With --rectools, RecTools'
SASRecModel (same size: d=64 unless --d-model, 2 blocks, the same --max-len (50 unless given),
full softmax) trains on the same split in its own virtual environment, with the published
SASRec recipe (1 head, dropout 0.1, lr 1e-3; --rectools-settings ours gives it our heads,
dropout and lr instead), scoring validation NDCG@10 after every epoch the same way and stopping
with the same patience (or after --fixed-epochs). Both curves print side by side against
wall-clock seconds, with the time ours took to reach RecTools' best validation figure as a
share of RecTools' training time, and the machine's CPU. --max-users samples whole users
where RecTools is too slow for all.

    .venv/bin/python bench/model_quality.py --dataset ml-100k --max-len 200 --rectools
    .venv/bin/python bench/model_quality.py --dataset ml-100k --fixed-epochs 50 --rectools
    .venv/bin/python bench/model_quality.py --dataset beauty --fixed-epochs 8 --rectools
    .venv/bin/python bench/model_quality.py --preset beauty-sasrec   # the published comparison

A preset only sets defaults: flags given with it still win (``--preset beauty-sasrec
--precision auto`` runs the Beauty settings in bf16).

The RecTools environment is created on first use (bench/.venv-rectools; needs the package index).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from recsys import threads

# OpenMP reads its wait policy when torch loads. Spinning threads of this process, idle while
# RecTools trains in its child process, took ~90% of a core from it on 2 cores: passive waits
# (the CLI's policy), inherited by the child too.
os.environ.update({k: v for k, v in threads.launcher_env().items() if k not in os.environ})

import numpy as np
import pandas as pd

from recsys import metrics as M
from recsys import precision, sql
from recsys.config import (
    BlockLayout,
    EvalConfig,
    FeatureConfig,
    LrSchedule,
    ModelConfig,
    Paths,
    TrackingConfig,
    TrainConfig,
)
from recsys.data.features import build_features, read_store
from recsys.data.ingest import ingest_frame
from recsys.data.loaders import load
from recsys.training.full_retrain import MODEL_NAME, train

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DATASETS = {"ml-100k": (DATA / "ml-100k" / "u.data", "ml100k"),
            "beauty": (DATA / "amazon-beauty" / "Beauty.txt", "sasrec")}
RECTOOLS_VENV = ROOT / "bench" / ".venv-rectools"
# Full-softmax SASRec as published (Klenitskiy & Vasilev, RecSys 2023): RecTools' settings with
# --rectools-settings published, so that it is a fixed yardstick while ours is tuned.
PUBLISHED = {"heads": 1, "dropout": 0.1, "lr": 1e-3}
# Named settings for published comparisons. beauty-sasrec: the settings that reach the authors'
# SASRec+ figure on Beauty (docs/benchmarks.md, "Beauty against the published figure"): their
# code's init, lr, heads and fp32, the SASRec paper's dropout for sparse data, plain random
# batches, seen items excluded as in their protocol.
PRESETS = {
    "beauty-sasrec": dict(dataset="beauty", exclude_seen=True, init_std=0.02, lr=1e-3, heads=1,
                          dropout=0.5, precision="32", bucket_window=1, max_epochs=40,
                          patience=3),
}


def ensure_rectools_venv() -> Path:
    py = RECTOOLS_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(RECTOOLS_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "rectools[torch]==0.19.0",
                        "pyarrow>=15,<19"], check=True)
    return py


def prepare(name: str, home: Path, max_users: int = 0) -> Paths:
    """Ingest the dataset (or a seeded sample of ``max_users`` of its users) and build features.

    The sample keeps whole users, so sequences and the leave-last-out split keep their meaning;
    it exists so that RecTools, ~40 minutes an epoch on all of Beauty here, can be compared
    at equal epochs on the same kind of data.
    """
    path, fmt = DATASETS[name]
    paths = Paths(root=home / "data", tracking_home=home)
    t = time.perf_counter()
    events = load(path, fmt).events
    if max_users:
        users = events["user_id"].drop_duplicates()
        keep = users.sample(min(max_users, len(users)), random_state=0)
        events = events[events["user_id"].isin(keep)]
    ingest_frame(events, name, data_paths=paths)
    build_features(paths, FeatureConfig(text_encoder="none"))
    sample = f" (sample of {events['user_id'].nunique():,} users)" if max_users else ""
    print(f"[{name}] {len(events):,} events{sample} ingested and featurised in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    return paths


def export_split(paths: Paths, folder: Path) -> pd.DataFrame:
    con = read_store(paths)
    try:
        for split in ("train", "valid", "test"):
            rows = sql.query(con, "split_rows", protocol="leave_last_out", split=split).df()
            rows.to_parquet(folder / f"{split}.parquet")
    finally:
        con.close()
    return pd.read_parquet(folder / "test.parquet")


def list_metrics(recos: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Ranks of each test target in a top-K list (misses rank beyond K), then our metrics."""
    lists = dict(zip(recos["user_idx"], recos["items"], strict=True))
    ranks = []
    for user, target in zip(test["user_idx"], test["target"], strict=True):
        items = list(lists.get(user, []))
        ranks.append(items.index(target) + 1 if target in items else 10**9)
    r = np.asarray(ranks)
    return {"ndcg@10": M.ndcg(r, 10), "hr@10": M.hit_rate(r, 10), "ndcg@20": M.ndcg(r, 20),
            "hr@20": M.hit_rate(r, 20)}


def cpu_kind() -> str:
    """The CPU's model name and the vector units that decide bf16's speed, for every report."""
    m = precision.machine()
    return (f"{m['cpu']} ({m['isa']}, avx512_bf16={m['avx512_bf16']}, amx={m['amx']}), "
            f"{os.cpu_count()} cores, torch {m['torch']}")


def first_reaching(curve: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first epoch of ``curve`` whose validation NDCG@10 is at least ``target``.

    >>> first_reaching([{"wall_s": 1.0, "val_ndcg@10": 0.1}, {"wall_s": 2.0, "val_ndcg@10": 0.3}],
    ...                0.2)
    {'wall_s': 2.0, 'val_ndcg@10': 0.3}
    """
    return next((row for row in curve if row.get("val_ndcg@10", -1.0) >= target), None)


def print_curves(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> None:
    """Validation NDCG@10 by epoch against wall-clock seconds since fit start, side by side."""
    print(f"{'epoch':>5} | {'ours s':>8} {'NDCG@10':>8} | {'RecTools s':>10} {'NDCG@10':>8}")
    for i in range(max(len(ours), len(theirs))):
        a = (f"{ours[i]['wall_s']:>8.1f} {ours[i]['val_ndcg@10']:>8.4f}" if i < len(ours)
             else " " * 17)
        b = (f"{theirs[i]['wall_s']:>10.1f} {theirs[i]['val_ndcg@10']:>8.4f}" if i < len(theirs)
             else "")
        print(f"{i + 1:>5} | {a} | {b}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    ap.add_argument("--fixed-epochs", type=int, default=0,
                    help="Train exactly this many epochs (no early stopping); 0 = early stopping.")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--precision", default="auto", help="Our model's precision (auto = bf16 here).")
    ap.add_argument("--rectools", action="store_true", help="Also train RecTools' SASRecModel.")
    ap.add_argument("--rectools-settings", choices=["published", "ours"], default="published",
                    help="RecTools' heads, dropout and lr: the published recipe (1, 0.1, 1e-3) "
                         "or the same as ours.")
    ap.add_argument("--max-len", type=int, default=50,
                    help="Most recent items each model reads (both ours and RecTools').")
    ap.add_argument("--d-model", type=int, default=64, help="Embedding size (SASRec's is 64).")
    ap.add_argument("--blocks", type=int, default=None,
                    help="Our Transformer blocks (default: recsys train's rule, "
                         "recsys/training/sizing.py: 3 beyond 50 items, else 2). RecTools gets "
                         "this or SASRec's 2.")
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--attention-dropout", type=float, default=None,
                    help="Dropout on our attention weights (default: recsys train's rule, "
                         "recsys/training/sizing.py: 0 beyond 50 items, else --dropout); 0 "
                         "trains with the fused attention kernel.")
    ap.add_argument("--block-layout", choices=list(BlockLayout), default="pre_norm",
                    help="Our blocks: pre_norm (the default) or sasrec (SASRec's reference "
                         "layout, ReLU feed-forward).")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=128,
                    help="Sequences per optimizer step, for both models (SASRec's is 128).")
    ap.add_argument("--lr-schedule", choices=list(LrSchedule), default="constant",
                    help="constant, or cosine decay per step to 0 at --max-epochs.")
    ap.add_argument("--weight-decay", type=float, default=0.0,
                    help="AdamW weight decay on weight matrices and embeddings.")
    ap.add_argument("--label-smoothing", type=float, default=0.0,
                    help="Share of the softmax target spread over all items.")
    ap.add_argument("--ema-decay", type=float, default=0.0,
                    help="Validate and test an exponential moving average of the weights "
                         "(decay per step, e.g. 0.999); 0 = the raw weights.")
    ap.add_argument("--seed", type=int, default=TrainConfig.model_fields["seed"].default,
                    help="Training seed (init, batches, dropout), to measure the spread "
                         "between runs of the same settings.")
    ap.add_argument("--init-std", type=float, default=0.02,
                    help="Initial weight std (0.02 as in SASRec's code); 0 = PyTorch's defaults.")
    ap.add_argument("--bucket-window", type=int, default=1,
                    help="Length-bucketing window in batches; 1 = plain random batches.")
    ap.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=False,
                    help="Remove seen items from rankings (the protocol of the SASRec+ paper).")
    ap.add_argument("--max-users", type=int, default=0,
                    help="Keep a seeded random sample of this many users (0 = all), e.g. to "
                         "compare with RecTools at equal epochs where its full run is too slow.")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="Run each dataset in DIR/<dataset> (created; must not exist yet) and "
                         "keep it: its MLflow store (mlruns/, mlflow.db) holds the run's curves "
                         "and per-epoch metrics. Default: a temporary folder, deleted at the end.")
    ap.add_argument("--preset", choices=sorted(PRESETS),
                    help="Named settings (defaults only: explicit flags override them).")
    preset = ap.parse_known_args(argv)[0].preset
    if preset:
        ap.set_defaults(**PRESETS[preset])
    return ap.parse_args(argv)


@contextlib.contextmanager
def run_folder(keep: Path | None, name: str) -> Iterator[Path]:
    """A temporary folder for one dataset's run, or ``keep/name`` kept for inspection."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            yield Path(tmp)
        return
    home = keep / name
    home.mkdir(parents=True, exist_ok=False)
    yield home
    print(f"[{name}] run kept in {home} (MLflow: sqlite:///{home / 'mlflow.db'})", flush=True)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)

    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    print(f"CPU: {cpu_kind()}", flush=True)
    for name in names:
        if not DATASETS[name][0].exists():
            print(f"[{name}] skipped: {DATASETS[name][0]} not found (see ../shared/data/README.md)")
            continue
        with run_folder(args.keep, name) as home:
            paths = prepare(name, home, args.max_users)
            epochs = args.fixed_epochs or args.max_epochs
            patience = epochs if args.fixed_epochs else args.patience
            model_cfg = ModelConfig(d_model=args.d_model, n_heads=args.heads,
                                    max_len=args.max_len, dropout=args.dropout,
                                    init_std=args.init_std or None, use_text=False,
                                    use_event_types=False,
                                    label_smoothing=args.label_smoothing,
                                    block_layout=args.block_layout,
                                    **({} if args.blocks is None else {"n_blocks": args.blocks}),
                                    **({} if args.attention_dropout is None else
                                       {"attention_dropout": args.attention_dropout}))
            train_cfg = TrainConfig(max_epochs=epochs, patience=patience,
                                    batch_size=args.batch_size,
                                    precision=args.precision, progress_bar=False, lr=args.lr,
                                    lr_schedule=args.lr_schedule,
                                    bucket_window=args.bucket_window,
                                    weight_decay=args.weight_decay, ema_decay=args.ema_decay,
                                    seed=args.seed)
            t = time.perf_counter()
            eval_cfg = EvalConfig(exclude_seen=args.exclude_seen)
            # An all-time popularity baseline: these datasets span years, not a week.
            all_time = FeatureConfig(text_encoder="none", popularity_window_days=1e7)
            res = train(paths, model_cfg, train_cfg, eval_cfg, TrackingConfig(register_model=False),
                        feature_cfg=all_time)
            wall = time.perf_counter() - t
            seen = "seen items excluded" if args.exclude_seen else "seen items kept"
            print(f"\n[{name}] full ranking, leave-last-out, {seen}; "
                  f"{res.fingerprint['test_users']:,} test users, "
                  f"{res.fingerprint['items']:,} items")
            print(f"{'model':<22}{'NDCG@10':>9}{'HR@10':>9}{'NDCG@20':>9}{'HR@20':>9}")
            for m, r in res.test.items():
                print(f"{m:<22}{r['ndcg@10']:>9.4f}{r['hr@10']:>9.4f}{r['ndcg@20']:>9.4f}"
                      f"{r['hr@20']:>9.4f}")
            ours = res.test[MODEL_NAME]
            print(f"ours: {len(res.history)} epochs run, best validation epoch {res.best_epoch} "
                  f"reached after {res.time_to_best_s:.1f} s; whole run {wall:.1f} s; "
                  f"{res.positions_per_s:,.0f} target positions/s; peak RSS "
                  f"{res.memory['peak_rss_mb']:.0f} MB", flush=True)
            # Unless --keep, the run's MLflow store goes with its folder: keep the curve in the log.
            curve = [f"{h['val_ndcg@10']:.4f}" for h in res.history if "val_ndcg@10" in h]
            print(f"ours: validation NDCG@10 by epoch: {' '.join(curve)}", flush=True)
            if not args.rectools:
                continue
            py = ensure_rectools_venv()
            folder = home / "rectools"
            folder.mkdir()
            test = export_split(paths, folder)
            rt_set = PUBLISHED if args.rectools_settings == "published" else \
                {"heads": args.heads, "dropout": args.dropout, "lr": args.lr}
            print(f"[{name}] RecTools SASRecModel: {rt_set['heads']} head(s), dropout "
                  f"{rt_set['dropout']}, lr {rt_set['lr']:g}, max length {args.max_len}",
                  flush=True)
            proc = subprocess.run([str(py), str(ROOT / "bench" / "rectools_sasrec.py"),
                                   str(folder), "--epochs", str(epochs),
                                   "--patience", "0" if args.fixed_epochs else str(patience),
                                   "--d-model", str(args.d_model),
                                   "--blocks", str(args.blocks or 2),
                                   "--max-len", str(args.max_len), "--seed", str(args.seed),
                                   "--heads", str(rt_set["heads"]),
                                   "--dropout", str(rt_set["dropout"]),
                                   "--lr", str(rt_set["lr"]), "--batch-size", str(args.batch_size),
                                   *(["--filter-viewed"] if args.exclude_seen else [])],
                                  stderr=subprocess.PIPE, text=True)
            if proc.returncode:
                print(proc.stderr[-3000:])
                raise SystemExit(f"RecTools run failed ({proc.returncode})")
            rt = json.loads((folder / "rectools.json").read_text())
            rm = list_metrics(pd.read_parquet(folder / "recos.parquet"), test)
            print(f"{'rectools SASRecModel':<22}{rm['ndcg@10']:>9.4f}{rm['hr@10']:>9.4f}"
                  f"{rm['ndcg@20']:>9.4f}{rm['hr@20']:>9.4f}")
            print(f"test (RecTools after its last epoch, {rt['epochs']}): ours NDCG@10 "
                  f"{ours['ndcg@10']:.4f} vs RecTools "
                  f"{rm['ndcg@10']:.4f} ({ours['ndcg@10'] / rm['ndcg@10']:.2f}x); throughput "
                  f"{res.positions_per_s:,.0f} vs {rt['positions_per_s']:,.0f} positions/s "
                  f"({res.positions_per_s / rt['positions_per_s']:.2f}x); RecTools fit "
                  f"{rt['fit_s']:.1f} s, peak RSS {rt['peak_rss_mb']:.0f} MB", flush=True)
            ours_curve = [h for h in res.history if "val_ndcg@10" in h]
            print(f"\n[{name}] validation NDCG@10 against training wall clock (s since fit start; "
                  f"ours includes its validation passes, RecTools' leaves them out); CPU: "
                  f"{cpu_kind()}")
            print_curves(ours_curve, rt["curve"])
            rt_best = max(rt["curve"], key=lambda h: h["val_ndcg@10"])
            hit = first_reaching(ours_curve, rt_best["val_ndcg@10"])
            print(f"RecTools: best validation NDCG@10 {rt_best['val_ndcg@10']:.4f} at epoch "
                  f"{rt_best['epoch']} of {rt['epochs']}, {rt_best['wall_s']:.1f} s; training wall "
                  f"time {rt['fit_s']:.1f} s")
            if hit is None:
                print(f"ours did not reach RecTools' best validation NDCG@10 "
                      f"({rt_best['val_ndcg@10']:.4f}); ours' best "
                      f"{max(h['val_ndcg@10'] for h in ours_curve):.4f}", flush=True)
            else:
                print(f"ours reached RecTools' best validation NDCG@10 "
                      f"({rt_best['val_ndcg@10']:.4f}) at epoch {hit['epoch']:.0f}, "
                      f"t = {hit['wall_s']:.1f} s = {100 * hit['wall_s'] / rt['fit_s']:.0f}% of "
                      f"RecTools' wall time ({rt['fit_s']:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
