"""Always-valid inference for online experiments: a mixture SPRT over a clustered estimate.

Why this test: an experiment's dashboard is looked at every minute, and the decision flow acts
on it every minute. A fixed-horizon test (t-test, z-test) checked that often rejects a true
null far more often than its level says: with 100 looks, a nominal 5% test rejects an A/A
experiment about 40% of the time. The mixture sequential probability ratio test (mSPRT;
Robbins 1970, Johari, Koomen, Pekelis & Walsh, "Always valid inference", Operations Research
2022; the basis of Optimizely's stats engine) gives p-values that stay valid at every look:
under H0 the likelihood ratio mixed over alternatives is a martingale, and by Ville's
inequality it ever reaches 1/alpha with probability at most alpha.

The statistic. For an estimate ``theta_hat`` of a difference (treatment minus control) that is
approximately normal with variance ``V`` (estimated), and a normal mixing distribution
N(0, tau^2) over the true difference::

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * theta_hat^2 / (2 * V * (V + tau^2)))

H0 (no difference) is rejected once ``Lambda >= 1 / alpha``; the always-valid p-value is the
running minimum of ``1 / Lambda``. ``tau`` sets the effect size the test is most sensitive to
(too small: slow on big effects; too large: slow on small ones); it never breaks validity.

Assumptions (stated in the README too): the estimate is close to normal (the central limit
theorem over users: hence ``min_users``), its variance is estimated consistently (clustered by
user: one user's impressions are not independent, so the unit of the variance is the user,
through the delta method for a ratio of sums), and users are exchangeable over time (no
strong day-of-week effects inside one experiment). Plugging in an estimated variance makes the
guarantee approximate; the A/A calibration in ``bench/experiments.py`` measures how close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A difference of two ratio metrics (or one centred ratio), with its clustered variance."""

    theta: float  # treatment minus control (interleaving: preference margin in [-1, 1])
    variance: float
    control: float  # the control arm's metric (interleaving: 0)
    treatment: float
    users: int  # users behind the estimate (the smaller arm for A/B)


@dataclass(frozen=True)
class SequentialResult:
    estimate: Estimate
    log_lambda: float
    p_value: float  # always valid: the running minimum is kept by the caller

    def significant(self, alpha: float) -> bool:
        return self.p_value <= alpha


def ratio_and_variance(numerators: np.ndarray, denominators: np.ndarray) -> tuple[float, float]:
    """A ratio of sums over users and its delta-method variance, clustered by user.

    ``numerators[u]`` and ``denominators[u]`` are user u's totals (clicks and impressions, say).
    The ratio R = sum(Y) / sum(N); treating users as the independent unit,
    Var(R) ~= sum((Y_u - R N_u)^2) / (sum N)^2 * n / (n - 1).

    >>> r, v = ratio_and_variance(np.array([1.0, 0.0, 2.0]), np.array([2.0, 2.0, 4.0]))
    >>> round(r, 4), round(v, 6)
    (0.375, 0.020508)
    """
    y = np.asarray(numerators, dtype=np.float64)
    n = np.asarray(denominators, dtype=np.float64)
    total = n.sum()
    users = len(n)
    if total <= 0 or users < 2:
        return (float(y.sum() / total) if total > 0 else 0.0), math.inf
    ratio = y.sum() / total
    residual = y - ratio * n
    return float(ratio), float((residual ** 2).sum() / total ** 2 * users / (users - 1))


def ab_estimate(control: tuple[np.ndarray, np.ndarray],
                treatment: tuple[np.ndarray, np.ndarray]) -> Estimate:
    """Difference of two arms' ratio metrics.

    The arms' users are independent, so the variances add.
    """
    rc, vc = ratio_and_variance(*control)
    rt, vt = ratio_and_variance(*treatment)
    return Estimate(rt - rc, vc + vt, rc, rt, min(len(control[1]), len(treatment[1])))


def interleave_estimate(wins: np.ndarray, losses: np.ndarray, decided: np.ndarray) -> Estimate:
    """The treatment's preference margin from per-user counts of interleaved requests.

    ``wins[u]``: requests of user u where the treatment's team got more clicks, ``losses[u]``:
    the control's team got more, ``decided[u]``: requests with any click (wins, losses and
    ties). The margin (sum(wins) - sum(losses)) / sum(decided) is in [-1, 1]; the preference
    share of the treatment is 0.5 + margin / 2 (ties split evenly, as in Chapelle et al. 2012).
    """
    w = np.asarray(wins, dtype=np.float64)
    lo = np.asarray(losses, dtype=np.float64)
    margin, variance = ratio_and_variance(w - lo, np.asarray(decided, dtype=np.float64))
    share = 0.5 + margin / 2
    return Estimate(margin, variance, 0.5, share, int((np.asarray(decided) > 0).sum()))


def msprt(estimate: Estimate, tau: float) -> SequentialResult:
    """The mixture likelihood ratio of H0: theta = 0 for one look (see the module docstring).

    >>> r = msprt(Estimate(0.02, 1e-4, 0.1, 0.12, 500), tau=0.01)
    >>> round(r.log_lambda, 4), round(r.p_value, 4)
    (0.6534, 0.5203)
    """
    v, tau2 = estimate.variance, tau * tau
    if not math.isfinite(v) or v <= 0 or tau2 <= 0:
        return SequentialResult(estimate, 0.0, 1.0)
    log_lambda = 0.5 * math.log(v / (v + tau2)) + tau2 * estimate.theta ** 2 / (2 * v * (v + tau2))
    return SequentialResult(estimate, log_lambda, float(min(1.0, math.exp(-log_lambda))))


def tau_for(estimate: Estimate, effect_scale: float, relative: bool) -> float:
    """The mixing scale.

    A relative lift of the control's metric (A/B), or an absolute preference margin
    (interleaving).
    """
    if relative:
        return effect_scale * max(abs(estimate.control), 1e-6)
    return effect_scale
