"""Training-step throughput on this machine: fp32 vs bf16 autocast, padding work removed, and
PyTorch's dropout against the cheap CPU mask of recsys.models.dropout.

Prints target positions per second for one optimiser step of the default model at two
catalogue sizes, with ratios against the fp32 baseline measured in the same process, and what
``precision=auto``'s probe measured for each shape (cached per machine; ``recsys status``).

    .venv/bin/python bench/train_step.py [--steps 30] [--long]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

import recsys.models.blocks as blocks
import recsys.models.dropout as dropout
from recsys import precision
from recsys.config import ModelConfig, TrainConfig
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec
from recsys.training.precision import TrainShape, probe_training


def make_batch(n_items: int, batch: int, max_len: int, mean_len: float, gen: torch.Generator):
    lengths = torch.clamp(torch.poisson(torch.full((batch,), float(mean_len)), generator=gen), 2,
                          max_len + 1).long()
    items = torch.zeros(batch, max_len + 1, dtype=torch.long)
    for r, n in enumerate(lengths.tolist()):
        items[r, -n:] = torch.randint(1, n_items + 1, (n,), generator=gen)
    types = (items > 0).long()
    return {"items": items, "types": types}


def trim_batch(batch):
    from recsys.data.containers import trim

    items, types = trim(batch["items"], batch["types"])
    return {"items": items, "types": types}


@contextlib.contextmanager
def torch_dropout():
    """PyTorch's own dropout everywhere: per-element bernoulli masks, SDPA's dropout path."""
    saved = dropout.fast_dropout, blocks.attention_with_dropout
    dropout.fast_dropout = lambda x, p, training=True: F.dropout(x, p, training)
    blocks.attention_with_dropout = lambda q, k, v, mask, p: F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=p)
    try:
        yield
    finally:
        dropout.fast_dropout, blocks.attention_with_dropout = saved


@contextlib.contextmanager
def no_attention_dropout():
    """Dropout everywhere but on the attention weights: training takes SDPA's fused kernel."""
    saved = blocks.attention_with_dropout
    blocks.attention_with_dropout = lambda q, k, v, mask, p: F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=mask is None)
    try:
        yield
    finally:
        blocks.attention_with_dropout = saved


def run(n_items: int, mean_len: float, precision: str, trim: bool, steps: int, batch: int = 128,
        max_len: int = 50) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = ModelConfig(max_len=max_len)
    net = SeqRec(cfg, n_items, torch.randn(n_items + 1, 256))
    module = SeqRecModule(net, cfg, TrainConfig())
    opt = module.configure_optimizers()
    batches = [make_batch(n_items, batch, max_len, mean_len, gen) for _ in range(steps + 3)]
    if trim:
        batches = [trim_batch(b) for b in batches]
    positions, elapsed = 0, 0.0
    for i, b in enumerate(batches):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = module.training_step(b, i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 3:  # warm-up steps excluded
            elapsed += time.perf_counter() - t
            positions += int((b["items"][:, :-1] > 0).sum())
    return positions / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--all", action="store_true",
                    help="bf16 rows even where the probe timed bf16 at under half of fp32")
    ap.add_argument("--long", action="store_true",
                    help="also an ml-100k-like shape at max_len 200 (a third of the steps)")
    args = ap.parse_args()
    module_log = SeqRecModule.log
    SeqRecModule.log = lambda *a, **k: None  # no trainer attached in this micro-benchmark
    try:
        print(f"{precision.machine()['cpu']}: torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, "
              f"avx512_bf16={torch.cpu._is_avx512_bf16_supported()}, "
              f"amx={torch.cpu._is_amx_tile_supported()}", flush=True)
        for label, n_items, mean_len, max_len in (
                ("synthetic-small (2k items, long seqs)", 2000, 40, 50),
                ("beauty-like (55k items, short seqs)", 55000, 8, 50),
                ("ml-100k-like (1.7k items, max_len 200, mean 100)", 1700, 100, 200)):
            if max_len != 50 and not args.long:
                continue
            probe = probe_training(TrainShape(ModelConfig(max_len=max_len), n_items, 256))
            print(f"\n{label}\n  precision=auto's probe: {probe.line()}", flush=True)
            steps = args.steps if max_len == 50 else max(3, args.steps // 3)
            # Where the probe timed bf16 at under half of fp32 (emulated bf16: AVX2 only), its
            # rows would take most of the run's time and say nothing new: left out, and said so.
            dtypes = ("fp32", "bf16") if probe.speedup >= 0.5 or args.all else ("fp32",)
            with torch_dropout():
                base = run(n_items, mean_len, "fp32", False, steps, max_len=max_len)
                torch_best = run(n_items, mean_len, dtypes[-1], True, steps, max_len=max_len)
            print(f"  fp32, padded to max_len, torch dropout : {base:10,.0f} positions/s"
                  "  1.00x")
            print(f"  {dtypes[-1]}, trimmed, torch dropout           : {torch_best:10,.0f} "
                  f"positions/s  {torch_best / base:.2f}x")
            if len(dtypes) == 1:
                print(f"  (bf16 rows left out: the probe timed bf16 at {probe.speedup:.2f}x fp32 "
                      "here; --all runs them)")
            for dtype, trim in [(d, t) for d in dtypes for t in (False, True)]:
                r = run(n_items, mean_len, dtype, trim, steps, max_len=max_len)
                name = f"{dtype}, {'trimmed' if trim else 'padded'}, cheap CPU dropout"
                print(f"  {name:<39}: {r:10,.0f} positions/s  {r / base:.2f}x", flush=True)
            with no_attention_dropout():
                r = run(n_items, mean_len, "fp32", True, steps, max_len=max_len)
            print(f"  {'fp32, trimmed, no attention dropout':<39}: {r:10,.0f} positions/s  "
                  f"{r / base:.2f}x (fused attention)", flush=True)
    finally:
        SeqRecModule.log = module_log


if __name__ == "__main__":
    main()
