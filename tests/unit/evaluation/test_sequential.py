"""The always-valid test's arithmetic on hand-checked numbers, and its validity under many looks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation.sequential import (
    Estimate,
    ab_estimate,
    interleave_estimate,
    msprt,
    ratio_and_variance,
    tau_for,
)


def test_ratio_variance_by_hand():
    # R = 3/8; residuals 0.25, -0.75, 0.5; sum of squares 0.875; / 64 * 3/2
    r, v = ratio_and_variance(np.array([1.0, 0.0, 2.0]), np.array([2.0, 2.0, 4.0]))
    assert r == pytest.approx(0.375)
    assert v == pytest.approx(0.875 / 64 * 1.5)


def test_ratio_variance_is_clustered_by_user():
    # The same 100 clicks in 1000 impressions: spread evenly over 100 users, or all from a
    # few users. Clustering makes the second far less certain; a per-impression binomial
    # variance would call them equal.
    even = ratio_and_variance(np.full(100, 1.0), np.full(100, 10.0))
    lumpy = ratio_and_variance(np.r_[np.full(10, 10.0), np.zeros(90)], np.full(100, 10.0))
    assert even[0] == lumpy[0] == pytest.approx(0.1)
    assert even[1] < 1e-12 and lumpy[1] > 5e-4


def test_too_few_users_give_no_evidence():
    assert ratio_and_variance(np.array([1.0]), np.array([3.0]))[1] == math.inf
    assert msprt(Estimate(0.5, math.inf, 0.1, 0.6, 1), tau=0.1).p_value == 1.0


def test_msprt_by_hand():
    # V = tau^2 = 1e-4, theta = 0.02: log L = 0.5 ln(1/2) + 1e-4 * 4e-4 / (2e-4 * 2e-4)
    r = msprt(Estimate(0.02, 1e-4, 0.1, 0.12, 500), tau=0.01)
    assert r.log_lambda == pytest.approx(0.5 * math.log(0.5) + 1.0)
    assert r.p_value == pytest.approx(math.exp(-r.log_lambda))
    assert not r.significant(0.05)
    strong = msprt(Estimate(0.05, 1e-4, 0.1, 0.15, 500), tau=0.01)
    assert strong.log_lambda == pytest.approx(0.5 * math.log(0.5) + 6.25)
    assert strong.significant(0.05)


def test_ab_and_interleave_estimates():
    est = ab_estimate((np.array([1.0, 1.0]), np.array([10.0, 10.0])),
                      (np.array([2.0, 2.0, 2.0]), np.array([10.0, 10.0, 10.0])))
    assert est.theta == pytest.approx(0.1) and est.control == pytest.approx(0.1)
    assert est.users == 2 and est.variance == 0.0
    inter = interleave_estimate(np.array([3, 1]), np.array([1, 0]), np.array([5, 2]))
    assert inter.theta == pytest.approx(3 / 7) and inter.treatment == pytest.approx(0.5 + 3 / 14)
    assert tau_for(est, 0.1, relative=True) == pytest.approx(0.01)
    assert tau_for(inter, 0.1, relative=False) == 0.1


def test_always_valid_under_a_look_after_every_user():
    """A/A with 200 looks each: the running-minimum p-value stays valid, a fixed z-test
    peeked at as often does not (why the sequential test exists)."""
    rng = np.random.default_rng(0)
    runs, looks, per_look, alpha = 300, 40, 25, 0.05
    sequential = peeking = 0
    for _ in range(runs):
        ctr = rng.beta(2, 18, 2 * looks * per_look)  # users differ
        imps = rng.integers(1, 20, ctr.size).astype(float)
        clicks = rng.binomial(imps.astype(int), ctr).astype(float)
        arm = rng.random(ctr.size) < 0.5
        hit_seq = hit_z = False
        for look in range(1, looks + 1):
            n = look * 2 * per_look
            a, b = ~arm[:n], arm[:n]
            est = ab_estimate((clicks[:n][a], imps[:n][a]), (clicks[:n][b], imps[:n][b]))
            hit_seq |= msprt(est, tau_for(est, 0.1, relative=True)).significant(alpha)
            hit_z |= abs(est.theta) / math.sqrt(est.variance) > 1.96
        sequential += hit_seq
        peeking += hit_z
    assert sequential / runs <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)
    assert peeking / runs > 2 * alpha
