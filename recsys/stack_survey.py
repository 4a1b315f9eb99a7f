"""What a project folder holds, and what ``recsys stack up`` does about it.

``stack up`` works from any state (fresh, after ``recsys demo``, after an earlier stack): it
surveys the folder, says what it found and what it will do, bootstraps only what is missing
and always starts live traffic. ``stack reset`` lists and removes what makes a folder not
fresh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.config import Paths
from recsys.data.landing import LandingZone
from recsys.data.replay import newest_landed_ts
from recsys.registry.registry import Version
from recsys.timeutil import human_age
from recsys.traffic import world_events, world_file


@dataclass(frozen=True)
class Survey:
    """What the folder holds before ``stack up`` starts anything."""

    world: Path | None  # the synthetic world's events file
    landed_parts: int
    newest_landed: pd.Timestamp | None
    features: bool
    champion: Version | None
    world_truth: Path | None = None  # the world's ground truth (raw/world.npz): simulated users

    def lines(self) -> list[str]:
        landed = (f"{self.landed_parts} landing part(s), newest event {self.newest_landed}"
                  if self.landed_parts else "none")
        return [f"world events file: {self.world or 'none'}",
                f"world ground truth: {self.world_truth or 'none'}",
                f"landed events: {landed}",
                f"feature store: {'yes' if self.features else 'none'}",
                f"champion: {champion_line(self.champion)}"]

    def plan(self) -> Plan:
        # A champion only counts together with the data it was trained from.
        retrain = self.champion is None or not self.features
        land = self.landed_parts == 0
        return Plan(generate=land and self.world is None, land_history=land, retrain=retrain)


@dataclass(frozen=True)
class Plan:
    """The bootstrap steps ``stack up`` runs; traffic is always started after them."""

    generate: bool  # write the synthetic world
    land_history: bool  # land items and all but the world's newest events
    retrain: bool  # run the full-retrain deployment for a first champion

    def lines(self, traffic: str, hold_back: bool = True) -> list[str]:
        """``hold_back``: the newest events wait to be replayed live (replay-loop traffic)."""
        steps = []
        if self.generate:
            steps.append("generate the synthetic world")
        if self.land_history:
            steps.append("land its items and all but its newest events" if hold_back
                         else "land its items and all its events")
        if self.retrain:
            steps.append("train a first champion (full-retrain deployment)")
        if not steps:
            steps.append("no bootstrap: data and champion are in place")
        return steps + [f"start live traffic ({traffic})"]


def survey(paths: Paths, champion: Version | None) -> Survey:
    return Survey(world=world_events(paths), landed_parts=len(LandingZone(paths).event_parts()),
                  newest_landed=newest_landed_ts(paths), features=paths.features_db.exists(),
                  champion=champion, world_truth=world_file(paths))


def champion_line(champion: Version | None) -> str:
    if champion is None:
        return "none"
    age = champion.age_seconds()
    return (f"version {champion.version} ({champion.kind}), watermark {champion.watermark}, "
            "model age " + ("unknown" if age is None else human_age(age)))


def last_update(paths: Paths) -> str | None:
    """The newest line of ``updates.jsonl``: when, the decision and why."""
    log = paths.root / "updates.jsonl"
    if not log.exists():
        return None
    last = None
    with open(log, "rb") as fh:  # the tail only: the log grows by a line a minute
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - 65536))
        lines = fh.read().decode(errors="replace").strip().splitlines()
    for line in reversed(lines):
        try:
            last = json.loads(line)
            break
        except ValueError:
            continue
    if last is None:
        return None
    version = f", candidate version {last['version']}" if last.get("version") else ""
    return f"{last.get('at', '?')}: {last['status']}{version}: {last['reason']}"


def reset_targets(paths: Paths, state_dir: Path, project: Path) -> list[Path]:
    """What ``stack reset`` removes, those that exist: data home, MLflow store, stack state.

    ``mlruns/`` itself and its ``.gitkeep`` stay. A folder that holds the project (a data home
    set to the project folder, say) is refused rather than removed.
    """
    project = project.resolve()
    folders = [paths.root, state_dir]
    for folder in folders:
        resolved = folder.resolve()
        if resolved == project or resolved in project.parents:
            raise ValueError(f"refusing to remove {folder}: it holds the project {project}")
    db = paths.mlflow_db
    files = [db, *(db.with_name(db.name + s) for s in ("-journal", "-wal", "-shm"))]
    runs = sorted(p for p in paths.mlruns.iterdir() if p.name != ".gitkeep") \
        if paths.mlruns.is_dir() else []
    return [p for p in [*folders, *files, *runs] if p.exists() or p.is_symlink()]
