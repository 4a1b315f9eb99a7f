"""Landing zone -> DuckDB feature store: events, id maps, sequences, item stats, splits."""

from __future__ import annotations

import json

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from recsys.config import FeatureConfig, Paths
from recsys.data.features import build_features as build
from recsys.orchestration import retry_on_io


@task(name="refresh feature store", retries=2, retry_delay_seconds=15,
      retry_condition_fn=retry_on_io, timeout_seconds=3600)
def refresh_feature_store(features: FeatureConfig) -> dict:
    report, summary = build(Paths(), features)
    return {"refresh": report.summary(), **summary.as_dict()}


@flow(name="build-features", log_prints=True)
def build_features(features: FeatureConfig = FeatureConfig()) -> dict:
    """Refresh the feature store from newly landed events and rebuild derived tables."""
    summary = refresh_feature_store(features)
    create_markdown_artifact(key="features", markdown="```json\n" + json.dumps(
        summary, default=str, indent=2) + "\n```", description="feature store summary")
    print(summary["refresh"])
    return summary
