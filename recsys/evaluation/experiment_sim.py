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
probability plus Gaussian noise of their own size (``Ranker.noise``): the smaller the noise,
the better the model, by an amount the simulation can state exactly (``true_ctr``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.config import ExperimentConfig, ExperimentMode
from recsys.data.world import World
from recsys.evaluation.experiment_decision import ArmTotals, InterleaveTotals, Verdict, judge
from recsys.evaluation.interleave import TREATMENT, team_draft


@dataclass(frozen=True)
class Ranker:
    """A model of known quality: the truth plus noise of standard deviation ``noise``."""

    noise: float

    def rank(self, rng: np.random.Generator, truth: np.ndarray, k: int) -> np.ndarray:
        scores = truth + self.noise * rng.standard_normal(truth.shape) if self.noise else truth
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)


@dataclass(frozen=True)
class Traffic:
    """How the simulated users arrive and look."""

    requests_per_minute: int = 100
    k: int = 10
    eta: float = 1.0  # examination probability of position p: (1 / p) ** eta
    # Real users differ far more than the world's: some come back often, some click a lot.
    # activity: each user's share of requests ~ lognormal(0, activity_sigma);
    # propensity: a user's clicks scale by lognormal(0, propensity_sigma), mean 1. Zero
    # gives the world's users as they are.
    activity_sigma: float = 0.0
    propensity_sigma: float = 0.0


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    minutes: int
    impressions: int


def run(world: World, cfg: ExperimentConfig, control: Ranker, treatment: Ranker | None,
        seed: int, traffic: Traffic = Traffic()) -> Outcome:
    """One experiment until it decides or reaches ``cfg.max_minutes``.

    ``treatment=None`` is an A/A experiment with two copies of the control: both arms get the
    very same list for the same request.
    """
    rng = np.random.default_rng(seed)
    world = world.copy()
    n_users, k = world.n_users, traffic.k
    exam = (1.0 / np.arange(1, k + 1)) ** traffic.eta
    treated = rng.random(n_users) < 0.5  # the salted hash's split, as a fresh coin per run
    activity = rng.lognormal(0.0, traffic.activity_sigma, n_users)
    activity /= activity.sum()
    s2 = traffic.propensity_sigma ** 2
    propensity = rng.lognormal(-s2 / 2, traffic.propensity_sigma, n_users)
    acc = _Accumulator(n_users)
    impressions = 0
    minute, verdict = 0, None
    while minute < cfg.max_minutes:
        minute += 1
        users = rng.choice(n_users, traffic.requests_per_minute, p=activity)
        every = np.broadcast_to(np.arange(world.n_items), (len(users), world.n_items))
        truth = world.click_probability(users, world.last_item[users], every)
        truth = np.minimum(truth * propensity[users][:, None], 1.0)
        lists_c = control.rank(rng, truth, k)
        lists_t = lists_c if treatment is None else treatment.rank(rng, truth, k)
        if cfg.mode == ExperimentMode.ab:
            shown = np.where(treated[users][:, None], lists_t, lists_c)
            clicks, buys = _react(rng, world, truth, shown, exam)
            acc.add_ab(users, treated[users], clicks, buys)
        else:
            shown, teams = _interleave(lists_c, lists_t, k, seed, minute)
            clicks, buys = _react(rng, world, truth, shown, exam)
            acc.add_interleaved(users, teams, clicks, buys)
        impressions += shown.size
        clicked_any = clicks.any(axis=1)
        last = shown[np.arange(len(users)), np.argmax(clicks, axis=1)]
        world.last_item[users[clicked_any]] = last[clicked_any]
        verdict = judge(cfg, float(minute), acc.totals(cfg.mode), impressions)
        if verdict.final:
            break
    return Outcome(verdict, minute, impressions)


def true_ctr(world: World, ranker: Ranker, seed: int = 0, requests: int = 2000,
             traffic: Traffic = Traffic()) -> float:
    """The ranker's expected clicks per impression on this world (no experiment)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, world.n_users, requests)
    every = np.broadcast_to(np.arange(world.n_items), (requests, world.n_items))
    truth = world.click_probability(users, world.last_item[users], every)
    shown = ranker.rank(rng, truth, traffic.k)
    exam = (1.0 / np.arange(1, traffic.k + 1)) ** traffic.eta
    return float((np.take_along_axis(truth, shown, axis=1) * exam).mean())


def _react(rng, world: World, truth: np.ndarray, shown: np.ndarray,
           exam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.take_along_axis(truth, shown, axis=1) * exam
    clicks = rng.random(shown.shape) < p
    t = world.tastes
    buys = clicks & (rng.random(shown.shape) < t.cart_after_click * t.purchase_after_cart)
    return clicks, buys


def _interleave(lists_c: np.ndarray, lists_t: np.ndarray, k: int, seed: int,
                minute: int) -> tuple[np.ndarray, np.ndarray]:
    shown = np.empty_like(lists_c)
    teams = np.zeros(lists_c.shape, dtype=bool)  # True: the treatment's pick
    for r in range(len(lists_c)):
        items, who = team_draft(lists_c[r].tolist(), lists_t[r].tolist(), k,
                                seed=f"{seed}-{minute}-{r}")
        shown[r] = items
        teams[r] = [w == TREATMENT for w in who]
    return shown, teams


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
            margin = (got & teams).sum(axis=1) - (got & ~teams).sum(axis=1)
            np.add.at(w, users, margin > 0)
            np.add.at(lo, users, margin < 0)
            np.add.at(d, users, got.any(axis=1))
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
