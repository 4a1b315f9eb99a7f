"""The user tower as one TorchScript graph, for serving.

A user tower is some sixty small torch calls per request. Called from Python, each releases
and retakes the GIL, and in the service the event loop (and, in an interleaving experiment,
the other model's worker) holds the GIL in between: a request waited for it dozens of times.
A traced, frozen graph runs all of them in C++ after one release (bench/serving.py measures
the difference). Training and evaluation keep the eager module.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from recsys.models.seqrec import SeqRec

log = logging.getLogger(__name__)


class _LastState(nn.Module):
    """``(items, types) -> user vectors``, the item vectors held as a buffer."""

    def __init__(self, net: SeqRec, item_vectors: torch.Tensor):
        super().__init__()
        self.user = net.user
        self.register_buffer("item_vectors", item_vectors)

    def forward(self, items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return self.user(items, types, self.item_vectors)[:, -1]


def example(max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two histories, one of them left-padded.

    So the trace records attention's masked path, which is right for any batch, padded or not.
    """
    n = min(max_len, 4)
    items = torch.arange(1, 2 * n + 1).view(2, n) % 2 + 1
    items[1, : n // 2] = 0
    return items, (items > 0).long()


@torch.no_grad()
def trace_user_tower(net: SeqRec, item_vectors: torch.Tensor) -> torch.jit.ScriptModule | None:
    """The frozen graph of ``net``'s user vectors, or None (eager) when tracing fails."""
    module = _LastState(net, item_vectors).eval()
    items, types = example(net.cfg.max_len)
    try:
        with warnings.catch_warnings():  # the tracer warns of the mask branch it records
            warnings.simplefilter("ignore")
            graph = torch.jit.freeze(torch.jit.trace(module, (items, types), check_trace=False))
            for _ in range(3):  # the profiling executor optimises after its first calls
                graph(items, types)
    except Exception as exc:  # a model the tracer cannot follow serves eagerly
        log.warning("user tower not traced, serving it eagerly: %s", exc)
        return None
    return graph
