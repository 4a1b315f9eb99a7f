"""Experiments as data: one small JSON record per experiment, rewritten atomically.

Why files and not the registry alone: the real-time service must know within seconds which
experiment runs, with which salt, arms and mode, on every request path, without asking the
MLflow server; and the decision flow must record a decision *before* it moves an alias, so
that a crash between the two is finished by the next run instead of half-done. A record per
experiment under ``Paths.experiments`` (temp file + fsync + rename) gives both, needs no
database writer, and is read by the service as cheaply as the forget log. The registry gets
the human-facing copy: tags on both model versions (``recsys.experiments.sync_tags``).

States::

    running --decide--> deciding(promote | stop | end) --act--> promoted | stopped | inconclusive
    running --operator--> stopped

``deciding`` holds the decision and its evidence; acting on it (moving the alias, tagging
the versions) is idempotent, so a rerun after a crash simply acts again.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from recsys.config import ExperimentConfig, Paths
from recsys.files import file_lock, fsync_dir
from recsys.timeutil import utc_now

RUNNING, DECIDING = "running", "deciding"
PROMOTED, STOPPED, INCONCLUSIVE = "promoted", "stopped", "inconclusive"
FINAL = (PROMOTED, STOPPED, INCONCLUSIVE)
PROMOTE, STOP, END = "promote", "stop", "end"  # what a decision does


@dataclass(frozen=True)
class Experiment:
    """One experiment's record; replaced as a whole on every change."""

    id: str
    config: dict
    control_version: str  # resolved when started; the control arm follows the alias
    treatment_version: str
    started_at: str
    status: str = RUNNING
    decision: str | None = None  # promote | stop | end, once decided
    reason: str | None = None
    evidence: dict = field(default_factory=dict)
    decided_at: str | None = None
    ended_at: str | None = None

    @property
    def settings(self) -> ExperimentConfig:
        return ExperimentConfig.model_validate(self.config)

    @property
    def salt(self) -> str:
        return self.id

    def variant(self, arm: str) -> str:
        """The impression log's variant: which experiment and which arm or team."""
        return f"{self.id}:{arm}"

    def minutes(self, now=None) -> float:
        start = _parse(self.started_at)
        return ((now or utc_now()) - start).total_seconds() / 60


def _parse(ts: str):
    import datetime as dt

    return dt.datetime.fromisoformat(ts)


class ExperimentStore:
    """The experiments folder; writers take its lock, readers never wait."""

    def __init__(self, paths: Paths):
        self.folder = paths.experiments

    def _path(self, experiment_id: str) -> Path:
        return self.folder / f"{experiment_id}.json"

    @contextlib.contextmanager
    def writing(self):
        """One writer at a time (the CLI and the decision flow may race)."""
        with file_lock(self.folder / ".lock", timeout=60):
            yield self

    def all(self) -> list[Experiment]:
        if not self.folder.is_dir():
            return []
        out = []
        for p in sorted(self.folder.glob("exp-*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                out.append(Experiment(**json.loads(p.read_text())))
        return sorted(out, key=lambda e: e.started_at)

    def get(self, experiment_id: str) -> Experiment | None:
        return next((e for e in self.all() if e.id == experiment_id), None)

    def active(self) -> Experiment | None:
        """The experiment the service serves (running, or decided but not yet acted on)."""
        live = [e for e in self.all() if e.status in (RUNNING, DECIDING)]
        return live[-1] if live else None

    def create(self, config: ExperimentConfig, control_version: str,
               treatment_version: str) -> Experiment:
        now = utc_now()
        exp = Experiment(id=f"exp-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
                         config=config.model_dump(mode="json"),
                         control_version=str(control_version),
                         treatment_version=str(treatment_version),
                         started_at=now.isoformat(timespec="seconds"))
        self.save(exp)
        return exp

    def decide(self, exp: Experiment, decision: str, reason: str, evidence: dict) -> Experiment:
        """Record the decision first; acting on it comes after and may be repeated."""
        out = replace(exp, status=DECIDING, decision=decision, reason=reason, evidence=evidence,
                      decided_at=utc_now().isoformat(timespec="seconds"))
        self.save(out)
        return out

    def finish(self, exp: Experiment, status: str, reason: str | None = None) -> Experiment:
        out = replace(exp, status=status, reason=reason or exp.reason,
                      ended_at=utc_now().isoformat(timespec="seconds"))
        self.save(out)
        return out

    def save(self, exp: Experiment) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        dest = self._path(exp.id)
        tmp = dest.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(asdict(exp), fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(self.folder)
