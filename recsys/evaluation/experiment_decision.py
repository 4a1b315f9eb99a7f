"""The rules that turn an experiment's evidence into promote, stop, end or keep running.

One function, used by the every-minute decision flow on real impressions and by the A/A and
sensitivity benchmarks on simulated ones, so what is calibrated is what decides.

Rules, checked in this order at every look (each look is valid: see ``sequential``):

1. Too early (fewer than ``min_minutes``, or fewer than ``min_users`` users in an arm or with
   a decided interleaved request): keep running, unless the maximum duration has passed.
2. Guardrails: the treatment is significantly worse on the primary metric, or on the
   guardrail metric (purchases per impression by default): **stop**; the champion stays.
3. The treatment is significantly better on the primary metric: **promote**.
4. ``max_minutes`` reached: **end**, inconclusive; nothing changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from recsys.config import ExperimentConfig, ExperimentMetric, ExperimentMode
from recsys.evaluation.sequential import (
    SequentialResult,
    ab_estimate,
    interleave_estimate,
    msprt,
    tau_for,
)

PROMOTE, STOP, END = "promote", "stop", "end"


@dataclass
class ArmTotals:
    """Per-user totals of one A/B arm (arrays aligned by user)."""

    impressions: np.ndarray
    clicks: np.ndarray  # impressions with an attributed click
    purchases: np.ndarray  # impressions with an attributed purchase

    def metric(self, metric: ExperimentMetric) -> tuple[np.ndarray, np.ndarray]:
        num = self.clicks if metric == ExperimentMetric.ctr else self.purchases
        return np.asarray(num, dtype=np.float64), np.asarray(self.impressions, np.float64)


@dataclass
class InterleaveTotals:
    """Per-user counts of interleaved requests, for clicks and for purchases.

    Wins, losses, and decided (requests where either team got any credit).
    """

    wins: np.ndarray
    losses: np.ndarray
    decided: np.ndarray
    purchase_wins: np.ndarray = field(default_factory=lambda: np.zeros(0))
    purchase_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    purchase_decided: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class Verdict:
    decision: str | None  # promote | stop | end | None (keep running)
    reason: str
    evidence: dict

    @property
    def final(self) -> bool:
        return self.decision is not None


def judge(cfg: ExperimentConfig, minutes: float,
          totals: tuple[ArmTotals, ArmTotals] | InterleaveTotals,
          impressions: int = 0) -> Verdict:
    """Apply the rules to one look at an experiment's evidence."""
    if cfg.mode == ExperimentMode.ab:
        control, treatment = totals
        primary = _ab(cfg, control, treatment, cfg.metric)
        guard = (_ab(cfg, control, treatment, cfg.guardrail)
                 if cfg.guardrail and cfg.guardrail != cfg.metric else None)
        users = min(len(control.impressions), len(treatment.impressions))
    else:
        primary = _interleaved(cfg, totals.wins, totals.losses, totals.decided)
        guard = (_interleaved(cfg, totals.purchase_wins, totals.purchase_losses,
                              totals.purchase_decided)
                 if cfg.guardrail == ExperimentMetric.purchase_rate
                 and len(totals.purchase_decided) else None)
        users = primary.estimate.users
    evidence = {"minutes": round(minutes, 2), "users": int(users), "impressions": int(impressions),
                "primary": _describe(primary, cfg.metric.value if cfg.mode == "ab" else "clicks"),
                "guardrail": _describe(guard, "purchases") if guard else None}
    return Verdict(*_rule(cfg, minutes, users, primary, guard), evidence)


def _rule(cfg: ExperimentConfig, minutes: float, users: int, primary: SequentialResult,
          guard: SequentialResult | None) -> tuple[str | None, str]:
    if minutes < cfg.min_minutes or users < cfg.min_users:
        if minutes >= cfg.max_minutes:
            return END, f"too little traffic in {cfg.max_minutes:g} min ({users} users)"
        return None, f"collecting ({users} users, {minutes:.1f} min)"
    if primary.significant(cfg.alpha) and primary.estimate.theta < 0:
        return STOP, (f"guardrail: the treatment is worse on the primary metric "
                      f"(p = {primary.p_value:.3g})")
    if guard is not None and guard.significant(cfg.alpha) and guard.estimate.theta < 0:
        return STOP, f"guardrail: purchases dropped (p = {guard.p_value:.3g})"
    if primary.significant(cfg.alpha):
        return PROMOTE, f"the treatment is better (p = {primary.p_value:.3g})"
    if minutes >= cfg.max_minutes:
        return END, (f"inconclusive after {cfg.max_minutes:g} min "
                     f"(p = {primary.p_value:.3g})")
    return None, f"no decision yet (p = {primary.p_value:.3g})"


def _ab(cfg: ExperimentConfig, control: ArmTotals, treatment: ArmTotals,
        metric: ExperimentMetric) -> SequentialResult:
    est = ab_estimate(control.metric(metric), treatment.metric(metric))
    return msprt(est, tau_for(est, cfg.effect_scale, relative=True))


def _interleaved(cfg: ExperimentConfig, wins, losses, decided) -> SequentialResult:
    est = interleave_estimate(wins, losses, decided)
    return msprt(est, tau_for(est, cfg.effect_scale, relative=False))


def _describe(result: SequentialResult, name: str) -> dict:
    est = asdict(result.estimate)
    return {"metric": name, "control": round(est["control"], 6),
            "treatment": round(est["treatment"], 6), "difference": round(est["theta"], 6),
            "p_value": round(result.p_value, 6)}
