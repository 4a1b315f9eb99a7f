"""The simulated population: the world's users asking for lists and reacting to them.

Each arrival (Poisson, ``rate`` per second) is one of the world's users, drawn uniformly. The
user asks ``recommend(user_id, k)`` for a list and looks at position ``p`` with probability
``(1/p)^eta`` (position bias); an item looked at is clicked with the world's click probability
for this user and their last item (``World.click_probability``). A click may lead to a cart, a
cart to a purchase (the world's ``Tastes``). With ``organic_share`` the user then also views,
on their own, the item the world's process picks next, so histories move without clicks too.

The choices read nothing but the item ids shown: never a model's scores. So a model that
predicts the world better earns more clicks, and only for that reason.

Reactions are events in the event contract, dated ``utc_now()`` as they happen and carrying
the ``request_id`` of the list they came from; they go out in batches through
``post_events(events) -> accepted``. The simulator keeps each user's last item and interests
in its own copy of the world, moved by its own events. The same seed and the same lists give
the same reactions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from recsys import columns as C
from recsys.config import SimulateConfig
from recsys.data.world import World
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)

# recommend(user_id, k) -> (request_id or None, item ids best first)
Recommend = Callable[[str, int], tuple[str | None, list[str]]]
# post_events(events) -> how many the service accepted
PostEvents = Callable[[list[dict]], int]


class GaveUp(Exception):
    """The service did not answer before the simulation had to stop."""


class Stopper:
    """When the simulation ends: after ``duration_s`` (0: never), or when :meth:`stop` is called.

    Calls that wait for a service that does not answer keep trying for ``grace_s`` past the end
    (the last batch of events still goes out), and not at all after :meth:`stop`.
    """

    def __init__(self, duration_s: float, grace_s: float = 10.0):
        self.duration_s, self.grace_s = duration_s, grace_s
        self._event = threading.Event()
        self._end: float | None = None

    def start(self) -> None:
        self._end = time.monotonic() + self.duration_s if self.duration_s else None

    def stop(self) -> None:
        self._event.set()

    def left(self) -> float:
        """Seconds until the end (infinite without a duration)."""
        return float("inf") if self._end is None else self._end - time.monotonic()

    def over(self) -> bool:
        return self._event.is_set() or self.left() <= 0

    def give_up(self) -> bool:
        return self._event.is_set() or self.left() <= -self.grace_s

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less if stopped; True when stopped."""
        return self._event.wait(max(0.0, seconds))


@dataclass
class Counts:
    """What the simulation did so far."""

    k: int
    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    organic_views: int = 0
    events_posted: int = 0  # accepted by the service
    events_rejected: int = 0
    events_dropped: int = 0  # never acknowledged: the service did not answer before the end
    fallback_lists: int = 0  # lists of ids outside the world (or empty)
    clicks_by_position: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.clicks_by_position = self.clicks_by_position or [0] * self.k

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("started")
        return out | {"ctr": round(self.ctr, 6), "elapsed_s": round(self.elapsed_s, 1)}

    def line(self) -> str:
        rate = self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"{self.requests:,} requests in {self.elapsed_s:,.0f} s ({rate:,.1f}/s), "
                f"{self.impressions:,} impressions, {self.clicks:,} clicks (CTR "
                f"{100 * self.ctr:.2f}%), {self.carts:,} carts, {self.purchases:,} purchases, "
                f"{self.organic_views:,} organic views; {self.events_posted:,} events accepted"
                + (f", {self.events_rejected:,} rejected" if self.events_rejected else "")
                + (f", {self.events_dropped:,} dropped" if self.events_dropped else ""))


class Simulator:
    """The world's users against a recommender; see the module docstring."""

    def __init__(self, world: World, cfg: SimulateConfig, recommend: Recommend,
                 post_events: PostEvents, stopper: Stopper | None = None,
                 clock: Callable = utc_now):
        self.world = world.copy()  # users move on in this copy only
        self.cfg = cfg
        self.recommend, self.post_events = recommend, post_events
        self.stopper = stopper or Stopper(cfg.duration_s)
        self.clock = clock
        self.rng = np.random.default_rng(cfg.seed)
        self.user_ids = self.world.user_ids
        self.item_ids = self.world.item_ids
        self.examine = (1.0 / np.arange(1, cfg.k + 1)) ** cfg.eta
        self.counts = Counts(cfg.k)
        self.pending: list[dict] = []
        self._last_flush = time.monotonic()

    # -- one user ------------------------------------------------------------------------------
    def _event(self, user: int, item: int, kind: str, request_id: str | None = None,
               value: float | None = None) -> None:
        event = {C.USER_ID: self.user_ids[user], C.ITEM_ID: self.item_ids[item],
                 C.EVENT_TYPE: kind, C.TS: self.clock().isoformat(timespec="microseconds")}
        if value is not None:
            event[C.VALUE] = value
        if request_id is not None:
            event[C.REQUEST_ID] = request_id
        self.pending.append(event)
        self.world.drift(self.rng, [user])

    def visit(self, user: int) -> None:
        """One request of ``user`` and what they do about the list."""
        request_id, shown = self.recommend(str(self.user_ids[user]), self.cfg.k)
        shown = list(shown)[: self.cfg.k]
        world, rng, counts = self.world, self.rng, self.counts
        counts.requests += 1
        counts.impressions += len(shown)
        items = world.item_index(shown)
        if not shown or (items < 0).all():
            counts.fallback_lists += 1
        last = int(world.last_item[user])
        if shown:
            p = world.click_probability([user], [last], items[None, :])[0]
            clicked = rng.random(len(shown)) < p * self.examine[: len(shown)]
            t = world.tastes
            for pos in np.flatnonzero(clicked):
                item = int(items[pos])
                counts.clicks += 1
                counts.clicks_by_position[pos] += 1
                self._event(user, item, "click", request_id)
                if rng.random() < t.cart_after_click:
                    counts.carts += 1
                    self._event(user, item, "cart", request_id)
                    if rng.random() < t.purchase_after_cart:
                        counts.purchases += 1
                        self._event(user, item, "purchase", request_id, self._price(item))
                last = item
        if rng.random() < self.cfg.organic_share:
            last = int(world.organic_next(rng, [user], [last])[0])
            counts.organic_views += 1
            self._event(user, last, "view")
        world.last_item[user] = last

    def _price(self, item: int) -> float:
        """A purchase's value, drawn as the generator draws prices."""
        return round(5 + float(self.world.base_pop[item]) * 3 + float(self.rng.gamma(2, 10)), 2)

    # -- events out ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Post the pending events in batches of at most ``batch_events``."""
        self._last_flush = time.monotonic()
        while self.pending:
            batch = self.pending[: self.cfg.batch_events]
            try:
                accepted = self.post_events(batch)
            except GaveUp:
                self.counts.events_dropped += len(self.pending)
                self.pending = []
                raise
            self.counts.events_posted += accepted
            self.counts.events_rejected += len(batch) - accepted
            del self.pending[: len(batch)]

    def _flush_due(self) -> bool:
        return len(self.pending) >= self.cfg.batch_events or \
            time.monotonic() - self._last_flush >= self.cfg.flush_interval_s

    # -- running -------------------------------------------------------------------------------
    def next_user(self) -> int:
        return int(self.rng.integers(self.world.n_users))

    def run_requests(self, n: int) -> Counts:
        """``n`` requests one after the other, no waiting (tests, benchmarks); then flush."""
        for _ in range(n):
            self.visit(self.next_user())
            if self._flush_due():
                self.flush()
        self.flush()
        return self.counts

    def run(self, on_progress: Callable[[Counts], None] | None = None) -> Counts:
        """Poisson arrivals at ``rate`` until the duration ends or :meth:`stop` is called.

        A service slower than the rate makes the simulation fall behind, never burst to catch
        up: ``Counts.line`` shows the rate achieved. ``on_progress`` every ``report_every_s``.
        """
        stopper, cfg = self.stopper, self.cfg
        stopper.start()
        self.counts = Counts(cfg.k)
        next_report = time.monotonic() + cfg.report_every_s
        due = time.monotonic()
        try:
            while not stopper.over():
                due += self.rng.exponential(1.0 / cfg.rate)
                now = time.monotonic()
                if due > now:
                    until_flush = cfg.flush_interval_s - (now - self._last_flush)
                    if self.pending and until_flush < due - now:
                        stopper.wait(min(until_flush, stopper.left()))
                        self.flush()
                    if stopper.wait(min(due - time.monotonic(), stopper.left())) or \
                            stopper.over():
                        break
                elif now - due > 1.0:
                    due = now  # behind by more than a second: do not burst
                self.visit(self.next_user())
                if self._flush_due():
                    self.flush()
                if on_progress and time.monotonic() >= next_report:
                    on_progress(self.counts)
                    next_report += cfg.report_every_s
            self.flush()
        except GaveUp:
            log.warning("the service did not answer before the simulation ended")
        if on_progress:
            on_progress(self.counts)
        return self.counts

    def stop(self) -> None:
        self.stopper.stop()
