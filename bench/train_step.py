"""Training-step throughput on this machine: fp32 vs bf16 autocast, and padding work removed.

Prints target positions per second for one optimiser step of the default model at two
catalogue sizes, with ratios against the fp32 baseline measured in the same process.

    .venv/bin/python bench/train_step.py [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch

from recsys.config import ModelConfig, TrainConfig
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec


def make_batch(n_items: int, batch: int, max_len: int, mean_len: float, gen: torch.Generator):
    lengths = torch.clamp(torch.poisson(torch.full((batch,), float(mean_len)), generator=gen), 2,
                          max_len + 1).long()
    items = torch.zeros(batch, max_len + 1, dtype=torch.long)
    for r, n in enumerate(lengths.tolist()):
        items[r, -n:] = torch.randint(1, n_items + 1, (n,), generator=gen)
    types = (items > 0).long()
    return {"items": items, "types": types}


def trim_batch(batch):
    from recsys.evaluation.evaluator import trim

    items, types = trim(batch["items"], batch["types"])
    return {"items": items, "types": types}


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
    args = ap.parse_args()
    module_log = SeqRecModule.log
    SeqRecModule.log = lambda *a, **k: None  # no trainer attached in this micro-benchmark
    try:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"avx512_bf16={torch.cpu._is_avx512_bf16_supported()}", flush=True)
        for label, n_items, mean_len in (("synthetic-small (2k items, long seqs)", 2000, 40),
                                         ("beauty-like (55k items, short seqs)", 55000, 8)):
            base = run(n_items, mean_len, "fp32", trim=False, steps=args.steps)
            print(f"\n{label}\n  fp32, padded to max_len : {base:10,.0f} positions/s  1.00x")
            for precision, trim in (("fp32", True), ("bf16", False), ("bf16", True)):
                r = run(n_items, mean_len, precision, trim, args.steps)
                print(f"  {precision}, {'trimmed' if trim else 'padded '}            :"
                      f" {r:10,.0f} positions/s  {r / base:.2f}x")
    finally:
        SeqRecModule.log = module_log


if __name__ == "__main__":
    main()
