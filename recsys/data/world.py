"""The synthetic world's ground truth: what its users really like, for a simulator to play out.

``recsys.data.synthetic.generate`` draws events from latent state it used to throw away: each
item's category and place in its category's chain, popularity, release time, and each user's
interests (with weights) and last item. A :class:`World` keeps that state as it stands at the
end of the generated period, so a simulated user population can go on behaving like the
people who made the events, and a better model earns more clicks because it really predicts
them better, not because the simulator asks the model what it thinks.

The model of a user's taste (:meth:`World.click_probability`), for a user ``u`` whose last
item is ``l`` and an item ``i`` they examine::

    p(click) = min(1, other + interest * affinity(u, cat(i)) * pop_rel(i) + successor * near(l, i))

* ``near(l, i)``: ``i`` is one of the 3 next items after ``l`` in ``l``'s category chain, the
  generator's sequential mode (it picks one of these with probability ``p_sequential``);
* ``affinity(u, c)``: the weight of category ``c`` among ``u``'s interests (0 to 1, summing to
  1 over the user's interest slots), the generator's category choice;
* ``pop_rel(i) = pop(i) / (pop(i) + median pop of i's category)``: between 0 and 1, one half for
  a median item, the popularity the generator weights items within a category by (evaluated at
  the end of the period, every item released by then);
* ``other``: the rare click on anything else.

With the default :class:`Tastes` a near successor is clicked more than half the time (0.67 on
average in the tiny world: its interest term adds to the 0.5), an item of an interest category
a few to twenty percent of the time depending on its popularity and the weight of the interest
(0.13 on average), anything else one percent. A click is followed by a cart with
``cart_after_click``, a cart by a purchase with ``purchase_after_cart``.

What the user does without recommendations (:meth:`World.organic_next`) is the generator's
own next-event process: a near successor of the last item with ``p_sequential``, otherwise an
item by popularity from an interest category (a random one with ``p_explore``); interests
drift (:meth:`World.drift`) at ``drift_per_event``.

Saved next to the events as ``raw/world.npz`` (:meth:`World.save`, :meth:`World.load`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

N_SUCCESSORS = 3  # the generator's sequential mode steps 1 to 3 places along a chain
ID_WIDTH = 6


def ids(prefix: str, idx: np.ndarray) -> np.ndarray:
    """String ids of dense indices, as the generator writes them (``u000012``, ``i000345``)."""
    return np.char.add(prefix, np.char.zfill(np.asarray(idx).astype(str), ID_WIDTH)).astype(object)


@dataclass(frozen=True)
class Tastes:
    """How the world's users react to an item they look at (see the module docstring)."""

    successor: float = 0.5  # added for a near successor of the last item
    interest: float = 0.6  # times affinity and relative popularity, for an interest category
    other: float = 0.01  # anything at all
    cart_after_click: float = 0.3
    purchase_after_cart: float = 0.4


# Arrays saved in world.npz; everything else is in its "meta" JSON.
_ARRAYS = ("item_cat", "item_pos", "cat_start", "cat_sizes", "base_pop", "created",
           "popularity", "interests", "interest_weights", "last_item")


@dataclass
class World:
    """The generator's latent state at the end of its period (indices are dense, 0-based).

    ``interests``, ``interest_weights`` and ``last_item`` describe each user now; a simulator
    that moves users on changes its own copy (:meth:`copy`).
    """

    categories: list[str]
    item_cat: np.ndarray  # (n_items,) category of each item
    item_pos: np.ndarray  # (n_items,) place in its category's chain
    cat_start: np.ndarray  # (n_cat,) first item of each category (items are contiguous)
    cat_sizes: np.ndarray  # (n_cat,)
    base_pop: np.ndarray  # (n_items,) the item's lasting appeal
    created: np.ndarray  # (n_items,) release time, seconds after ``start`` (negative: before)
    popularity: np.ndarray  # (n_items,) weight at the end of the period (boost and wave)
    interests: np.ndarray  # (n_users, n_interests) category per interest slot
    interest_weights: np.ndarray  # (n_users, n_interests) weight per slot, rows sum to 1
    last_item: np.ndarray  # (n_users,) the user's newest item, -1 for a user with no events
    start: str  # the period's first instant (ISO)
    seconds: float  # the period's length
    p_sequential: float
    p_explore: float
    drift_per_event: float
    tastes: Tastes = Tastes()

    def __post_init__(self) -> None:
        # The median popularity of each item's category: pop_rel's reference point.
        med = np.array([np.median(self.popularity[s:s + n]) for s, n in
                        zip(self.cat_start, self.cat_sizes, strict=True)])
        self._pop_rel = self.popularity / (self.popularity + med[self.item_cat])
        self._cdf = np.concatenate([np.cumsum(self.popularity[s:s + n]) /
                                    self.popularity[s:s + n].sum()
                                    for s, n in zip(self.cat_start, self.cat_sizes, strict=True)])
        self._user_index: dict[str, int] | None = None
        self._item_index: dict[str, int] | None = None

    # -- sizes and ids ------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.last_item)

    @property
    def n_items(self) -> int:
        return len(self.item_cat)

    @property
    def user_ids(self) -> np.ndarray:
        return ids("u", np.arange(self.n_users))

    @property
    def item_ids(self) -> np.ndarray:
        return ids("i", np.arange(self.n_items))

    def user_index(self, user_ids) -> np.ndarray:
        """Dense indices of user ids; -1 for an id that is not one of the world's."""
        if self._user_index is None:
            self._user_index = {u: n for n, u in enumerate(self.user_ids)}
        return np.array([self._user_index.get(u, -1) for u in user_ids], dtype=np.int64)

    def item_index(self, item_ids) -> np.ndarray:
        """Dense indices of item ids; -1 for an id that is not one of the world's."""
        if self._item_index is None:
            self._item_index = {i: n for n, i in enumerate(self.item_ids)}
        return np.array([self._item_index.get(i, -1) for i in item_ids], dtype=np.int64)

    # -- the truth ----------------------------------------------------------------------------
    def successors(self, items: np.ndarray) -> np.ndarray:
        """``(B, 3)`` the near successors of each item in its chain (wrapping round)."""
        items = np.asarray(items)
        cat = self.item_cat[items]
        steps = np.arange(1, N_SUCCESSORS + 1)
        return self.cat_start[cat][:, None] + (self.item_pos[items][:, None] + steps) \
            % self.cat_sizes[cat][:, None]

    def affinity(self, users: np.ndarray, cats: np.ndarray) -> np.ndarray:
        """``(B, K)`` the weight of each category ``cats[b, j]`` among user ``b``'s interests."""
        match = self.interests[users][:, None, :] == cats[:, :, None]
        return (match * self.interest_weights[users][:, None, :]).sum(axis=2)

    def click_probability(self, users, last_items, items) -> np.ndarray:
        """``(B, K)`` probability that user ``users[b]`` clicks ``items[b, j]`` once seen.

        ``last_items[b]``: the user's newest item (-1: none); ``items``: dense indices, -1 for
        an item outside the world (never clicked). See the module docstring for the model.
        """
        users = np.asarray(users, dtype=np.int64)
        last = np.asarray(last_items, dtype=np.int64)
        items = np.atleast_2d(np.asarray(items, dtype=np.int64))
        known = items >= 0
        safe = np.where(known, items, 0)
        t = self.tastes
        p = t.other + t.interest * self.affinity(users, self.item_cat[safe]) * self._pop_rel[safe]
        near = (self.successors(np.maximum(last, 0))[:, None, :] == safe[:, :, None]).any(axis=2)
        p = p + t.successor * (near & (last >= 0)[:, None])
        return np.where(known, np.minimum(p, 1.0), 0.0)

    def organic_next(self, rng: np.random.Generator, users, last_items) -> np.ndarray:
        """The item each user would turn to next on their own: the generator's process."""
        users = np.asarray(users, dtype=np.int64)
        last = np.asarray(last_items, dtype=np.int64)
        n = len(users)
        n_cat = len(self.categories)
        slot_w = self.interest_weights[users].cumsum(axis=1)
        slot = (rng.random(n)[:, None] > slot_w).sum(axis=1)
        cat = self.interests[users, np.minimum(slot, self.interests.shape[1] - 1)]
        explore = rng.random(n) < self.p_explore
        cat[explore] = rng.integers(0, n_cat, explore.sum())
        # An item of the chosen category by popularity: one searchsorted per category drawn.
        pick = np.empty(n, dtype=np.int64)
        u = rng.random(n)
        for c in np.unique(cat):
            rows = np.flatnonzero(cat == c)
            s, z = self.cat_start[c], self.cat_sizes[c]
            pick[rows] = s + np.minimum(np.searchsorted(self._cdf[s:s + z], u[rows],
                                                        side="right"), z - 1)
        seq = (rng.random(n) < self.p_sequential) & (last >= 0)
        step = rng.integers(0, N_SUCCESSORS, n)
        succ = self.successors(np.maximum(last, 0))[np.arange(n), step]
        return np.where(seq, succ, pick)

    def drift(self, rng: np.random.Generator, users) -> None:
        """Each user's interests drift once per event, as in the generator (in place)."""
        users = np.asarray(users, dtype=np.int64)
        moved = users[rng.random(len(users)) < self.drift_per_event]
        slots = rng.integers(0, self.interests.shape[1], moved.size)
        self.interests[moved, slots] = rng.integers(0, len(self.categories), moved.size)

    def copy(self) -> World:
        """A world whose users can move on without changing this one."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("interests", "interest_weights", "last_item"):
            state[name] = state[name].copy()
        return World(**state)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write ``path`` (``.npz``) all at once: a temp file renamed over it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"categories": self.categories, "start": self.start, "seconds": self.seconds,
                "p_sequential": self.p_sequential, "p_explore": self.p_explore,
                "drift_per_event": self.drift_per_event, "tastes": asdict(self.tastes)}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)),
                                **{name: getattr(self, name) for name in _ARRAYS})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> World:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[name] for name in _ARRAYS}
        tastes = Tastes(**meta.pop("tastes"))
        return cls(**arrays, **meta, tastes=tastes)


def world_path(raw: Path) -> Path:
    """Where a world is saved: next to its ``events.parquet``."""
    return Path(raw) / "world.npz"
