"""How long ``recsys demo`` will take on this machine, from a few timed training steps.

A few optimiser steps of the demo's model (its width, blocks, text and loss, the preset's
catalogue, a full batch of sequences as long as the preset's average user) are timed; the
demo's work is then counted in such steps and added up:

- the full retrain: ``epochs x ceil(users / batch_size)`` steps, each costing ``FIT_FACTOR``
  timed steps (data loading, weight averaging, logging, validation after every epoch);
- each micro-batch update: its fine-tune (``update_steps``: the steps its batch takes, at most
  ``UpdateConfig.time_budget_s``) and a fixed cost for scoring two models on the held-out part
  and registering;
- the test evaluation, model logging and registration after the fit: fixed costs counted in
  step-equivalents, measured once on the reference machine (2 shared cores, AMD EPYC; see
  docs/operations.md for how close the estimate came).

It is an upper bound on the training part (early stopping may end it sooner) and a rough
figure for the rest, so the demo prints it as "about" and reports how it compared at the end.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

from recsys.config import ModelConfig, TrainConfig, UpdateConfig
from recsys.data.synthetic import SyntheticConfig
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec

TEXT_DIM = 256  # the default item text encoder's width (wordllama-256, data/text.py)
# Measured on the reference machine (step = one full-batch optimiser step of the demo model):
# A step inside the fit (with its share of data loading, weight averaging, logging and the
# validation after each epoch) took 0.7x-2x the timed step in runs on the reference machine,
# whose two cores other jobs shared at loads of 4 to 7; 1 is the middle of that.
FIT_FACTOR = 1.0
AFTER_FIT_STEPS = 8  # test evaluation of the model and two baselines, logging, registering
UPDATE_STEPS = 4  # one micro-batch update beside its fine-tune: scoring two models, registering
SETUP_S = 15.0  # generate, ingest, features, text embeddings, opening the MLflow store


@dataclass(frozen=True)
class DemoEstimate:
    """The demo's expected duration, by part, in seconds."""

    step_s: float
    fit_s: float
    after_fit_s: float
    updates_s: float
    setup_s: float = SETUP_S

    @property
    def total_s(self) -> float:
        return self.setup_s + self.fit_s + self.after_fit_s + self.updates_s

    def parts(self) -> list[tuple[str, float]]:
        """``(label, seconds)`` of each part, in the order the demo runs them."""
        return [("data and features", self.setup_s), ("training", self.fit_s),
                ("evaluation and registry", self.after_fit_s), ("updates", self.updates_s)]

    def summary(self) -> str:
        parts = ", ".join(f"{label} {duration(s)}" for label, s in self.parts() if s)
        return (f"expected duration: about {duration(self.total_s)} ({parts}; "
                f"{self.step_s:.2f} s per training step measured just now)")


def duration(seconds: float) -> str:
    """``75`` -> ``'1 min 15 s'``; under a minute in seconds."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def time_train_step(model_cfg: ModelConfig, n_items: int, rows: int, length: int,
                    steps: int = 2) -> float:
    """Median seconds of ``steps`` optimiser steps (after one warm-up) on a random batch.

    The batch is ``rows`` sequences of ``length`` items; the caller's random state is left as
    it was, so a seeded run trains the same weights whether or not this ran first.
    """
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator().manual_seed(0)
        text = torch.randn(n_items + 1, TEXT_DIM, generator=gen) if model_cfg.use_text else None
        module = SeqRecModule(SeqRec(model_cfg, n_items, text), model_cfg, TrainConfig()).train()
        optimiser = module.make_optimizer()
        items = torch.randint(1, n_items + 1, (rows, length + 1), generator=gen)
        batch = {"items": items, "types": torch.ones_like(items)}
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            loss, _ = module.loss(batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def update_steps(world: SyntheticConfig, update_cfg: UpdateConfig, updates: int,
                 live_fraction: float) -> int:
    """Optimiser steps of one demo update's fine-tune.

    The demo lands ``live_fraction`` of the events in ``2 * updates`` parts and each update
    trains on one; its users' sequences plus as many replayed (``replay_ratio``) make the
    batch, and the fine-tune takes ``epochs`` passes of ``batch_size`` sequences, at most
    ``max_steps`` (the batch grows instead). Users in a part: the expected number of distinct
    users among its events, drawn uniformly.

    >>> from recsys.data.synthetic import preset
    >>> update_steps(preset("tiny"), UpdateConfig(), 3, 0.1)
    1
    """
    events = world.n_users * world.mean_events_per_user * live_fraction / max(1, 2 * updates)
    users = world.n_users * (1 - math.exp(-events / world.n_users))
    sequences = users * (1 + update_cfg.replay_ratio)
    per_pass = math.ceil(sequences / update_cfg.batch_size)
    return max(1, min(update_cfg.max_steps, per_pass * update_cfg.epochs))


def estimate_demo(world: SyntheticConfig, model_cfg: ModelConfig, train_cfg: TrainConfig,
                  update_cfg: UpdateConfig, updates: int,
                  live_fraction: float = 0.1) -> DemoEstimate:
    """Time two full-batch steps of the demo's model, then count the demo's work in steps.

    Smaller timed batches would be quicker but mislead: at the demo's size a step's cost is
    mostly fixed (the catalogue's vectors, the optimiser), not per sequence.
    """
    length = max(2, min(model_cfg.max_len, round(world.mean_events_per_user)))
    step_s = time_train_step(model_cfg, world.n_items, train_cfg.batch_size, length)
    steps_per_epoch = math.ceil(world.n_users / train_cfg.batch_size)
    fit_s = train_cfg.max_epochs * steps_per_epoch * step_s * FIT_FACTOR
    update_step_s = step_s * update_cfg.batch_size / train_cfg.batch_size
    steps = update_steps(world, update_cfg, updates, live_fraction)
    finetune_s = min(update_cfg.time_budget_s, steps * update_step_s)
    updates_s = updates * (finetune_s + UPDATE_STEPS * step_s)
    return DemoEstimate(step_s=step_s, fit_s=fit_s, after_fit_s=AFTER_FIT_STEPS * step_s,
                        updates_s=updates_s)
