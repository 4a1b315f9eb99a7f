"""A bounded fine-tune: one pass over new sequences mixed with replayed ones.

A plain loop rather than a Lightning Trainer: a micro-batch is a few dozen steps on one
device, where the Trainer's set-up would cost a large share of the update's time budget. The
loss is the LightningModule's own, so both paths optimise exactly the same objective.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from recsys import console
from recsys.config import TrainConfig, UpdateConfig
from recsys.data.containers import trim
from recsys.data.datamodule import BucketBatchSampler
from recsys.data.microbatch import FineTuneData
from recsys.faults import crash_point
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec
from recsys.training.precision import TrainShape
from recsys.training.trainer import resolve_precision


@dataclass
class FineTuneReport:
    steps: int
    positions: int
    seconds: float
    first_loss: float
    last_loss: float
    finite: bool
    share: float = 1.0  # of the sequences (new and replayed), trained on in at least one step
    out_of_time: bool = False  # stopped by UpdateConfig.time_budget_s
    bf16: bool = False

    def as_dict(self) -> dict[str, float]:
        return {"finetune_steps": self.steps, "finetune_positions": self.positions,
                "finetune_seconds": self.seconds, "finetune_first_loss": self.first_loss,
                "finetune_last_loss": self.last_loss, "finetune_share": self.share,
                "finetune_out_of_time": float(self.out_of_time),
                "finetune_bf16": float(self.bf16)}


def device_for(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _passes(sampler: BucketBatchSampler, epochs: int):
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        yield from sampler


@contextmanager
def _repeatable(seed: int, deterministic: bool, device: torch.device):
    """Seeded dropout and (optionally) deterministic kernels, for this fine-tune only.

    The update runs inside long-lived processes (a Prefect worker, a test session), so the
    caller's random state and determinism flag are restored afterwards.
    """
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was, warn_only=was_warn)


def fine_tune(net: SeqRec, data: FineTuneData, cfg: UpdateConfig,
              item_counts: torch.Tensor | None = None,
              weight_decay: float = 0.0) -> FineTuneReport:
    """Train ``net`` in place on every sequence of ``data``, in at most ``max_steps``.

    The batch grows when one pass would need more steps, so no new event is left out; further
    passes (``epochs``) run while steps remain. Training also stops once ``time_budget_s`` is
    spent (after at least one step): the report then says which share of the sequences was
    trained on, and the rest waits for a later model. ``weight_decay``: the lineage's (the full
    retrain's ``TrainConfig.weight_decay``, kept in the model folder), so a fine-tune
    optimises the objective its parent was trained with.
    """
    device = device_for(cfg.accelerator)
    train_cfg = TrainConfig(lr=cfg.lr, weight_decay=weight_decay)
    with _repeatable(cfg.seed, cfg.deterministic, device):
        return _fine_tune(net, data, cfg, train_cfg, item_counts, device)


def _fine_tune(net: SeqRec, data: FineTuneData, cfg: UpdateConfig, train_cfg: TrainConfig,
               item_counts: torch.Tensor | None, device: torch.device) -> FineTuneReport:
    t0 = time.perf_counter()
    precision = resolve_precision(cfg.precision, cfg.accelerator, TrainShape.of(net))
    bf16 = precision.startswith("bf16")
    module = SeqRecModule(net, net.cfg, train_cfg, item_counts).to(device).train()
    optimiser = module.make_optimizer()
    batch_size = max(cfg.batch_size, math.ceil(len(data) / cfg.max_steps)) if len(data) else 1
    lengths = (data.items > 0).sum(1).numpy()
    sampler = BucketBatchSampler(lengths, batch_size, cfg.seed, window=cfg.bucket_window)
    losses: list[float] = []
    positions, finite, out_of_time = 0, True, False
    trained = torch.zeros(len(data), dtype=torch.bool)
    # The console's step bar (drawn only on a terminal): the time left counts the steps still
    # to run, which the time budget may cut short.
    bar = tqdm(total=min(cfg.max_steps, len(sampler) * cfg.epochs), desc="fine-tuning",
               unit="step", smoothing=0, disable=None, leave=False,
               bar_format=console.STEP_FORMAT, file=sys.stderr)
    for index in _passes(sampler, cfg.epochs):
        if len(losses) >= cfg.max_steps:
            break
        if losses and time.perf_counter() - t0 >= cfg.time_budget_s:
            out_of_time = True
            break
        idx = torch.as_tensor(index)
        items, types = trim(data.items[idx], data.types[idx])
        mask = data.mask[idx][:, -items.shape[1]:]
        batch = {"items": items.to(device), "types": types.to(device), "mask": mask.to(device)}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, n = module.loss(batch)
        if n == 0:
            continue
        if not torch.isfinite(loss):
            finite = False
            break
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimiser.step()
        losses.append(loss.item())
        positions += n
        trained[idx] = True
        bar.update(1)
        crash_point("finetune.after_step")
    bar.close()
    net.eval()
    if finite and not all(np.isfinite(losses)):
        finite = False
    return FineTuneReport(len(losses), positions, time.perf_counter() - t0,
                          losses[0] if losses else float("nan"),
                          losses[-1] if losses else float("nan"), finite,
                          float(trained.float().mean()) if len(data) else 1.0, out_of_time, bf16)
