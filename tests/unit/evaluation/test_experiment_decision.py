"""The decision rules: too early, guardrails, promotion, the end, in that order."""

from __future__ import annotations

import numpy as np

from recsys.config import ExperimentConfig
from recsys.evaluation.experiment_decision import (
    END,
    PROMOTE,
    STOP,
    ArmTotals,
    InterleaveTotals,
    judge,
)

RNG = np.random.default_rng(0)


def _arm(users: int, ctr: float, purchase: float, imps: int = 20) -> ArmTotals:
    n = np.full(users, imps)
    return ArmTotals(n, RNG.binomial(n, ctr), RNG.binomial(n, purchase))


AB = ExperimentConfig(mode="ab", min_minutes=5, max_minutes=60, min_users=30)
IL = ExperimentConfig(mode="interleave", min_minutes=5, max_minutes=60, min_users=30)


def test_too_early_keeps_running_then_ends_at_the_maximum():
    strong = (_arm(400, 0.05, 0.01), _arm(400, 0.15, 0.01))
    assert judge(AB, 2.0, strong).decision is None  # clear, but before min_minutes
    few = (_arm(10, 0.05, 0.01), _arm(10, 0.15, 0.01))
    assert judge(AB, 10.0, few).decision is None  # too few users
    assert judge(AB, 61.0, few).decision == END


def test_ab_promotes_a_better_treatment_and_stops_a_worse_one():
    better = judge(AB, 10.0, (_arm(400, 0.05, 0.01), _arm(400, 0.10, 0.01)))
    assert better.decision == PROMOTE and better.evidence["primary"]["difference"] > 0
    worse = judge(AB, 10.0, (_arm(400, 0.10, 0.01), _arm(400, 0.05, 0.01)))
    assert worse.decision == STOP and "primary" in worse.reason


def test_ab_guardrail_stops_a_click_winner_that_loses_purchases():
    v = judge(AB, 10.0, (_arm(2000, 0.10, 0.05), _arm(2000, 0.105, 0.01)))
    assert v.decision == STOP and "purchases" in v.reason
    assert v.evidence["guardrail"]["difference"] < 0


def test_ab_equal_arms_stay_undecided_and_end_inconclusive():
    same = (_arm(400, 0.08, 0.01), _arm(400, 0.08, 0.01))
    assert judge(AB, 10.0, same).decision is None
    ended = judge(AB, 60.0, same)
    assert ended.decision == END and "inconclusive" in ended.reason


def _interleaved(users: int, p_win: float, decided: int = 5) -> InterleaveTotals:
    d = np.full(users, decided)
    ties = RNG.binomial(d, 0.2)
    wins = RNG.binomial(d - ties, p_win)
    return InterleaveTotals(wins, d - ties - wins, d)


def test_interleave_promotes_stops_and_ends():
    assert judge(IL, 10.0, _interleaved(200, 0.65)).decision == PROMOTE
    assert judge(IL, 10.0, _interleaved(200, 0.35)).decision == STOP
    assert judge(IL, 10.0, _interleaved(200, 0.5)).decision is None
    assert judge(IL, 60.0, _interleaved(200, 0.5)).decision == END
