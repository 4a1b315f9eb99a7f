"""Top-K lists from string item histories: the code path every consumer of a model shares."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from recsys.columns import EVENT_TYPES
from recsys.models import io
from recsys.models.seqrec import SeqRec
from recsys.scoring import traced
from recsys.scoring.topk import ItemIndex
from recsys.timeutil import parse_ts, seconds_since

if TYPE_CHECKING:
    from recsys.registry.registry import Registry

TYPE_CODE = {t: i + 1 for i, t in enumerate(EVENT_TYPES)}


class Scorer:
    """Maps recent-item sequences (string ids, oldest first) to top-K item ids and scores.

    Unknown item ids in a history are ignored (they carry no learned meaning yet).
    """

    def __init__(self, net: SeqRec, item_ids: list[str], meta: dict | None = None,
                 trace: bool = True):
        self.net = net.eval()
        self.meta = meta or {}
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.index = {item: i + 1 for i, item in enumerate(item_ids)}
        self.max_len = net.cfg.max_len
        # The item tower depends only on the weights: computed once per model, not per request.
        with torch.no_grad():
            self.item_vectors = net.items()
        self.catalogue = ItemIndex(self.item_vectors)
        self.traced = traced.trace_user_tower(net, self.item_vectors) if trace else None

    @classmethod
    def from_folder(cls, folder: Path) -> Scorer:
        net, item_ids, meta = io.load(folder)
        return cls(net, item_ids, meta)

    @classmethod
    def from_registry(cls, registry: Registry, version: str | None = None) -> Scorer:
        """A registered version, by default the champion; a copy fetched for it is removed.

        Raises ``LookupError`` when no version is given and the registry has no champion.
        """
        if version is None:
            champion = registry.champion()
            if champion is None:
                raise LookupError(f"{registry.name} has no champion: run a full retrain")
            version = champion.version
        with registry.model_folder(version) as folder:
            scorer = cls.from_folder(folder)
        return scorer

    @property
    def newest_event_ts(self) -> dt.datetime | None:
        return parse_ts(self.meta.get("newest_event_ts"))

    def model_age_s(self, now: dt.datetime | None = None) -> float | None:
        """Seconds since the newest event this model has learnt from (None if unknown)."""
        return seconds_since(self.newest_event_ts, now)

    def encode(self, histories: Sequence[Sequence[str]],
               types: Sequence[Sequence[str]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-aligned index and event-type matrices ``(B, max_len)``, zero-padded.

        Plain loops, not Arrow: a request holds a handful of histories, and building Arrow
        arrays for them cost more than the Transformer (measured in bench/serving.py).
        """
        items = np.zeros((len(histories), self.max_len), dtype=np.int64)
        kinds = np.zeros_like(items)
        for n, history in enumerate(histories):
            kind = types[n] if types is not None else [None] * len(history)
            pairs = [(self.index[i], TYPE_CODE.get(t, 1))
                     for i, t in zip(history, kind, strict=True) if i in self.index]
            pairs = pairs[-self.max_len:]
            if pairs:
                items[n, -len(pairs):], kinds[n, -len(pairs):] = zip(*pairs, strict=True)
        return torch.from_numpy(items), torch.from_numpy(kinds)

    @torch.no_grad()
    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10,
                  exclude_seen: bool = False,
                  types: Sequence[Sequence[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids ``(B, k)`` (object array) and their scores ``(B, k)``."""
        items, kinds = self.encode(histories, types)
        top, scores = self.top_k(items, kinds, k, exclude=items if exclude_seen else None)
        return self.item_ids[top.numpy() - 1], scores.numpy()

    @torch.no_grad()
    def top_k(self, items: torch.Tensor, types: torch.Tensor | None, k: int,
              exclude: torch.Tensor | None = None,
              catalogue: ItemIndex | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item indices and scores of the best ``k`` items for padded index histories.

        ``catalogue``: a filtered one (``ItemIndex(scorer.item_vectors, banned)``) when some
        items may not be recommended; by default every item may.
        """
        # Columns that are padding in every row are cut (histories are right-aligned, and
        # positions count back from the newest item, so the answer is the same): the tower
        # reads 5 positions for a request of 5 items, not max_len (0.8 instead of 1.3 ms).
        longest = max(int((items > 0).sum(1).max()), 1) if items.numel() else 1
        items = items[:, -longest:]
        types = types[:, -longest:] if types is not None else None
        if self.traced is not None and types is not None:
            users = self.traced(items, types)
        else:
            users = self.net.user_vectors(items, types, self.item_vectors)
        return (catalogue or self.catalogue).top_k(users, k, exclude)

    @torch.no_grad()
    def because(self, histories: Sequence[Sequence[str]],
                recommended: np.ndarray) -> list[list[str | None]]:
        """For each recommended item, the history item whose vector is most similar to it.

        An explanation a product team can show ("because you viewed X"); None for an empty
        history.
        """
        out = []
        for history, recs in zip(histories, recommended, strict=True):
            known = [self.index[i] for i in history if i in self.index]
            if not known:
                out.append([None] * len(recs))
                continue
            h = self.item_vectors[torch.tensor(known)]
            r = self.item_vectors[torch.tensor([self.index[i] for i in recs])]
            best = (r @ h.T).argmax(1).tolist()
            out.append([self.item_ids[known[b] - 1] for b in best])
        return out
