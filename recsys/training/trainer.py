"""Build the Lightning Trainer: device, precision, callbacks, and what a run measures."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint

from recsys.config import TrainConfig

MONITOR = "val/ndcg_at_10"


def resolve_precision(precision: str, accelerator: str) -> str:
    """Resolve ``auto``: bf16 mixed precision on CUDA and on CPUs with AMX tiles, else fp32.

    ``bench/train_step.py`` measured bf16 autocast faster than fp32 only on a CPU with AMX.
    AVX-512 BF16 alone is not enough: with oneDNN held to it on an AMX Xeon
    (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``), bf16 ran at 0.86-0.93x fp32's speed, and on
    AVX2-only CPUs (emulated bf16) at 0.08-0.15x.
    """
    if precision != "auto":
        return precision
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if torch.cpu._is_amx_tile_supported():
        return "bf16-mixed"
    return "32-true"


class TrainingHistory(pl.Callback):
    """Per-epoch figures and the throughput of the optimisation itself (target positions/s)."""

    def __init__(self):
        self.history: list[dict[str, float]] = []
        self.positions = 0
        self._t_fit = 0.0
        self._t_epoch: float | None = None
        self.epoch_seconds = 0.0  # training part of each epoch, wall clock, validation excluded

    def on_fit_start(self, trainer, pl_module) -> None:
        self._t_fit = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t_epoch = time.perf_counter()

    def _close_epoch(self) -> None:
        if self._t_epoch is not None:
            self.epoch_seconds += time.perf_counter() - self._t_epoch
            self._t_epoch = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._close_epoch()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.positions += int((batch["items"][:, :-1] > 0).sum())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close_epoch()
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1,
               "wall_s": time.perf_counter() - self._t_fit,
               "train_loss": float(m.get("train/loss_epoch", float("nan"))),
               "lr": float(trainer.optimizers[0].param_groups[0]["lr"])}
        for key in ("ndcg_at_10", "hr_at_10", "ndcg_at_20", "hr_at_20"):
            if f"val/{key}" in m:
                row[f"val_{key.replace('_at_', '@')}"] = float(m[f"val/{key}"])
        self.history.append(row)

    @property
    def positions_per_s(self) -> float:
        """Target positions per second of training wall time (data loading included)."""
        return self.positions / self.epoch_seconds if self.epoch_seconds else float("nan")

    def best(self) -> dict[str, float]:
        scored = [h for h in self.history if "val_ndcg@10" in h]
        return max(scored, key=lambda h: h["val_ndcg@10"]) if scored else {}


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (and of CUDA when used), in MiB."""
    try:  # VmHWM, unlike ru_maxrss, is not inherited from a parent process across exec
        status = Path("/proc/self/status").read_text().splitlines()
        rss = next(int(x.split()[1]) / 1024 for x in status if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"peak_rss_mb": rss}
    if torch.cuda.is_available():
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def build_trainer(cfg: TrainConfig, checkpoint_dir: Path, logger=None,
                  extra_callbacks: list | None = None) -> tuple[pl.Trainer, TrainingHistory,
                                                               ModelCheckpoint]:
    history = TrainingHistory()
    averaging = [EMAWeightAveraging(decay=cfg.ema_decay)] if cfg.ema_decay else []
    # The averaging callback puts the averaged weights (the ones validated) into the checkpoint's
    # state_dict only in a full checkpoint: a weights-only one would hold the raw weights.
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, monitor=MONITOR, mode="max",
                                 save_top_k=1, save_weights_only=not averaging, filename="best")
    callbacks = [history, checkpoint,
                 EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.patience),
                 *averaging, *(extra_callbacks or [])]
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        max_epochs=cfg.max_epochs, logger=logger if logger is not None else False,
        callbacks=callbacks, enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        # Our batch sampler shards batches per rank itself (equal counts on every rank).
        use_distributed_sampler=False, num_sanity_val_steps=0, log_every_n_steps=10,
        default_root_dir=str(checkpoint_dir),
        deterministic="warn" if cfg.deterministic else False,
    )
    return trainer, history, checkpoint
