"""Shared fixtures: a tiny trained world (built once per session, copied per test), thread
settings for parallel workers, and the order tests are handed to them."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from recsys import threads  # imports no torch
from recsys.config import ThreadConfig

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: each gets its share of threads, and idle OpenMP
    # threads sleep instead of spinning (the thread budget's launch variables). Set before
    # torch loads (the wait policy is read once); every child a test starts inherits them.
    _share = max(1, threads.available_cores()
                 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    for _var, _value in threads.env(threads.Job.full_retrain,
                                    ThreadConfig(full_retrain=_share)).items():
        os.environ.setdefault(_var, _value)

from recsys.config import ModelConfig, Paths, TrackingConfig, TrainConfig  # noqa: E402 (after the thread settings)
from recsys.data.features import build_features, read_store  # noqa: E402 (after the thread settings)
from recsys.data.ingest import ingest_frame  # noqa: E402 (after the thread settings)
from recsys.data.synthetic import generate, preset  # noqa: E402 (after the thread settings)
from recsys.registry.registry import Registry  # noqa: E402 (after the thread settings)
from recsys.training.full_retrain import train  # noqa: E402 (after the thread settings)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(root=tmp_path / "home", tracking_home=tmp_path / "tracking")


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


MODEL = ModelConfig(d_model=32, max_len=20, dropout=0.1)
TRAIN = TrainConfig(max_epochs=4, patience=4, batch_size=32, progress_bar=False)


class World:
    """A tiny synthetic world whose first 70% of events trained the champion; the rest wait
    in chunks, to land one part at a time as a live feed would."""

    def __init__(self, root: Path, template: World | None = None):
        """A new world under ``root``, or a copy of ``template`` (same data, same champion)."""
        self.paths = Paths(root=root / "home", tracking_home=root / "tracking")
        if template is None:
            self._build()
        else:
            _copy_world(template.root, root)
            self.full_version, self.chunks, self.items = (
                template.full_version, template.chunks, template.items)
        self.root = root
        self.landed = 0
        self.registry = Registry(self.paths, TrackingConfig())

    def _build(self) -> None:
        data = generate(preset("tiny"))
        events = data.events.sort_values("ts", kind="stable", ignore_index=True)
        cut = int(len(events) * 0.7)
        ingest_frame(data.items, "items", kind="items", data_paths=self.paths)
        ingest_frame(events.iloc[:cut], "history", data_paths=self.paths)
        build_features(self.paths)
        result = train(self.paths, MODEL, TRAIN)
        assert result.promoted, result.decision_reason
        self.full_version = result.version
        rest = events.iloc[cut:]
        n = 8
        self.chunks = [rest.iloc[i * len(rest) // n:(i + 1) * len(rest) // n] for i in range(n)]
        self.items = data.items

    def land(self, n: int = 1) -> None:
        for _ in range(n):
            chunk = self.chunks[self.landed]
            ingest_frame(chunk, f"chunk{self.landed}", data_paths=self.paths)
            self.landed += 1

    def champion(self):
        return self.registry.champion()

    def store_events_between(self, low: int, high: int) -> int:
        con = read_store(self.paths)
        try:
            return con.execute("SELECT count(*) FROM events WHERE ingest_seq > $l AND "
                               "ingest_seq <= $h", {"l": low, "h": high}).fetchall()[0][0]
        finally:
            con.close()

    def assert_lineage_consistent(self) -> None:
        """Every event between the lineage root and the champion's watermark was trained into
        the champion's lineage exactly once: the watermarks chain without gaps or overlaps."""
        v = self.champion()
        trained = 0
        while v.kind == "incremental":
            parent = self.registry.get(v.parent)
            assert int(v.tags["previous_watermark"]) == parent.watermark
            trained += int(v.tags["train_events"])
            v = parent
        assert trained == self.store_events_between(v.watermark, self.champion().watermark)


def _copy_world(source: Path, target: Path) -> None:
    """Copy a world's folders and point the MLflow store's absolute paths at the copy.

    The store (SQLite) records artifact locations as absolute ``file://`` paths; everything
    else in a world is found relative to its folders.
    """
    for part in ("home", "tracking"):
        shutil.copytree(source / part, target / part)
    old, new = f"{source}/", f"{target}/"
    con = sqlite3.connect(Paths(root=target / "home", tracking_home=target / "tracking")
                          .mlflow_db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT")):
                    con.execute(f'UPDATE "{table}" SET "{column[1]}" = '
                                f'replace("{column[1]}", ?, ?) WHERE instr("{column[1]}", ?)',
                                (old, new, old))
        con.commit()
    finally:
        con.close()


@pytest.fixture(scope="session")
def world_template(tmp_path_factory) -> World:
    """Built and trained once per session (a few seconds): each test gets its own copy."""
    return World(tmp_path_factory.mktemp("world-template"))


@pytest.fixture
def world(tmp_path, world_template) -> World:
    return World(tmp_path, template=world_template)


# The longest files, longest first: minutes of waiting on schedules and process start-ups.
LONGEST_FIRST = ("test_stack.py", "test_server_faults.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Hand the longest test files out first (with ``--no-loadscope-reorder``, xdist keeps this
    order), so that each lands on its own worker while the others fill the cores, instead of
    the longest running alone at the end. A stable sort: the rest keep their order.
    """
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use (cgroup quota included), at most 8.

    Without psutil, xdist would count the machine's CPUs, not a container's share of them.
    """
    return min(8, threads.available_cores())
