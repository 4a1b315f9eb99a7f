"""The training-step probe behind ``precision=auto`` on a CPU.

It times optimiser steps of the model being trained (its width, blocks, heads, maximum length,
text dimension and loss) in fp32 and in bf16 autocast; ``recsys.precision`` interleaves,
decides and caches. Two simplifications keep it to about a second: the catalogue is rounded up
to a power of two (so a micro-batch that adds a few items finds the cached verdict) and capped
at ``MAX_PROBE_ITEMS``, and a step holds ``PROBE_POSITIONS`` target positions, not a whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from recsys import precision
from recsys.config import ModelConfig, TrainConfig
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec

MAX_PROBE_ITEMS = 2**15
PROBE_POSITIONS = 256


@dataclass(frozen=True)
class TrainShape:
    """What the probe imitates: the model's settings, its catalogue and its text width."""

    model: ModelConfig
    n_items: int
    text_dim: int = 0

    @classmethod
    def of(cls, net: SeqRec) -> TrainShape:
        return cls(net.cfg, net.n_items, net.items.text.shape[1])

    @property
    def probe_items(self) -> int:
        return min(MAX_PROBE_ITEMS, 2 ** math.ceil(math.log2(max(self.n_items, 2))))

    @property
    def name(self) -> str:
        m, text = self.model, self.text_dim if self.model.use_text else 0
        return (f"train d={m.d_model} blocks={m.n_blocks} heads={m.n_heads} len={m.max_len} "
                f"items={self.probe_items} text={text} loss={m.loss.value}")


def _steps(shape: TrainShape):
    """One fp32 and one bf16 optimiser step of the shape, on a fixed random batch."""
    n, m = shape.probe_items, shape.model
    gen = torch.Generator().manual_seed(0)
    text = torch.randn(n + 1, shape.text_dim, generator=gen) if shape.text_dim else None
    module = SeqRecModule(SeqRec(m, n, text), m, TrainConfig()).train()
    optimiser = module.make_optimizer()
    rows = max(2, math.ceil(PROBE_POSITIONS / m.max_len))
    items = torch.randint(1, n + 1, (rows, m.max_len + 1), generator=gen)
    batch = {"items": items, "types": torch.ones_like(items)}

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = module.loss(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return lambda: step(False), lambda: step(True)


def probe_training(shape: TrainShape, folder: Path | None = None) -> precision.Probe:
    """fp32 against bf16 for ``shape`` on this machine: cached, else timed (about a second).

    The caller's random state is left as it was, so a seeded run trains the same weights
    whether or not the probe ran first.
    """
    with torch.random.fork_rng(devices=[]):
        return precision.measure(shape.name, lambda: _steps(shape), folder)
