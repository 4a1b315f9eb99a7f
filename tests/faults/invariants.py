"""What must hold after any crash, checked against the files and the registry themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from recsys import sql
from recsys.data.features import read_store
from recsys.data.landing import LandingZone
from recsys.files import TMP_PREFIX
from recsys.scoring.scorer import Scorer

KEY = ["user_id", "item_id", "event_type", "ts"]


class Cli:
    """The real ``recsys`` CLI in a child process, killed at a named point or a set time."""

    def __init__(self, world):
        self.world = world
        self.env = {**os.environ, "RECSYS_TRACKING_HOME": str(world.paths.tracking_home)}
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.env.pop("RECSYS_KILL_AT", None)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "recsys.cli", *args, "--home", str(self.world.paths.root)]

    def run(self, *args: str, kill_at: str | None = None, timeout: float = 600):
        env = {**self.env, "RECSYS_KILL_AT": kill_at} if kill_at else self.env
        return subprocess.run(self.command(*args), env=env, capture_output=True, text=True,
                              timeout=timeout)

    def run_killed_after(self, seconds: float, *args: str) -> int:
        """SIGKILL after ``seconds`` (if it is still running); returns the exit status."""
        proc = subprocess.Popen(self.command(*args), env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        self.last_status = proc.wait(timeout=60)
        return self.last_status


def landed(paths) -> pd.DataFrame:
    parts = LandingZone(paths).event_parts()
    if not parts:
        return pd.DataFrame(columns=[*KEY, "event_id", "ingest_seq"])
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def as_keys(frame: pd.DataFrame) -> set[tuple]:
    ts = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).dt.floor("us")
    return set(zip(frame["user_id"].astype(str), frame["item_id"].astype(str),
                   frame["event_type"].astype(str), ts, strict=True))


def check_events_exactly_once(paths, expected: pd.DataFrame) -> None:
    """Every accepted event is in the landing zone once, and the store holds no copy twice."""
    got = landed(paths)
    assert got["event_id"].is_unique, "an event landed twice"
    assert len(got) == len(expected.drop_duplicates(KEY)), (len(got), len(expected))
    assert as_keys(got) == as_keys(expected)
    if paths.features_db.exists():
        con = read_store(paths)
        try:
            stored = con.execute("SELECT ingest_seq, count(*) AS n FROM events GROUP BY ALL"
                                 ).df().set_index("ingest_seq")["n"]
        finally:
            con.close()
        # The store mirrors the landing zone part by part up to its newest part: an event
        # stored twice or skipped shows as a count that differs.
        per_part = got["ingest_seq"].value_counts()
        per_part = per_part[per_part.index <= (stored.index.max() if len(stored) else 0)]
        assert stored.sort_index().to_dict() == per_part.sort_index().to_dict(), \
            "store and landing disagree"


def check_champion_serves(world) -> None:
    champion = world.champion()
    assert champion is not None, "no champion"
    with world.registry.model_folder(champion.version) as folder:
        ids, scores = Scorer.from_folder(folder).recommend([[]], k=5)
    assert ids.shape == (1, 5)


def check_recommendations(paths, expected_users: int | None = None,
                          export_may_lag: bool = False) -> tuple[str, int, int] | None:
    """The served table comes from one model version and, if given, covers every user.

    Returns ``(model version, rows, users)``.

    The Parquet export is renamed into place after the table swap, so right after a crash
    between the two it may still hold the previous complete run (``export_may_lag``).
    """
    if not paths.recommendations_db.exists():
        return None
    con = sql.connect(paths.recommendations_db, read_only=True)
    try:
        try:
            versions, users, rows, version = con.execute(
                "SELECT count(DISTINCT model_version), count(DISTINCT user_id), count(*), "
                "any_value(model_version) FROM recommendations").fetchone()
        except duckdb.CatalogException:  # killed before its first run was published
            return None
    finally:
        con.close()
    assert versions == 1, f"recommendations mix {versions} model versions"
    if expected_users is not None:
        assert users == expected_users, (users, expected_users)
    export = pq.read_table(paths.recommendations_export).to_pandas()
    assert export["model_version"].nunique() == 1, "the export mixes model versions"
    if not export_may_lag:
        assert len(export) == rows and export["model_version"].iloc[0] == version, \
            "the Parquet export differs from the served table"
    return version, rows, users


def check_no_temp_files(paths) -> None:
    left = [p for p in Path(paths.root).rglob(f"{TMP_PREFIX}*")]
    assert not left, f"temp files left behind: {left}"


def active_users(paths) -> int:
    con = read_store(paths)
    try:
        return len(sql.query(con, "active_user_sequences", window_days=1e4,
                             max_len=10).fetchall())
    finally:
        con.close()


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
