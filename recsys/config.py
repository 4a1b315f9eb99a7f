"""Typed configuration with defaults that run.

Nothing here touches the disk at import time: paths are resolved when a
config object is built, so tests can point a whole pipeline at a temp folder
with ``Paths(root=tmp_path)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from recsys.columns import EVENT_TYPES


def default_home() -> Path:
    """Project data folder: ``$RECSYS_HOME`` if set, else ``./data``."""
    return Path(os.environ.get("RECSYS_HOME", "data")).resolve()


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Config):
    """Where every piece of state lives, all under one root folder."""

    root: Path = Field(default_factory=default_home)

    @property
    def landing_events(self) -> Path:
        return self.root / "landing" / "events"

    @property
    def landing_items(self) -> Path:
        return self.root / "landing" / "items"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def features_db(self) -> Path:
        return self.root / "features.duckdb"

    @property
    def raw(self) -> Path:
        """Default output folder of ``recsys generate``."""
        return self.root / "raw"


class IngestConfig(_Config):
    """Validation limits applied to every incoming row."""

    max_id_len: int = 256
    max_text_len: int = 4096
    # Clock skew we tolerate before calling a timestamp "in the future".
    max_future_seconds: int = 24 * 3600
    # Anything before this is a unit bug (ms read as s) or a placeholder date.
    min_ts: str = "1990-01-01"
    event_types: tuple[str, ...] = EVENT_TYPES


class FeatureConfig(_Config):
    """Feature extraction knobs."""

    max_seq_len: int = 200
    # Popularity window (days, ending at the newest event) for item stats.
    popularity_window_days: float = 7.0
    # Users need at least this many interactions to enter the splits
    # (leave-last-out needs a history, a validation and a test item).
    min_user_events: int = 3
    # Temporal split: the validation period starts at this quantile of event time,
    # the test period at the second one.
    temporal_valid_quantile: float = 0.8
    temporal_test_quantile: float = 0.9
