"""Dropout with a mask that is cheap to draw on CPU.

PyTorch's CPU dropout draws its mask with ``bernoulli_``, one generator call per element.
Profiling a training step on ml-100k (d=64, batch 128 x 50) showed that mask taking 44% of
each Transformer block's time. Here one generator call yields 63 random bits, cut into four
15-bit numbers, and an element is dropped when its number falls below ``p * 2**15``: the same
Bernoulli mask (to within 2**-15 of ``p``). A block's forward and backward went from ~35-40 ms
to ~15-19 ms at that shape; ``bench/train_step.py`` compares whole steps with PyTorch's dropout.
Other devices keep PyTorch's fused dropout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_ONE = 1 << 15  # random numbers are uniform on [0, 2**15)


def random_15bit(shape: torch.Size | tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform int16 numbers in [0, 2**15), four from each 63-bit draw of the generator."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    # random_() fills int64 with [0, 2**63): every 16-bit slice is uniform once the top bit
    # (always 0 in the highest slice) is masked away.
    return words.view(torch.int16)[:n].view(shape) & 0x7FFF


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p)."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    if p >= 1.0:
        return x * 0.0
    below = min(round(p * _ONE), _ONE - 1)
    # The mask carries the scale, in fp32 at least, so a bf16 input is scaled exactly once.
    scale_dtype = torch.promote_types(x.dtype, torch.float32)
    keep = (random_15bit(x.shape, x.device) >= below).to(scale_dtype) * (_ONE / (_ONE - below))
    return x * keep


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the cheap CPU mask of :func:`fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)
