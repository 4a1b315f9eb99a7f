"""The service's side of an online experiment: which model answers a user, and how.

The experiment itself is data (``recsys.data.experiments``): the service re-reads the store on
every refresh (a few small JSON files) and keeps the treatment model loaded beside the
champion while the experiment is active. The control arm is always the champion being
served, so a promotion mid-experiment never leaves a user without a model.

Why load failures are not errors of the answer: a treatment that cannot load must not cost a
single recommendation; the service keeps answering everyone from the champion (no variant is
logged, so the analysis counts nothing for either arm) and ``/health`` says why.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from recsys.config import ExperimentConfig
from recsys.data.experiments import Experiment, ExperimentStore
from recsys.evaluation.interleave import team_draft
from recsys.registry.registry import Registry
from recsys.scoring import assignment
from recsys.scoring.scorer import Scorer

log = logging.getLogger(__name__)

INTERLEAVED = "interleaved"  # the response's arm for a team-draft list


@dataclass(frozen=True)
class LiveExperiment:
    """The active experiment and its loaded treatment; replaced as a whole, never mutated."""

    experiment: Experiment
    scorer: Scorer | None  # None when the treatment could not load
    error: str | None = None

    @property
    def treatment_version(self) -> str:
        return self.experiment.treatment_version

    @functools.cached_property
    def settings(self) -> ExperimentConfig:
        """Validated once per loaded record, not on every request."""
        return self.experiment.settings

    @property
    def mode(self) -> str:
        return str(self.settings.mode)

    def arm(self, user_id: str) -> str | None:
        """The user's arm, or None when the user is outside the experiment (or it can't run)."""
        if self.scorer is None:
            return None
        return assignment.arm(self.experiment.salt, user_id, self.settings.traffic_share)

    def describe(self) -> dict:
        return {"id": self.experiment.id, "mode": self.mode,
                "treatment_version": self.treatment_version,
                "loaded": self.scorer is not None, "error": self.error}


def follow(store: ExperimentStore, registry: Registry,
           current: LiveExperiment | None) -> LiveExperiment | None:
    """The experiment to serve now, its treatment loaded once.

    Keeps the loaded treatment while the same experiment runs, loads a new one's, drops it
    when none is active. A failed load is retried at the next refresh.
    """
    exp = store.active()
    if exp is None:
        if current is not None:
            log.info("experiment %s ended: champion only", current.experiment.id)
        return None
    if (current is not None and current.experiment.id == exp.id
            and current.treatment_version == exp.treatment_version and current.scorer):
        return LiveExperiment(exp, current.scorer)  # the record may have moved to deciding
    try:
        scorer = Scorer.from_registry(registry, exp.treatment_version)
    except Exception as exc:  # keep serving the champion alone
        error = f"{type(exc).__name__}: {exc}"
        log.warning("experiment %s: cannot load treatment version %s: %s", exp.id,
                    exp.treatment_version, error)
        return LiveExperiment(exp, None, error)
    log.info("experiment %s (%s): treatment version %s loaded", exp.id,
             exp.settings.mode, exp.treatment_version)
    return LiveExperiment(exp, scorer)


def interleave(control: list[dict], treatment: list[dict], k: int,
               request_id: str) -> tuple[list[dict], list[str]]:
    """Team-draft the two models' answers; each item keeps the picking model's score.

    An item both models proposed in the same round (team ``both``) keeps the control's.
    """
    by_team = {"control": {r["item_id"]: r for r in control},
               "treatment": {r["item_id"]: r for r in treatment}}
    by_team["both"] = by_team["control"]
    items, teams = team_draft([r["item_id"] for r in control],
                              [r["item_id"] for r in treatment], k, seed=request_id)
    return [by_team[t][i] for i, t in zip(items, teams, strict=True)], teams
