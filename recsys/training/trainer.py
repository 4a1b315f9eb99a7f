"""Build the Lightning Trainer: device, precision, callbacks, and what a run measures."""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint

from recsys import console
from recsys.config import ModelConfig, TrainConfig
from recsys.precision import Probe
from recsys.training.precision import TrainShape, probe_training

MONITOR = "val/ndcg_at_10"


def _on_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(precision: str, accelerator: str, shape: TrainShape | None = None) -> str:
    """Resolve ``auto``: bf16 mixed precision on CUDA; on a CPU, whichever measured faster.

    CPU flags cannot tell: bf16 autocast ran at 1.6x fp32 on an AMD EPYC with AVX-512 BF16
    and no AMX, and at 0.08-0.15x on AVX2-only CPUs. So the first ``auto`` on a machine times
    a few steps of ``shape`` (the model being trained; default ``ModelConfig()`` over 2,048
    items) in both precisions, caches the figures (``recsys.precision``), and picks bf16 only
    where it ran at least ``recsys.precision.MIN_SPEEDUP`` times as fast as fp32.
    """
    if precision != "auto":
        return precision
    if _on_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if probe(shape).bf16 else "32-true"


def probe(shape: TrainShape | None = None) -> Probe:
    """The CPU's fp32-against-bf16 figures for ``shape``: cached, else timed now."""
    return probe_training(shape or TrainShape(ModelConfig(), 2048))


def precision_figures(cfg: TrainConfig, shape: TrainShape) -> dict[str, float]:
    """The figures behind ``precision=auto`` on a CPU, for a tracking run; else none.

    Keys: ``precision_probe/fp32_ms``, ``precision_probe/bf16_ms`` (one step's median time)
    and ``precision_probe/bf16_speedup``.
    """
    if cfg.precision != "auto" or _on_cuda(cfg.accelerator):
        return {}
    return probe(shape).figures("precision_probe/")


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


class FitProgress(pl.Callback):
    """One bar for the whole fit, every epoch's steps, in the console's style.

    tqdm, drawn only on a terminal. Its time left averages over the run so far
    (``smoothing=0``), so it counts the validation passes too; early stopping can only make the
    fit shorter.
    """

    def __init__(self):
        self._bar = None

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        from tqdm import tqdm

        per_epoch, total = trainer.num_training_batches, None
        if math.isfinite(per_epoch) and trainer.max_epochs and trainer.max_epochs > 0:
            total = int(per_epoch) * trainer.max_epochs
        if trainer.max_steps and trainer.max_steps > 0:
            total = min(total or trainer.max_steps, trainer.max_steps)
        self._bar = tqdm(total=total, desc="training", unit="step", smoothing=0, disable=None,
                         leave=False, bar_format=console.STEP_FORMAT, file=sys.stderr)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._bar is not None and MONITOR in trainer.callback_metrics:
            self._bar.set_postfix_str(
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, val NDCG@10 "
                f"{float(trainer.callback_metrics[MONITOR]):.4f}")

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()


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
                  extra_callbacks: list | None = None,
                  shape: TrainShape | None = None) -> tuple[pl.Trainer, TrainingHistory,
                                                            ModelCheckpoint]:
    """The Trainer for ``cfg``, its history callback and its best-checkpoint callback.

    ``shape`` (``TrainShape.of(net)``): what ``precision=auto`` times on a CPU.
    """
    history = TrainingHistory()
    averaging = [EMAWeightAveraging(decay=cfg.ema_decay)] if cfg.ema_decay else []
    # The averaging callback puts the averaged weights (the ones validated) into the checkpoint's
    # state_dict only in a full checkpoint: a weights-only one would hold the raw weights.
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, monitor=MONITOR, mode="max",
                                 save_top_k=1, save_weights_only=not averaging, filename="best")
    callbacks = [history, checkpoint,
                 EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.patience),
                 *averaging, *([FitProgress()] if cfg.progress_bar else []),
                 *(extra_callbacks or [])]
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
        precision=resolve_precision(cfg.precision, cfg.accelerator, shape),
        max_epochs=cfg.max_epochs, logger=logger if logger is not None else False,
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        # Our batch sampler shards batches per rank itself (equal counts on every rank).
        use_distributed_sampler=False, num_sanity_val_steps=0, log_every_n_steps=10,
        default_root_dir=str(checkpoint_dir),
        deterministic="warn" if cfg.deterministic else False,
    )
    return trainer, history, checkpoint
