"""Every 5 minutes: credit reactions to impressions; online metrics per model version and hour."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from recsys.config import AttributionConfig, Paths, TrackingConfig
from recsys.online_report_run import OnlineReportRun, run_online_report
from recsys.orchestration import retry_on_io
from recsys.registry.tracking import run_link


@task(name="attribute and measure", retries=1, retry_delay_seconds=10,
      retry_condition_fn=retry_on_io, timeout_seconds=600)
def attribute_and_measure(attribution: AttributionConfig) -> OnlineReportRun:
    # Read-only over immutable parts, files replaced whole: a retry is always safe.
    return run_online_report(Paths(), attribution, TrackingConfig())


@flow(name="online-report", log_prints=True)
def online_report(attribution: AttributionConfig = AttributionConfig()) -> dict:
    """What the served lists earned: CTR@k, cart and purchase rates, coverage, novelty."""
    run = attribute_and_measure(attribution)
    links = [f"v{v}: {run_link(Paths(), run_id)}" for v, run_id in run.logged.items()]
    create_markdown_artifact(key="online-report", markdown="\n\n".join(
        [run.markdown.rstrip("\n"), *links]) + "\n", description=run.summary())
    print(run.summary())
    every = run.report.overall
    return {"impressions": 0 if every is None else int(every.impressions),
            f"ctr@{attribution.k}": None if every is None else float(every.ctr_at_k),
            "versions": run.report.versions, "logged": run.logged, "folder": str(run.folder)}
