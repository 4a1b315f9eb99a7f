"""Batch top-K lists for active users from the champion, into DuckDB and Parquet."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from recsys import threads as thread_budget
from recsys.config import Paths, ScoreConfig, ThreadConfig
from recsys.orchestration import retry_on_io
from recsys.scoring.batch import score_users


@task(name="score active users", retries=2, retry_delay_seconds=10,
      retry_condition_fn=retry_on_io, timeout_seconds=1800)
def score_active_users(cfg: ScoreConfig) -> dict:
    report = score_users(Paths(), cfg.model_copy(update={"progress_bar": False}))
    return {"summary": report.summary(), "model_version": report.model_version,
            "users": report.users, "rows": report.rows}


@flow(name="score", log_prints=True)
def score(scoring: ScoreConfig = ScoreConfig(), threads: ThreadConfig = ThreadConfig()) -> dict:
    """Score every active user with the champion and swap the lists in atomically."""
    thread_budget.apply(thread_budget.Job.score, threads)
    report = score_active_users(scoring)
    create_markdown_artifact(key="batch-scores", markdown=(
        f"| model version | users | rows |\n|---|---|---|\n"
        f"| {report['model_version']} | {report['users']:,} | {report['rows']:,} |"),
        description=report["summary"])
    print(report["summary"])
    return report
