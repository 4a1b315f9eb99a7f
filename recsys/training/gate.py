"""The promotion gate: a candidate replaces the champion only if nothing says it is worse.

Checks, in order: every weight is finite; the model scores a smoke set of histories (empty,
one item, long) into finite, well-formed top-K lists; its recommendations have not collapsed
onto a few items; and on every evaluation set (the held-out newest events and the guard set)
its NDCG@10 is no worse than the champion's by more than the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from recsys import metrics as M
from recsys.config import GateConfig
from recsys.data.containers import EvalSet
from recsys.evaluation.evaluator import rank_cases
from recsys.models.seqrec import SeqRec

K = 10


@dataclass
class SetScore:
    """One model on one evaluation set."""

    n: int
    ndcg: float
    hr: float
    distinct: int  # distinct items across all top-K lists
    gains: np.ndarray | None = None  # per-case NDCG@10, for the paired comparison

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}ndcg@{K}": self.ndcg, f"{prefix}hr@{K}": self.hr,
                f"{prefix}distinct@{K}": float(self.distinct), f"{prefix}n": float(self.n)}


def score_set(net: SeqRec, data: EvalSet | None, device: torch.device | str = "cpu",
              batch_size: int = 512) -> SetScore:
    """NDCG/HR@10 with full ranking; a target the model has no row for counts as a miss."""
    if data is None or len(data) == 0:
        return SetScore(0, float("nan"), float("nan"), 0)
    ranked = rank_cases(net, data, K, batch_size, device)
    return SetScore(len(ranked.ranks), M.ndcg(ranked.ranks, K), M.hit_rate(ranked.ranks, K),
                    int(len(np.unique(ranked.top))), ranked.ndcg_gains(K))


def finite_weights(net: SeqRec) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in net.state_dict().values()
               if p.is_floating_point())


@torch.no_grad()
def smoke_test(net: SeqRec, device: torch.device | str = "cpu") -> str | None:
    """None if the model scores sane lists; otherwise what is wrong with them."""
    n, L = net.n_items, net.cfg.max_len
    g = torch.Generator().manual_seed(0)
    rows = torch.zeros(4, L, dtype=torch.long)
    rows[1, -1] = 1
    rows[2, -min(L, 5):] = torch.randint(1, n + 1, (min(L, 5),), generator=g)
    rows[3] = torch.randint(1, n + 1, (L,), generator=g)
    types = (rows > 0).long()
    try:
        scores = net.score(rows.to(device), types.to(device)).float().cpu()
    except Exception as exc:  # a model that cannot score at all fails the gate, not the job
        return f"scoring raised {type(exc).__name__}: {exc}"
    if tuple(scores.shape) != (4, n + 1):
        return f"scores have shape {tuple(scores.shape)}, expected {(4, n + 1)}"
    if not torch.isfinite(scores[:, 1:]).all():
        return "scores contain NaN or inf"
    top = scores.topk(min(K, n), dim=1).indices
    if (top < 1).any():
        return "top-K lists contain the padding index"
    return None


@dataclass
class Verdict:
    promote: bool
    reason: str
    figures: dict[str, float] = field(default_factory=dict)


def paired_drop(champion: SetScore, challenger: SetScore) -> tuple[float, float]:
    """Mean NDCG@10 drop (champion - challenger) over the same cases, and its standard error."""
    if champion.gains is None or challenger.gains is None or \
            len(champion.gains) != len(challenger.gains) or len(champion.gains) < 2:
        return champion.ndcg - challenger.ndcg, 0.0
    diff = champion.gains - challenger.gains
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))


def _worse(champion: SetScore, challenger: SetScore, cfg: GateConfig) -> tuple[bool, float, float]:
    """Worse = the drop exceeds the tolerance and is not explained by sampling noise."""
    if math.isnan(champion.ndcg):
        return False, 0.0, 0.0
    drop, se = paired_drop(champion, challenger)
    return drop > cfg.tolerance * champion.ndcg + 1e-12 and drop > cfg.z * se, drop, se


def sanity(net: SeqRec, losses_finite: bool = True,
           device: torch.device | str = "cpu") -> str | None:
    """None if the candidate may be evaluated at all; otherwise why it is rejected outright."""
    if not losses_finite:
        return "training loss was NaN/inf"
    if not finite_weights(net):
        return "weights contain NaN/inf"
    problem = smoke_test(net, device)
    return f"smoke scoring failed: {problem}" if problem else None


def figures_of(scores: dict[str, SetScore], role: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, score in scores.items():
        out |= score.as_dict(f"{name}.{role}.")
    return out


def compare(champion: dict[str, SetScore], challenger: dict[str, SetScore],
            cfg: GateConfig) -> Verdict:
    """Promotion decision of a sane incremental candidate, with every figure it used."""
    figures = figures_of(champion, "champion") | figures_of(challenger, "challenger")
    for name, score in challenger.items():
        base = champion[name]
        if score.n == 0:
            continue
        if math.isnan(score.ndcg):
            return Verdict(False, f"{name} NDCG@{K} is NaN", figures)
        if base.distinct and score.distinct < cfg.min_distinct_ratio * base.distinct:
            return Verdict(False, (
                f"recommendations collapsed on {name}: {score.distinct} distinct items in the "
                f"top-{K} lists against the champion's {base.distinct}"), figures)
        worse, drop, se = _worse(base, score, cfg)
        figures |= {f"{name}.drop": drop, f"{name}.drop_se": se}
        if worse:
            return Verdict(False, (
                f"{name} NDCG@{K} {score.ndcg:.4f} is worse than the champion's "
                f"{base.ndcg:.4f} by more than {cfg.tolerance:.0%} (drop {drop:.4f}, "
                f"{drop / se if se else float('inf'):.1f} standard errors)"), figures)
    summary = ", ".join(f"{name} NDCG@{K} {challenger[name].ndcg:.4f} vs {champion[name].ndcg:.4f}"
                        for name in challenger if challenger[name].n)
    summary = summary or "no evaluation events"
    return Verdict(True, f"not worse within {cfg.tolerance:.0%}: {summary}", figures)


def decide_full(valid_ndcg: float, popularity_ndcg: float, net: SeqRec, cfg: GateConfig,
                device: torch.device | str = "cpu") -> Verdict:
    """Promotion decision of a full retrain: sane, and better than popularity on validation.

    Validation, never test: the test split reports a model once and chooses nothing. A full
    retrain is not compared with an incremental champion on held-out events: the champion has
    usually trained on them already, which would bias the comparison.
    """
    figures = {"valid.ndcg@10": valid_ndcg, "valid.popularity.ndcg@10": popularity_ndcg}
    problem = sanity(net, True, device)
    if problem:
        return Verdict(False, problem, figures)
    if not math.isfinite(valid_ndcg):
        return Verdict(False, "validation NDCG@10 is NaN", figures)
    floor = popularity_ndcg * cfg.full_min_lift_over_popularity
    if valid_ndcg <= floor:
        return Verdict(False, (f"validation NDCG@10 {valid_ndcg:.4f} does not beat "
                               f"popularity's {popularity_ndcg:.4f}"), figures)
    return Verdict(True, (f"full retrain: validation NDCG@10 {valid_ndcg:.4f} beats "
                          f"popularity's {popularity_ndcg:.4f}"), figures)
