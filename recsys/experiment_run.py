"""Online experiments as the operator and the every-minute flow run them: start, look, act, stop.

``decide`` is the decision flow's body. Its order is what makes a crash harmless:

1. look at the evidence (``experiment_analysis.look``);
2. if the rules decide, **record** the decision with its evidence in the experiment's record
   (status ``deciding``);
3. **act**: promote the treatment through the registry (``Registry.promote``: idempotent,
   under the registry lock), or leave the champion in place; tag both versions with the
   outcome and the evidence (what the MLflow UI shows);
4. mark the experiment finished.

A run killed after 2 finds ``deciding`` on its next run and acts again; acting twice moves
nothing twice. A run killed before 2 simply looks again.

The control arm follows the ``champion`` alias (micro-batch updates keep it fresh while the
experiment runs); the treatment is the version resolved when the experiment starts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from recsys.config import AttributionConfig, ExperimentConfig, Paths, TrackingConfig
from recsys.data.experiments import (
    DECIDING,
    END,
    INCONCLUSIVE,
    PROMOTE,
    PROMOTED,
    RUNNING,
    STOP,
    STOPPED,
    Experiment,
    ExperimentStore,
)
from recsys.evaluation.experiment_analysis import Look, look
from recsys.faults import crash_point
from recsys.registry.registry import CHALLENGER, CHAMPION, Registry
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)
FINISHED = {PROMOTE: PROMOTED, STOP: STOPPED, END: INCONCLUSIVE}


class ExperimentError(ValueError):
    """An experiment cannot start or stop as asked; the message says why."""


@dataclass(frozen=True)
class Decided:
    experiment: Experiment
    look: Look | None  # None when a recorded decision was only acted on
    acted: bool


def start(paths: Paths, cfg: ExperimentConfig,
          tracking: TrackingConfig | None = None) -> Experiment:
    """Start an experiment of ``cfg.treatment`` against ``cfg.control``; one at a time."""
    registry = Registry(paths, tracking or TrackingConfig())
    store = ExperimentStore(paths)
    control = _resolve(registry, cfg.control)
    treatment = _resolve(registry, cfg.treatment)
    if cfg.treatment == CHALLENGER and treatment == control:
        # Named by number, the same version is the operator's choice (a frozen version against
        # the champion alias that micro-batches will move, say); by default it is a stale alias.
        raise ExperimentError(
            f"no version waits as challenger, and the {CHALLENGER!r} alias names version "
            f"{control}, the control itself (micro-batch updates move the alias to their "
            f"candidates): name the treatment's version (`--treatment N`) or train one (a full "
            f"retrain that does not replace the champion waits as challenger)")
    with store.writing():
        if (active := store.active()) is not None:
            raise ExperimentError(f"experiment {active.id} is still {active.status}: stop it "
                                  f"first (`recsys experiment stop {active.id}`)")
        exp = store.create(cfg, control, treatment)
    _tag(registry, exp, "running")
    log.info("experiment %s started: version %s (treatment) against %s (control), %s, "
             "%.0f%% of users", exp.id, treatment, control, cfg.mode.value,
             100 * cfg.traffic_share)
    return exp


def start_for_candidate(paths: Paths, version: str, cfg: ExperimentConfig | None = None,
                        tracking: TrackingConfig | None = None) -> Experiment | None:
    """A candidate from outside the champion's lineage (a full retrain) meets it online.

    None when another experiment is still running: the candidate waits as challenger, and
    the operator starts its experiment when that one ends.
    """
    cfg = (cfg or ExperimentConfig()).model_copy(update={"treatment": str(version)})
    try:
        return start(paths, cfg, tracking)
    except ExperimentError as exc:
        log.warning("version %s waits as challenger: %s", version, exc)
        return None


def start_waiting(paths: Paths, cfg: ExperimentConfig | None = None,
                  tracking: TrackingConfig | None = None) -> Experiment | None:
    """Start the experiment of the version waiting as challenger, if any and none is running.

    A full retrain that finds another experiment running waits as challenger; the
    every-minute decision flow calls this when it finds nothing running, so the wait ends
    with the experiment before it.
    """
    if ExperimentStore(paths).active() is not None:
        return None
    registry = Registry(paths, tracking or TrackingConfig())
    waiting, champion = registry.waiting_challenger(), registry.champion()
    if waiting is None or champion is None or waiting.version == champion.version:
        return None
    return start_for_candidate(paths, waiting.version, cfg, tracking)


def _resolve(registry: Registry, name: str) -> str:
    """The version a name means: a number, or an alias.

    ``challenger`` prefers a version waiting as challenger (``Registry.waiting_challenger``)
    to the alias, which micro-batch updates keep moving.
    """
    if name.isdigit():
        return registry.get(name).version
    version = registry.waiting_challenger() if name == CHALLENGER else None
    version = version or registry.alias(name)
    if version is None:
        raise ExperimentError(f"no model version is aliased {name!r}: register a challenger "
                              f"(a full retrain) or name a version number")
    return version.version


def stop(paths: Paths, experiment_id: str | None = None, reason: str = "stopped by operator",
         tracking: TrackingConfig | None = None) -> Experiment:
    """End an experiment now with no change to the champion."""
    store = ExperimentStore(paths)
    with store.writing():
        exp = store.get(experiment_id) if experiment_id else store.active()
        if exp is None:
            raise ExperimentError(f"no experiment {experiment_id or 'is running'}")
        if exp.status not in (RUNNING,):
            raise ExperimentError(f"experiment {exp.id} is already {exp.status}")
        exp = store.finish(exp, STOPPED, reason)
    _tag(Registry(paths, tracking or TrackingConfig()), exp, "stopped", reason)
    return exp


def status(paths: Paths, attribution: AttributionConfig | None = None,
           now: dt.datetime | None = None) -> tuple[list[Experiment], Look | None]:
    """Every experiment, and a look at the active one (nothing is recorded)."""
    store = ExperimentStore(paths)
    active = store.active()
    return store.all(), (look(paths, active, attribution, now) if active else None)


def decide(paths: Paths, attribution: AttributionConfig | None = None,
           tracking: TrackingConfig | None = None,
           now: dt.datetime | None = None) -> Decided | None:
    """The every-minute step: look at the active experiment, record a decision, act on it."""
    store = ExperimentStore(paths)
    registry = Registry(paths, tracking or TrackingConfig())
    with store.writing():
        exp = store.active()
        if exp is None:
            return None
        seen = None
        if exp.status == RUNNING:
            seen = look(paths, exp, attribution, now)
            if not seen.verdict.final:
                return Decided(exp, seen, acted=False)
            exp = store.decide(exp, seen.verdict.decision, seen.verdict.reason,
                               seen.verdict.evidence)
            crash_point("experiment.after_decision")
        exp = _act(store, registry, exp)
    return Decided(exp, seen, acted=True)


def _act(store: ExperimentStore, registry: Registry, exp: Experiment) -> Experiment:
    """Carry out a recorded decision; safe to repeat."""
    assert exp.status == DECIDING, exp.status
    if exp.decision == PROMOTE:
        registry.promote(exp.treatment_version, f"experiment {exp.id}: {exp.reason}",
                         action="promoted by experiment")
        crash_point("experiment.after_promote")
    outcome = FINISHED[exp.decision]
    _tag(registry, exp, outcome, exp.reason)
    done = store.finish(exp, outcome)
    log.info("experiment %s %s: %s", exp.id, outcome, exp.reason)
    return done


def _tag(registry: Registry, exp: Experiment, outcome: str, reason: str | None = None) -> None:
    """The experiment on both versions' tags, for the MLflow UI (evidence as JSON)."""
    champion = registry.champion()
    evidence = json.dumps(exp.evidence, sort_keys=True)[:4000] if exp.evidence else ""
    for role, version in (("treatment", exp.treatment_version),
                          ("control", exp.control_version)):
        tags = {"experiment": exp.id, "experiment.role": role,
                "experiment.mode": exp.settings.mode.value, "experiment.status": outcome,
                "experiment.updated_at": utc_now()}
        if reason:
            tags["experiment.reason"] = reason
        if evidence:
            tags["experiment.evidence"] = evidence
        if role == "control" and champion and champion.version != version:
            tags["experiment.control_now"] = f"{CHAMPION} is version {champion.version}"
        registry.tag(version, tags)


def markdown(exp: Experiment, seen: Look | None) -> str:
    """The experiment and its latest evidence, for the Prefect artifact and the CLI."""
    s = exp.settings
    lines = [f"# Experiment {exp.id}: {exp.status}", "",
             f"Treatment version {exp.treatment_version} against control `{s.control}` "
             f"(version {exp.control_version} at the start), {s.mode.value}, "
             f"{100 * s.traffic_share:.0f}% of users, alpha {s.alpha:g}, "
             f"{s.min_minutes:g}-{s.max_minutes:g} min.", ""]
    if exp.reason:
        lines += [f"**{exp.decision or exp.status}**: {exp.reason}", ""]
    evidence = seen.verdict.evidence if seen else exp.evidence
    if seen and not seen.verdict.final:
        lines += [f"Now: {seen.verdict.reason}.", ""]
    if evidence:
        interleaved = s.mode.value == "interleave"
        lines += [f"{evidence['minutes']:g} min, {evidence['users']:,} users, "
                  f"{evidence['impressions']:,} impressions.", ""]
        if interleaved:
            lines += ["Interleaving: each model's share of the requests with a click (a tie "
                      "counts half to each); the margin is the treatment's share minus the "
                      "control's.", ""]
        lines += ["| metric | control | treatment | "
                  f"{'margin' if interleaved else 'difference'} | always-valid p |",
                  "|---|---|---|---|---|"]
        for row in (evidence.get("primary"), evidence.get("guardrail")):
            if row:
                # Interleaving's estimate keeps 0.5 (no preference) as its control figure.
                control = 1 - row["treatment"] if interleaved else row["control"]
                lines.append(f"| {row['metric']} | {control:.4f} | {row['treatment']:.4f}"
                             f" | {row['difference']:+.4f} | {row['p_value']:.3g} |")
    return "\n".join(lines) + "\n"
