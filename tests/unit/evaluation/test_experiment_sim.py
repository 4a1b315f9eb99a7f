"""Simulated experiments: right decisions on clear differences, A/A calibrated, and the fast
paths (truth table, batched team draft) equal to the reference code they stand in for."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.config import ExperimentConfig
from recsys.data.synthetic import generate, preset
from recsys.evaluation import experiment_decision
from recsys.evaluation.experiment_decision import END, PROMOTE, STOP
from recsys.evaluation.experiment_sim import (
    Population,
    Ranker,
    outcome,
    run,
    team_draft_batch,
    true_ctr,
)
from recsys.evaluation.interleave import BOTH, CONTROL, TREATMENT, _coin_flips, team_draft
from recsys.evaluation.sequential import SequentialResult

MODES = ("interleave", "ab")


@pytest.fixture(scope="module")
def pop() -> Population:
    return Population(generate(preset("tiny")).world)


def test_truth_table_is_the_worlds_click_probability(pop):
    world, rng = pop.world, np.random.default_rng(0)
    users = rng.integers(0, world.n_users, 200)
    last = rng.integers(-1, world.n_items, 200)  # -1: a user with no last item
    every = np.broadcast_to(np.arange(world.n_items), (200, world.n_items))
    np.testing.assert_allclose(pop.truth(users, last),
                               world.click_probability(users, last, every), atol=1e-6)


def test_batched_team_draft_is_team_draft():
    rng = np.random.default_rng(1)
    for n in range(300):
        a = rng.permutation(25)[:10]
        b = a.copy() if n % 5 == 0 else rng.permutation(25)[:10]  # identical, or overlapping
        if n % 7 == 0:
            b = rng.permutation(np.arange(100, 125))[:10]  # disjoint
        coins = np.array([_coin_flips(f"r{n}")])
        items, teams = team_draft_batch(a[None], b[None], 10, coins)
        ref_items, ref_teams = team_draft([str(x) for x in a], [str(x) for x in b], 10,
                                          seed=f"r{n}")
        assert [str(x) for x in items[0]] == ref_items
        assert [{1: TREATMENT, -1: CONTROL, 0: BOTH}[t] for t in teams[0]] == ref_teams


def test_the_less_noisy_ranker_is_truly_better(pop):
    assert true_ctr(pop, Ranker(0.0)) > true_ctr(pop, Ranker(0.3)) > true_ctr(pop, Ranker(1.0))


@pytest.mark.parametrize("mode", MODES)
def test_a_clearly_better_treatment_is_promoted(pop, mode):
    cfg = ExperimentConfig(mode=mode, max_minutes=30)
    for seed in range(2):
        out = run(pop, cfg, Ranker(1.0), Ranker(0.0), seed=seed)
        assert out.verdict.decision == PROMOTE, out.verdict.reason
        assert out.verdict.evidence["primary"]["difference"] > 0


@pytest.mark.parametrize("mode", MODES)
def test_a_clearly_worse_treatment_is_stopped_by_the_guardrail(pop, mode):
    cfg = ExperimentConfig(mode=mode, max_minutes=30)
    for seed in range(2):
        out = run(pop, cfg, Ranker(0.0), Ranker(1.0), seed=seed)
        assert out.verdict.decision == STOP
        assert out.verdict.reason.startswith("guardrail")


def _binomial_upper(n: int, p: float, tail: float = 0.005) -> int:
    """The smallest c with P(Binomial(n, p) > c) < tail: more hits than c means p is wrong."""
    c, cdf = 0, 0.0
    while True:
        cdf += math.comb(n, c) * p ** c * (1 - p) ** (n - c)
        if 1 - cdf < tail:
            return c
        c += 1


def _false_positives(pop, mode: str, runs: int = 40) -> int:
    cfg = ExperimentConfig(mode=mode, max_minutes=20)  # 16 looks after min_minutes
    # Two models of equal quality with errors of their own: a true null in both designs (two
    # identical copies would interleave into lists that credit no one).
    outcomes = [run(pop, cfg, Ranker(0.1), Ranker(0.1), seed=s) for s in range(runs)]
    assert all(o.verdict.decision in (PROMOTE, STOP, END) for o in outcomes)
    return sum(o.verdict.decision != END for o in outcomes)


@pytest.mark.parametrize("mode", MODES)
def test_aa_false_positives_stay_within_a_binomial_bound_of_alpha(pop, mode):
    # alpha 0.05 over 40 runs: more than 6 false positives has probability < 0.5%.
    assert _false_positives(pop, mode) <= _binomial_upper(40, ExperimentConfig().alpha)


def test_the_aa_check_catches_a_test_that_is_not_sequential(pop, monkeypatch):
    """The same A/A runs judged by a fixed-horizon z-test at every look (what the always-valid
    p-value replaces) break the bound: the check above can fail."""

    def peeking(estimate, tau):
        z = abs(estimate.theta) / math.sqrt(estimate.variance) if estimate.variance > 0 else 0.0
        return SequentialResult(estimate, 0.0, math.erfc(z / math.sqrt(2)))

    monkeypatch.setattr(experiment_decision, "msprt", peeking)
    assert _false_positives(pop, "ab") > _binomial_upper(40, ExperimentConfig().alpha)


def test_identical_lists_interleaved_credit_no_one(pop):
    rng = np.random.default_rng(2)
    users = rng.integers(0, pop.n_users, 2_000)
    truth = pop.truth(users, pop.world.last_item[users])
    lists = Ranker(0.1).rank(truth, 10, rng.standard_normal(truth.shape, np.float32))
    items, teams = team_draft_batch(lists, lists, 10, rng.random((len(users), 6)) < 0.5)
    np.testing.assert_array_equal(items, lists)  # the one list, in its order
    assert (teams == 0).all()
    out = run(pop, ExperimentConfig(mode="interleave", max_minutes=10), Ranker(0.1), None, seed=0)
    assert out.verdict.decision == END


def test_two_equally_good_models_interleaved_win_about_as_often_as_they_lose(pop):
    rng = np.random.default_rng(2)
    users = rng.integers(0, pop.n_users, 20_000)
    truth = pop.truth(users, pop.world.last_item[users])
    a, b = (Ranker(0.1).rank(truth, 10, rng.standard_normal(truth.shape, np.float32))
            for _ in range(2))
    items, teams = team_draft_batch(a, b, 10, rng.random((len(users), 6)) < 0.5)
    assert (abs((teams == 1).sum(axis=1) - (teams == -1).sum(axis=1)) <= 1).all()
    clicks = rng.random(items.shape) < np.take_along_axis(truth, items, axis=1) / np.arange(1, 11)
    margin, decided = outcome(clicks, teams)
    wins, losses = int((margin > 0).sum()), int((margin < 0).sum())
    assert wins + losses > 2_000 and decided.sum() >= wins + losses
    assert abs(wins - losses) < 3 * math.sqrt(wins + losses)  # a fair coin's 3 sigma


def test_another_activity_shares_the_truth_table_and_is_checked(pop):
    busy = pop.with_activity(np.arange(pop.n_users, dtype=float))
    assert busy.base is pop.base and (pop.activity == 1).all()
    with pytest.raises(ValueError, match="non-negative rates"):
        pop.with_activity(np.ones(pop.n_users + 1))
