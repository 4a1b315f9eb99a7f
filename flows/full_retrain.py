"""Nightly (and on demand): features -> train -> evaluate -> register -> gate -> promote."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.concurrency.sync import concurrency

from flows.build_features import build_features
from flows.score import score
from recsys import experiment_run
from recsys import threads as thread_budget
from recsys.config import (
    EvalConfig,
    FeatureConfig,
    GateConfig,
    ModelConfig,
    Paths,
    ThreadConfig,
    TrackingConfig,
    TrainConfig,
)
from recsys.orchestration import REGISTRY_LIMIT
from recsys.registry.tracking import run_link
from recsys.training.full_retrain import TrainResult, promote_full, train
from recsys.training.sizing import defaults_as_unset


@task(name="train and evaluate", timeout_seconds=6 * 3600)
def train_and_evaluate(features: FeatureConfig, model: ModelConfig, training: TrainConfig,
                       evaluation: EvalConfig) -> TrainResult:
    training = training.model_copy(update={"progress_bar": False})  # logs, not a terminal
    return train(Paths(), model, training, evaluation, TrackingConfig(), promote=False,
                 feature_cfg=features)


@task(name="gate against popularity and the champion", timeout_seconds=600)
def gate_and_promote(result: TrainResult, gate: GateConfig) -> TrainResult:
    promote_full(result, Paths(), gate_cfg=gate)
    return result


@flow(name="full-retrain", log_prints=True)
def full_retrain(features: FeatureConfig = FeatureConfig(), model: ModelConfig = ModelConfig(),
                 training: TrainConfig = TrainConfig(), evaluation: EvalConfig = EvalConfig(),
                 gate: GateConfig = GateConfig(), score_after_promotion: bool = True,
                 threads: ThreadConfig = ThreadConfig()) -> dict:
    """A fresh lineage from all events; champion only if not worse than the one in service."""
    # Leaves the update and the service their cores (docs/compute.md).
    thread_budget.apply(thread_budget.Job.full_retrain, threads)
    model = defaults_as_unset(model)  # the UI's form sends every default: still sized to data
    build_features(features)
    result = train_and_evaluate(features, model, training, evaluation)
    # Micro-batches hold the same limit, so none moves an alias while this one decides.
    with concurrency(REGISTRY_LIMIT, occupy=1, timeout_seconds=900):
        result = gate_and_promote(result, gate)
    create_markdown_artifact(key="full-retrain", markdown=(
        result.markdown() + "\n" + run_link(Paths(), result.run_id)),
        description=f"full retrain {result.decision}")
    print(f"version {result.version} {result.decision}: {result.decision_reason}")
    if result.decision == "challenger" and gate.full_retrain_online:
        exp = experiment_run.start_for_candidate(Paths(), result.version)
        print(f"experiment {exp.id} started: it decides whether version {result.version} "
              "replaces the champion" if exp else "another experiment is running: "
              f"version {result.version} waits as challenger")
    if result.promoted and score_after_promotion:
        score(threads=threads)
    return {"version": result.version, "decision": result.decision, "run_id": result.run_id,
            "champion_compared": result.champion,
            "test_ndcg@10": result.test["seqrec"]["ndcg@10"]}
