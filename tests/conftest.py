from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import ModelConfig, Paths, TrackingConfig, TrainConfig
from recsys.data.features import build_features, read_store
from recsys.data.ingest import ingest_frame
from recsys.data.synthetic import generate, preset
from recsys.registry.registry import Registry
from recsys.training.full_retrain import train


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

    def __init__(self, root: Path):
        self.paths = Paths(root=root / "home", tracking_home=root / "tracking")
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
        self.landed = 0
        self.items = data.items
        self.registry = Registry(self.paths, TrackingConfig())

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


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)
