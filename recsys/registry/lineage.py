"""The tags that chain versions into lineages, built in one place.

A full retrain starts a lineage (``kind=full``; ``lineage_root`` is set to itself when it is
gated). Each micro-batch version names its ``parent_version`` and the watermarks it trained
between: ``(previous_watermark, watermark]``. ``Registry``/``Version`` read them back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

from recsys.registry.registry import Version
from recsys.registry.tracking import git_commit, safe_key


def full_tags(watermark: int, data_fingerprint: str, newest_event_ts: str | None = None,
              run_id: str | None = None) -> dict[str, str]:
    """A full retrain's tags (the run's; the version's add ``newest_event_ts`` and ``run_id``)."""
    tags = {"kind": "full", "git_commit": git_commit(), "watermark": str(watermark),
            "data_fingerprint": data_fingerprint}
    if newest_event_ts is not None:
        tags["newest_event_ts"] = newest_event_ts
    if run_id is not None:
        tags["run_id"] = run_id
    return tags


def incremental_tags(parent: Version, low: int, cut: int, train_events: int,
                     newest_event_ts: dt.datetime | None) -> dict[str, str]:
    """A micro-batch version trained on the events in ``(low, cut]`` on top of ``parent``."""
    fingerprint = hashlib.sha256(
        f"{parent.version}:{low}:{cut}:{train_events}".encode()).hexdigest()[:16]
    return {"kind": "incremental", "parent_version": parent.version,
            "lineage_root": parent.tags.get("lineage_root", parent.version),
            "watermark": str(cut), "previous_watermark": str(low),
            "newest_event_ts": newest_event_ts.isoformat() if newest_event_ts else "",
            "data_fingerprint": fingerprint, "git_commit": git_commit(),
            "train_events": str(train_events)}


def gate_tags(figures: Mapping[str, float]) -> dict[str, str]:
    """The NDCG@10 figures the gate decided on, as version tags ``gate.<set>.<role>...``."""
    return {safe_key(f"gate.{k}"): f"{v:.5f}" for k, v in figures.items()
            if k.endswith("ndcg@10")}
