import asyncio
import threading

import numpy as np
import pytest
import torch

from recsys.config import ModelConfig
from recsys.models.seqrec import SeqRec
from recsys.scoring.batching import RequestBatcher, _Job
from recsys.scoring.scorer import Scorer


def scorer(seed: int) -> Scorer:
    torch.manual_seed(seed)
    ids = [f"i{n}" for n in range(1, 201)]
    # PyTorch's initialisation: untrained N(0, 0.02) weights score items so alike that batched
    # and single matmuls may order near-ties differently, which is rounding, not batching.
    cfg = ModelConfig(d_model=16, max_len=8, n_heads=2, init_std=None)
    return Scorer(SeqRec(cfg, len(ids)), ids)


async def many(batcher, requests):
    return await asyncio.gather(*(batcher.recommend(*r) for r in requests))


def test_batched_answers_equal_one_by_one_answers():
    a, b = scorer(0), scorer(1)  # two models in flight, as during a hot reload
    rng = np.random.default_rng(0)
    requests = []
    for n in range(100):
        history = [f"i{x}" for x in rng.integers(1, 201, size=rng.integers(0, 12))]
        types = ["click"] * len(history) if n % 3 else None
        requests.append((a if n % 2 else b, history, types, 1 + n % 15, n % 4 == 0))
    batcher = RequestBatcher(max_batch=16)
    try:
        answers = asyncio.run(many(batcher, requests))
    finally:
        batcher.stop()
    assert batcher.requests == 100 and batcher.batches < 100  # some were really batched
    for (model, history, types, k, exclude), (ids, scores) in zip(requests, answers,
                                                                   strict=True):
        want_ids, want_scores = model.recommend([history], k=k, exclude_seen=exclude,
                                                types=[types] if types else None)
        assert list(ids) == list(want_ids[0])
        np.testing.assert_allclose(scores, want_scores[0], rtol=1e-5)
        if exclude:
            assert not set(ids) & set(history)


def test_a_failing_batch_fails_its_requests_and_the_worker_lives_on():
    good = scorer(0)
    broken = scorer(1)
    broken.catalogue = None  # top_k will raise
    batcher = RequestBatcher()
    try:
        with pytest.raises(AttributeError):
            asyncio.run(batcher.recommend(broken, ["i1"], None, 5))
        ids, _ = asyncio.run(batcher.recommend(good, ["i1"], None, 5))
        assert len(ids) == 5
    finally:
        batcher.stop()


def test_two_models_in_one_batch_are_answered_side_by_side():
    """An interleaved request needs both models: their groups run on two threads at once.

    Each model waits at a barrier for the other; answered one after the other, the first
    would wait alone until the barrier's timeout broke it.
    """
    meet = threading.Barrier(2, timeout=10)
    threads: set[str] = set()

    class Meeting(Scorer):
        def top_k(self, *args, **kwargs):
            threads.add(threading.current_thread().name)
            meet.wait()
            return super().top_k(*args, **kwargs)

    models = []
    for seed in (0, 1):
        base = scorer(seed)
        models.append(Meeting(base.net, list(base.item_ids)))
    batcher = RequestBatcher()

    async def both():
        # Both queued before the worker starts, so they are surely in one batch.
        loop = asyncio.get_running_loop()
        jobs = [_Job(m, ["i1", "i2"], None, 5, False, loop.create_future(), loop)
                for m in models]
        for job in jobs:
            batcher._jobs.put(job)
        batcher._ensure_started()
        return await asyncio.gather(*(job.future for job in jobs))

    try:
        answers = asyncio.run(both())
    finally:
        batcher.stop()
    assert [len(ids) for ids, _ in answers] == [5, 5] and len(threads) == 2
