"""Every minute: look at the running experiment; promote, stop or end it when the evidence says."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from recsys import experiment_run
from recsys.config import AttributionConfig, GateConfig, Paths, TrackingConfig
from recsys.orchestration import REGISTRY_LIMIT, retry_on_io, started_late


@task(name="look, decide and act", retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_on_io, timeout_seconds=300)
def look_decide_act(attribution: AttributionConfig) -> experiment_run.Decided | None:
    # A retry is safe: a recorded decision is acted on again, idempotently.
    return experiment_run.decide(Paths(), attribution, TrackingConfig())


@flow(name="experiment-decision", log_prints=True)
def experiment_decision(attribution: AttributionConfig = AttributionConfig(),
                        gate: GateConfig = GateConfig(), max_delay_s: float = 120.0) -> dict:
    """The always-valid test allows a look every minute; the rules act on the first decision.

    With ``gate.full_retrain_online`` (live traffic decides full retrains), a version waiting
    as challenger (a full retrain that found another experiment running) gets its experiment
    when nothing is running. Without traffic such an experiment could only end inconclusive.
    """
    if started_late(flow_run.scheduled_start_time, max_delay_s=max_delay_s):
        print(f"skipped: started more than {max_delay_s:.0f}s after its scheduled time")
        return {"status": "skipped_late"}
    with concurrency(REGISTRY_LIMIT, occupy=1, timeout_seconds=600):  # it may move the alias
        out = look_decide_act(attribution)
    if out is None:
        exp = experiment_run.start_waiting(Paths(), tracking=TrackingConfig()) \
            if gate.full_retrain_online else None
        if exp is None:
            print("no experiment is running")
            return {"status": "idle"}
        print(f"experiment {exp.id} started: version {exp.treatment_version} waited as "
              f"challenger against version {exp.control_version}")
        return {"status": "started", "experiment": exp.id, "decision": None}
    exp = out.experiment
    create_markdown_artifact(key="experiment", markdown=experiment_run.markdown(exp, out.look),
                             description=f"{exp.id}: {exp.status}")
    print(f"experiment {exp.id}: {exp.status}"
          + (f" ({out.look.verdict.reason})" if out.look else f" ({exp.reason})"))
    return {"status": exp.status, "experiment": exp.id, "decision": exp.decision}
