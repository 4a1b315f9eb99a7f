"""Files (or a folder of them) into the landing zone; bad rows quarantined with a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from recsys.config import Paths
from recsys.data.ingest import IngestReport, ingest_paths, reports_markdown
from recsys.orchestration import retry_on_io


@task(name="land files", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on_io,
      timeout_seconds=3600)
def land_files(files: list[str], kind: str) -> list[IngestReport]:
    return ingest_paths([Path(f) for f in files], kind=kind, data_paths=Paths())


@flow(name="ingest", log_prints=True)
def ingest(files: list[str], kind: Literal["events", "items"] = "events") -> dict[str, int]:
    """Validate and land event or catalogue files (CSV, Parquet, JSON lines, or folders)."""
    reports = land_files(files, kind)
    create_markdown_artifact(key="ingest", markdown=reports_markdown(reports),
                             description="rows accepted and quarantined per file")
    for report in reports:
        print(report.summary())
    rejected = [r for r in reports if r.error]
    if rejected:
        raise ValueError(f"{len(rejected)} file(s) rejected: "
                         + "; ".join(r.summary() for r in rejected))
    return {"accepted": sum(r.accepted for r in reports),
            "quarantined": sum(r.n_quarantined for r in reports)}
