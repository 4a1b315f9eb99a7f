"""Concurrent requests share one model call: dynamic batching for the real-time service.

Under load, requests that arrive while the model is busy wait for it; run one by one, each
waits for all those ahead of it, and the queue compounds. Here a single worker thread takes
every request waiting when it becomes free and answers them with one Transformer call and
one product against the catalogue, which costs little more than one request. The worker
also frees the event loop: torch releases the GIL, so HTTP parsing and the model run on
different cores. Nothing waits for a batch to fill: a lone request runs at once.

A batch may need two models: an interleaving experiment asks both for every request (and an
A/B one, or a hot reload, splits a batch between them). The second model's group then runs
on a helper thread beside the first, so a request that needs both waits for the slower of the
two, not for their sum.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from recsys.scoring.scorer import Scorer

log = logging.getLogger(__name__)


@dataclass
class _Job:
    scorer: Scorer
    history: Sequence[str]
    types: Sequence[str] | None
    k: int
    exclude_seen: bool
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class RequestBatcher:
    """``await batcher.recommend(scorer, history, ...)`` answers like ``Scorer.recommend``."""

    def __init__(self, max_batch: int = 64):
        self.max_batch = max_batch
        self._helper: ThreadPoolExecutor | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.requests = 0

    async def recommend(self, scorer: Scorer, history: Sequence[str],
                        types: Sequence[str] | None = None, k: int = 10,
                        exclude_seen: bool = False) -> tuple[np.ndarray, np.ndarray]:
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Job(scorer, history, types, k, exclude_seen, future, loop))
        return await future

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="request-batcher",
                                                daemon=True)
                self._thread.start()

    def _helper_pool(self) -> ThreadPoolExecutor:
        """One more worker, started the first time a batch needs two models."""
        if self._helper is None:
            # With this worker's torch thread count, not the process default of one per core.
            self._helper = ThreadPoolExecutor(1, "request-batcher-2", torch.set_num_threads,
                                              (torch.get_num_threads(),))
        return self._helper

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread.join(timeout=10)
                self._thread = None
            if self._helper is not None:
                self._helper.shutdown(wait=True)
                self._helper = None

    def _run(self) -> None:
        while (first := self._jobs.get()) is not None:
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                jobs.append(job)
            # A hot reload may leave requests for the old and the new model in one batch.
            by_model: dict[int, list[_Job]] = {}
            for job in jobs:
                by_model.setdefault(id(job.scorer), []).append(job)
            first, *others = by_model.values()
            pending = [self._helper_pool().submit(self._answer, group) for group in others]
            self._answer(first)
            for done in pending:
                done.result()
            self.batches += 1
            self.requests += len(jobs)

    @staticmethod
    def _answer(jobs: list[_Job]) -> None:
        try:
            scorer = jobs[0].scorer
            items, kinds = scorer.encode([j.history for j in jobs],
                                         [j.types or [None] * len(j.history) for j in jobs])
            seen = torch.tensor([j.exclude_seen for j in jobs])[:, None]
            top, scores = scorer.top_k(items, kinds, max(j.k for j in jobs),
                                       exclude=items * seen if seen.any() else None)
            ids, scores = scorer.item_ids[top.numpy() - 1], scores.numpy()
            results = [(None, (ids[n, :j.k], scores[n, :j.k])) for n, j in enumerate(jobs)]
        except Exception as exc:  # every waiting request gets the error, the worker lives on
            log.exception("scoring a batch of %d requests failed", len(jobs))
            results = [(exc, None)] * len(jobs)
        for job, (error, result) in zip(jobs, results, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, error, result)


def _settle(future: asyncio.Future, error: Exception | None, result) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
