"""Training batches: every sequence once per epoch, bucketed by length unless asked not to."""

from __future__ import annotations

import numpy as np

from recsys.data.datamodule import BucketBatchSampler


def _lengths(n: int = 1000) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 51, n)


def _spread(batches: list[list[int]], lengths: np.ndarray) -> float:
    """Mean length range inside a batch: small when batches are bucketed by length."""
    return float(np.mean([np.ptp(lengths[b]) for b in batches]))


def test_every_sequence_is_seen_once_per_epoch_and_epochs_differ():
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    for batches in (first, second):
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert len(batches) == len(sampler)
    assert first != second


def test_bucketing_groups_similar_lengths_and_window_one_does_not():
    lengths = _lengths(5000)
    bucketed = list(BucketBatchSampler(lengths, batch_size=32, seed=1, window=50))
    random = list(BucketBatchSampler(lengths, batch_size=32, seed=1, window=1))
    assert _spread(bucketed, lengths) < 2
    assert _spread(random, lengths) > 40  # lengths 1..50 mixed in every batch
    assert sorted(i for b in random for i in b) == list(range(len(lengths)))


def test_ranks_get_disjoint_equal_shares():
    lengths = _lengths(1001)
    shards = [list(BucketBatchSampler(lengths, 32, seed=3, rank=r, world_size=2, window=w))
              for w in (1, 50) for r in (0, 1)]
    for a, b in (shards[:2], shards[2:]):
        assert len(a) == len(b)
        assert not {i for x in a for i in x} & {i for x in b for i in x}
