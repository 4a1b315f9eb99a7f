"""Top-K lists from string item histories: the code path every consumer of a model shares."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from recsys.columns import EVENT_TYPES
from recsys.data.sequences import pad_left
from recsys.evaluation.evaluator import mask_seen
from recsys.models import io
from recsys.models.seqrec import SeqRec
from recsys.timeutil import parse_ts, seconds_since

TYPE_CODE = {t: i + 1 for i, t in enumerate(EVENT_TYPES)}


class Scorer:
    """Maps recent-item sequences (string ids, oldest first) to top-K item ids and scores.

    Unknown item ids in a history are ignored (they carry no learned meaning yet).
    """

    def __init__(self, net: SeqRec, item_ids: list[str], meta: dict | None = None):
        self.net = net.eval()
        self.meta = meta or {}
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.index = {item: i + 1 for i, item in enumerate(item_ids)}
        self.max_len = net.cfg.max_len
        # The item tower depends only on the weights: computed once per model, not per request.
        with torch.no_grad():
            self.item_vectors = net.items()

    @classmethod
    def from_folder(cls, folder: Path) -> Scorer:
        net, item_ids, meta = io.load(folder)
        return cls(net, item_ids, meta)

    @property
    def newest_event_ts(self) -> dt.datetime | None:
        return parse_ts(self.meta.get("newest_event_ts"))

    def model_age_s(self, now: dt.datetime | None = None) -> float | None:
        """Seconds since the newest event this model has learnt from (None if unknown)."""
        return seconds_since(self.newest_event_ts, now)

    def encode(self, histories: Sequence[Sequence[str]],
               types: Sequence[Sequence[str]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        idx, codes = [], []
        for n, history in enumerate(histories):
            kinds = types[n] if types is not None else [None] * len(history)
            pairs = [(self.index[i], TYPE_CODE.get(t, 1))
                     for i, t in zip(history, kinds, strict=True) if i in self.index]
            idx.append([p[0] for p in pairs])
            codes.append([p[1] for p in pairs])
        items = torch.from_numpy(pad_left(pa.array(idx, pa.list_(pa.int64())), self.max_len))
        kinds = torch.from_numpy(pad_left(pa.array(codes, pa.list_(pa.int64())), self.max_len))
        return items, kinds

    @torch.no_grad()
    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10,
                  exclude_seen: bool = False,
                  types: Sequence[Sequence[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids ``(B, k)`` (object array) and their scores ``(B, k)``."""
        items, kinds = self.encode(histories, types)
        scores = self.net.score(items, kinds, self.item_vectors)
        if exclude_seen:
            mask_seen(scores, items)
        k = min(k, self.net.n_items)
        top = scores.topk(k, dim=1)
        return self.item_ids[top.indices.numpy() - 1], top.values.numpy()

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
