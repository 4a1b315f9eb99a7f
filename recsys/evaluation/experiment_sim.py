"""Online experiments on the simulated population, minute by minute, without a server.

What it is for: measuring the experiment machinery itself. The A/A calibration (is the
false-positive rate of the always-valid test at most its level when the dashboard is checked
every minute?) and the sensitivity comparison (how many impressions do interleaving and an A/B
split need to reach a decision on the same difference?) each need hundreds of experiments;
through the HTTP service that would take days, here it takes minutes. The decisions are made
by the same ``experiment_decision.judge`` the every-minute flow uses, and the users react as
the world's ground truth says (``World.click_probability``) under a position-bias model, as
the simulator behind the stack does; only serving and logging are skipped.

Two "models" of known quality rank each request's items by the world's true click
probability plus Gaussian noise of their own size (``Ranker.noise``, fresh for every request):
the smaller the noise, the better the model, by an amount the simulation can state exactly
(``true_ctr``).

Speed. The truth for every (user, item) pair but the near-successor term depends only on the
user's interests, which an experiment does not move, so :class:`Population` computes it once
per world (``click_probability`` with no last item) and a request only adds the successor
term of its user's last item; and the team draft runs for a whole minute's requests at once
(:func:`team_draft_batch`, the same draft as ``interleave.team_draft``, checked against it
by the tests).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from recsys.config import ExperimentConfig, ExperimentMode
from recsys.data.world import World
from recsys.evaluation.experiment_decision import ArmTotals, InterleaveTotals, Verdict, judge


@dataclass(frozen=True)
class Ranker:
    """A model of known quality: the truth plus noise of standard deviation ``noise``."""

    noise: float

    def rank(self, truth: np.ndarray, k: int, normals: np.ndarray) -> np.ndarray:
        """``(B, k)`` item indices, best first, of each row of ``truth`` ``(B, n_items)``.

        ``normals``: standard normal noise of ``truth``'s shape (``NoisePool.draw``).
        """
        scores = truth + np.float32(self.noise) * normals if self.noise else truth
        top = np.argpartition(scores, -k, axis=1)[:, -k:]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)


class NoisePool:
    """Standard normal noise for many requests, cut from one pool drawn once per run.

    Why: drawing fresh normals for every (request, item) was two thirds of a run's time; a
    window of the pool at a random offset costs a copy. Each request gets its own random
    window, so a model's errors stay independent of the item, the user and the request, up to
    sharing one pool (two requests' windows may overlap shifted by a random distance: an
    item's noise in one is another item's in the other, a dependence no experiment can see).
    """

    def __init__(self, rng: np.random.Generator, size: int = 1 << 21):
        self.rng = rng
        self.pool = rng.standard_normal(size, dtype=np.float32)

    def draw(self, shape: tuple[int, int]) -> np.ndarray:
        rows, width = shape
        windows = sliding_window_view(self.pool, width)
        return windows[self.rng.integers(0, len(windows), rows)]


@dataclass(frozen=True)
class Traffic:
    """How the simulated users arrive and look."""

    requests_per_minute: int = 100
    k: int = 10
    eta: float = 1.0  # examination probability of position p: (1 / p) ** eta
    # How much users differ beyond the world's tastes (zero: not at all). activity: each
    # user's rate of requests (Population.activity) is multiplied by lognormal(0,
    # activity_sigma); propensity: a user's clicks scale by lognormal(0, propensity_sigma),
    # mean 1 (some users click a lot, some hardly at all; the world has no such trait).
    activity_sigma: float = 0.0
    propensity_sigma: float = 0.0


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    minutes: int
    impressions: int


class Population:
    """The world's users' click probabilities over the whole catalogue, computed once.

    ``base[u, i]`` is ``World.click_probability`` of user ``u`` for item ``i`` with no last
    item (float32, ``n_users * n_items * 4`` bytes: 32 MB for the small world);
    :meth:`truth` adds the near-successor term of each request's last item.

    ``activity``: each user's relative rate of requests (default: all alike). Pass each user's
    number of events in the generated data (:func:`event_counts`) to have users come back as
    often as the world made them act: its generator draws history lengths lognormal with sigma
    1, as real users differ (log events per user have a standard deviation of 0.88 in ml-100k,
    which drops users with under 20 ratings, so really more).
    """

    def __init__(self, world: World, chunk: int = 500, activity: np.ndarray | None = None):
        self.world = world
        self.activity = self._checked(np.ones(world.n_users) if activity is None else activity)
        every = np.arange(world.n_items)
        rows = []
        for start in range(0, world.n_users, chunk):
            users = np.arange(start, min(start + chunk, world.n_users))
            grid = np.broadcast_to(every, (len(users), world.n_items))
            rows.append(world.click_probability(users, np.full(len(users), -1), grid)
                        .astype(np.float32))
        self.base = np.concatenate(rows) if rows else np.zeros((0, world.n_items), np.float32)

    def with_activity(self, activity: np.ndarray) -> Population:
        """The same users and truth table (shared, not copied), asking at other rates."""
        other = copy.copy(self)
        other.activity = self._checked(activity)
        return other

    def _checked(self, activity) -> np.ndarray:
        activity = np.asarray(activity, dtype=np.float64)
        if activity.shape != (self.world.n_users,) or (activity < 0).any():
            raise ValueError(f"activity must be {self.world.n_users} non-negative rates, one "
                             "per user")
        return activity

    @property
    def n_users(self) -> int:
        return self.world.n_users

    def truth(self, users: np.ndarray, last_items: np.ndarray) -> np.ndarray:
        """``(B, n_items)`` click probabilities, as ``World.click_probability`` gives them."""
        p = self.base[users]  # a copy: fancy indexing
        last = np.asarray(last_items, dtype=np.int64)
        has = np.flatnonzero(last >= 0)
        if has.size:
            near = self.world.successors(last[has])  # (b, 3); a repeat is added once, as there
            rows = has[:, None]
            p[rows, near] = np.minimum(p[rows, near] + self.world.tastes.successor, 1.0)
        return p


def event_counts(world: World, user_ids) -> np.ndarray:
    """Events per world user (dense index order), from the user id of every generated event."""
    idx = world.user_index(user_ids)
    return np.bincount(idx[idx >= 0], minlength=world.n_users).astype(np.float64)


def run(world: World | Population, cfg: ExperimentConfig, control: Ranker,
        treatment: Ranker | None, seed: int, traffic: Traffic = Traffic()) -> Outcome:
    """One experiment until it decides or reaches ``cfg.max_minutes``.

    ``treatment=None`` is an A/A experiment with two copies of the control: both arms get the
    very same list for the same request. Pass a :class:`Population` to share its truth table
    between many runs (building it takes about a second for the small world).
    """
    pop = world if isinstance(world, Population) else Population(world)
    rng = np.random.default_rng(seed)
    last_item = pop.world.last_item.copy()  # users move on in this run only
    tastes = pop.world.tastes
    buy = tastes.cart_after_click * tastes.purchase_after_cart
    n_users, k = pop.n_users, traffic.k
    exam = ((1.0 / np.arange(1, k + 1)) ** traffic.eta).astype(np.float32)
    treated = rng.random(n_users) < 0.5  # the salted hash's split, as a fresh coin per run
    activity = pop.activity * rng.lognormal(0.0, traffic.activity_sigma, n_users)
    activity /= activity.sum()
    s2 = traffic.propensity_sigma ** 2
    propensity = rng.lognormal(-s2 / 2, traffic.propensity_sigma, n_users).astype(np.float32)
    noise = NoisePool(rng)
    acc = _Accumulator(n_users)
    impressions = 0
    minute, verdict = 0, None
    while minute < cfg.max_minutes:
        minute += 1
        users = rng.choice(n_users, traffic.requests_per_minute, p=activity)
        truth = pop.truth(users, last_item[users])  # what the models try to rank by
        lists_c = control.rank(truth, k, noise.draw(truth.shape))
        lists_t = (lists_c if treatment is None
                   else treatment.rank(truth, k, noise.draw(truth.shape)))
        if cfg.mode == ExperimentMode.ab:
            shown = np.where(treated[users][:, None], lists_t, lists_c)
        else:
            coins = rng.random((len(users), k // 2 + 1)) < 0.5
            shown, teams = team_draft_batch(lists_c, lists_t, k, coins)
        clicks = _click(rng, truth, shown, exam, propensity[users])
        buys = clicks & (rng.random(shown.shape) < buy)
        if cfg.mode == ExperimentMode.ab:
            acc.add_ab(users, treated[users], clicks, buys)
        else:
            acc.add_interleaved(users, teams, clicks, buys)
        impressions += shown.size
        clicked_any = clicks.any(axis=1)
        last = shown[np.arange(len(users)), np.argmax(clicks, axis=1)]
        last_item[users[clicked_any]] = last[clicked_any]
        verdict = judge(cfg, float(minute), acc.totals(cfg.mode), impressions)
        if verdict.final:
            break
    return Outcome(verdict, minute, impressions)


def _click(rng: np.random.Generator, truth: np.ndarray, shown: np.ndarray, exam: np.ndarray,
           propensity: np.ndarray) -> np.ndarray:
    """``(B, k)`` whether each shown item is clicked: looked at (position bias), then liked.

    A user's click propensity scales how often they click what they like, not what they like:
    the models rank by the taste alone.
    """
    p = np.take_along_axis(truth, shown, axis=1) * propensity[:, None] * exam
    return rng.random(shown.shape, dtype=np.float32) < np.minimum(p, 1.0)


def true_ctr(world: World | Population, ranker: Ranker, seed: int = 0, requests: int = 2000,
             traffic: Traffic = Traffic()) -> float:
    """The ranker's expected clicks per impression on this world (no experiment).

    Users drawn uniformly, as they are (``traffic``'s heterogeneity is mean-preserving and
    independent of taste, so it leaves this expectation unchanged up to clipping at 1).
    The same ``seed`` gives two rankers the same users: their difference is paired.
    """
    pop = world if isinstance(world, Population) else Population(world)
    rng = np.random.default_rng(seed)
    total = 0.0
    exam = (1.0 / np.arange(1, traffic.k + 1)) ** traffic.eta
    for start in range(0, requests, 1000):
        users = rng.integers(0, pop.n_users, min(1000, requests - start))
        truth = pop.truth(users, pop.world.last_item[users])
        shown = ranker.rank(truth, traffic.k, rng.standard_normal(truth.shape, np.float32))
        total += float((np.take_along_axis(truth, shown, axis=1) * exam).sum())
    return total / (requests * traffic.k)


def true_margin(world: World | Population, control: Ranker, treatment: Ranker, seed: int = 0,
                requests: int = 20_000, traffic: Traffic = Traffic()) -> tuple[float, float]:
    """The treatment's interleaving preference margin, and the share of requests decided.

    The margin is what ``interleave_estimate`` estimates, (wins - losses) / decided, over
    ``requests`` interleaved requests with no experiment around them (users drawn as
    ``traffic`` says, with its heterogeneity; their last items as the world left them).
    """
    pop = world if isinstance(world, Population) else Population(world)
    rng = np.random.default_rng(seed)
    k = traffic.k
    exam = ((1.0 / np.arange(1, k + 1)) ** traffic.eta).astype(np.float32)
    activity = pop.activity * rng.lognormal(0.0, traffic.activity_sigma, pop.n_users)
    s2 = traffic.propensity_sigma ** 2
    propensity = rng.lognormal(-s2 / 2, traffic.propensity_sigma, pop.n_users).astype(np.float32)
    wins = losses = decided = 0
    for start in range(0, requests, 1000):
        users = rng.choice(pop.n_users, min(1000, requests - start), p=activity / activity.sum())
        truth = pop.truth(users, pop.world.last_item[users])
        coins = rng.random((len(users), k // 2 + 1)) < 0.5
        lists_c = control.rank(truth, k, rng.standard_normal(truth.shape, np.float32))
        lists_t = treatment.rank(truth, k, rng.standard_normal(truth.shape, np.float32))
        shown, teams = team_draft_batch(lists_c, lists_t, k, coins)
        clicks = _click(rng, truth, shown, exam, propensity[users])
        margin, credited = outcome(clicks, teams)
        wins, losses = wins + int((margin > 0).sum()), losses + int((margin < 0).sum())
        decided += int(credited.sum())
    return (wins - losses) / max(decided, 1), decided / requests


def team_draft_batch(control: np.ndarray, treatment: np.ndarray, k: int,
                     coins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``interleave.team_draft`` for many requests at once, on integer item ids.

    ``control``, ``treatment``: ``(R, L)`` ranked lists, each row's items distinct, ``L >= k``
    (so neither list runs out of new items before ``k`` are shown); ``coins[r, n]``: the coin
    of request ``r``'s ``n``-th round in which the models disagree (True: the control's item
    goes first), at least ``k // 2 + 1`` per request (``team_draft`` takes them from its seed's
    hash, wrapping round). Returns ``(R, k)`` items and each item's credit sign: +1 the
    treatment's team, -1 the control's, 0 an item both proposed (``BOTH``, no credit).

    How: ``team_draft`` walks a pointer down each list past items already shown; the item it
    stops at is always the first one not yet shown, so here each list keeps a mask of its
    places already shown (``used``), and an item shown is marked in both lists (through the
    ``(R, L, L)`` table of which places hold the same item). A fixed number of array steps per
    round, no loop over requests.

    >>> items, teams = team_draft_batch(np.array([[1, 2, 3]]), np.array([[2, 4, 5]]), 3,
    ...                                 coins=np.array([[False, True]]))
    >>> items.tolist(), teams.tolist()
    ([[2, 1, 3]], [[1, -1, -1]])
    """
    n_req, length = control.shape
    if length < k:
        raise ValueError(f"lists of {length} items cannot fill {k} places for certain")
    same = control[:, :, None] == treatment[:, None, :]  # (R, L, L): [r, control p, treatment q]
    used_c = np.zeros((n_req, length), dtype=bool)
    used_t = np.zeros((n_req, length), dtype=bool)
    items = np.empty((n_req, k), dtype=control.dtype)
    teams = np.zeros((n_req, k), dtype=np.int8)
    filled = np.zeros(n_req, dtype=np.int64)
    rounds = np.zeros(n_req, dtype=np.int64)
    for _ in range(k):
        rows = np.flatnonzero(filled < k)
        if rows.size == 0:
            break
        pc = np.argmax(~used_c[rows], axis=1)  # each model's best item not yet shown
        pt = np.argmax(~used_t[rows], axis=1)
        ic, it = control[rows, pc], treatment[rows, pt]
        at = filled[rows]
        agree = ic == it
        control_first = coins[rows, rounds[rows] % coins.shape[1]]
        first = np.where(agree, ic, np.where(control_first, ic, it))
        second = np.where(control_first, it, ic)
        items[rows, at] = first
        teams[rows, at] = np.where(agree, 0, np.where(control_first, -1, 1))
        two = ~agree & (at + 1 < k)
        items[rows[two], at[two] + 1] = second[two]
        teams[rows[two], at[two] + 1] = np.where(control_first[two], 1, -1)
        # Both items of the round are shown now (one when they agree): mark them in both lists.
        used_c[rows, pc] = True
        used_t[rows, pt] = True
        used_c[rows] |= same[rows, :, pt]
        used_t[rows] |= same[rows, pc, :]
        filled[rows] += np.where(agree, 1, 2)
        rounds[rows] += ~agree
    return items, teams


def outcome(got: np.ndarray, teams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per request: the treatment's margin, and whether the request is decided.

    The margin is its team's items clicked minus the control's; a request is decided by a
    click on either team's item (clicks on items both models proposed credit no one), as
    ``interleave.credit`` and the experiment SQL count them.
    """
    return (got * teams).sum(axis=1), (got & (teams != 0)).any(axis=1)


class _Accumulator:
    """Per-user totals so far, for both designs."""

    def __init__(self, n_users: int):
        z = lambda: np.zeros(n_users, dtype=np.int64)  # noqa: E731
        self.imps, self.clicks, self.buys = (z(), z()), (z(), z()), (z(), z())
        self.wins, self.losses, self.decided = z(), z(), z()
        self.pwins, self.plosses, self.pdecided = z(), z(), z()
        self.seen = np.zeros(n_users, dtype=bool)

    def add_ab(self, users, treated, clicks, buys) -> None:
        for arm in (0, 1):
            rows = treated == bool(arm)
            np.add.at(self.imps[arm], users[rows], clicks.shape[1])
            np.add.at(self.clicks[arm], users[rows], clicks[rows].sum(axis=1))
            np.add.at(self.buys[arm], users[rows], buys[rows].sum(axis=1))
        self.seen[users] = True

    def add_interleaved(self, users, teams, clicks, buys) -> None:
        for got, (w, lo, d) in ((clicks, (self.wins, self.losses, self.decided)),
                                (buys, (self.pwins, self.plosses, self.pdecided))):
            margin, credited = outcome(got, teams)
            np.add.at(w, users, margin > 0)
            np.add.at(lo, users, margin < 0)
            np.add.at(d, users, credited)
        self.seen[users] = True

    def totals(self, mode: ExperimentMode):
        if mode == ExperimentMode.ab:
            arms = []
            for arm in (0, 1):
                rows = self.imps[arm] > 0
                arms.append(ArmTotals(self.imps[arm][rows], self.clicks[arm][rows],
                                      self.buys[arm][rows]))
            return arms[0], arms[1]
        rows = self.seen
        return InterleaveTotals(self.wins[rows], self.losses[rows], self.decided[rows],
                                self.pwins[rows], self.plosses[rows], self.pdecided[rows])
