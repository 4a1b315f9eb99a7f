"""Every minute: fine-tune the champion on events since its watermark, gate, promote."""

from __future__ import annotations

import logging

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.concurrency.sync import concurrency
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from recsys import threads as thread_budget
from recsys.config import GateConfig, Paths, RetentionConfig, ThreadConfig, UpdateConfig
from recsys.data.journal import recover
from recsys.orchestration import REGISTRY_LIMIT, retry_on_io, started_late
from recsys.registry.tracking import run_link
from recsys.training.update import UpdateResult
from recsys.training.update import update as run_update

log = logging.getLogger(__name__)


@task(name="fine-tune, gate and promote", retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_on_io, timeout_seconds=600)
def fine_tune_gate_promote(update: UpdateConfig, gate: GateConfig,
                           retention: RetentionConfig) -> UpdateResult:
    # A retry is safe: an interrupted update changed nothing the next attempt relies on.
    recover(Paths(), timeout=60)  # events a dead service journaled land before the update plans
    return run_update(Paths(), update, gate, retention)


@task(name="request batch scoring")
def request_batch_scoring() -> None:
    try:  # fire and forget; the score deployment's own concurrency limit prevents pile-ups
        run_deployment("score/score", timeout=0, as_subflow=False)
    except Exception as exc:  # not deployed (tests, ad-hoc runs): the scheduled score covers it
        log.warning("could not request batch scoring: %s", exc)


@flow(name="micro-batch-update", log_prints=True)
def micro_batch_update(update: UpdateConfig = UpdateConfig(), gate: GateConfig = GateConfig(),
                       retention: RetentionConfig = RetentionConfig(),
                       max_delay_s: float = 120.0, score_after_promotion: bool = True,
                       threads: ThreadConfig = ThreadConfig()) -> dict:
    """The champion learns the newest events; promoted only if it is not worse."""
    if started_late(flow_run.scheduled_start_time, max_delay_s=max_delay_s):
        print(f"skipped: started more than {max_delay_s:.0f}s after its scheduled time")
        return {"status": "skipped_late"}
    thread_budget.apply(thread_budget.Job.micro_batch, threads)  # shares cores with a retrain
    with concurrency(REGISTRY_LIMIT, occupy=1, timeout_seconds=900):
        result = fine_tune_gate_promote(update, gate, retention)
    create_markdown_artifact(key="micro-batch-update", markdown=(
        result.markdown() + "\n\n" + run_link(Paths(), result.run_id)),
        description=f"update {result.status}")
    print(result.summary())
    if result.promoted and score_after_promotion:
        request_batch_scoring()
    return {"status": result.status, "version": result.version, "reason": result.reason}
