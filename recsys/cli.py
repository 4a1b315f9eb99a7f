"""The ``recsys`` command line: one entry point, one sub-command per job.

Options that set a config field are built from the typed configs (``recsys.cli_options``): their
defaults and help live in ``recsys/config.py`` only.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli_options import Opt, config_options
from recsys.config import (
    AttributionConfig,
    BacktestConfig,
    BacktestData,
    DatasetFormat,
    EvalConfig,
    ExperimentConfig,
    FeatureConfig,
    GateConfig,
    ImpressionConfig,
    IngestConfig,
    IntakeConfig,
    ModelConfig,
    Paths,
    RetentionConfig,
    ScoreConfig,
    ServeConfig,
    SimulateConfig,
    StackConfig,
    SyntheticPreset,
    ThreadConfig,
    TrackingConfig,
    TrainConfig,
    UpdateConfig,
)
from recsys.timeutil import human_age

app = typer.Typer(
    help="Real-time sequential recommender: ingest events, build features, train, serve.",
    no_args_is_help=True,
    add_completion=False,
)

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Project data folder (default: $RECSYS_HOME or ./data).",
                 show_default=False),
]

Preset = SyntheticPreset
Format = DatasetFormat


class Kind(StrEnum):
    events = "events"
    items = "items"


# Config fields exposed as options, with the short option names the CLI has always used.
MODEL_OPTIONS = ["d_model", Opt("n_blocks", "blocks"), Opt("n_heads", "heads"), "max_len",
                 "dropout", "attention_dropout", "block_layout", "init_std", "loss",
                 Opt("n_negatives", "negatives"), "label_smoothing", Opt("use_text", "text")]
TRAIN_OPTIONS = [Opt("max_epochs", "epochs"), "patience", "batch_size", "lr", "lr_schedule",
                 "weight_decay", "bucket_window", "ema_decay", "protocol", "accelerator",
                 Opt("devices", type=str), "strategy", "precision", "max_steps_per_epoch", "seed",
                 Opt("progress_bar", "progress")]


def _paths(home: Path | None) -> Paths:
    return Paths(root=home.resolve()) if home else Paths()


# Commands whose log is their output (services, and the stack that starts them): this project's
# INFO lines show. The others print their results and show only the project's warnings.
LOGGING_COMMANDS = {"serve", "replay", "stack"}


@app.callback()
def _main(ctx: typer.Context, verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Debug logging, with other libraries' warnings, tips and progress "
                                "bars.")] = False):
    from recsys import console

    console.configure(verbose, logging.INFO if ctx.invoked_subcommand in LOGGING_COMMANDS
                      else logging.WARNING)
    if not verbose:
        # MLflow draws a bar for every artifact it copies and has no switch for it but this
        # variable. The entry point owns its process's environment (library code never writes
        # it); setdefault, so a user's own setting wins.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # OpenMP reads its wait policy once, when torch loads: set it before any command imports
    # torch (docs/compute.md), unless the user chose one.
    if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & os.environ.keys():
        from recsys import threads as thread_budget

        os.environ.update(thread_budget.launcher_env())


@app.command()
def generate(
    preset: Annotated[Preset, typer.Option(help="Size of the synthetic world.")] = Preset.small,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same data.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <home>/raw).")] = None,
    home: HomeOpt = None,
) -> None:
    """Write a seeded synthetic dataset (events.parquet, items.parquet) and its ground truth.

    world.npz holds what the generator drew the events from (each user's interests and last
    item, the items' chains and popularity): `recsys simulate` plays its users out.
    """
    typer.echo(_generate(preset, seed, out or _paths(home).raw))


@app.command()
def ingest(
    paths: Annotated[list[Path],
                     typer.Argument(help="Files or folders (CSV, Parquet, JSON-lines).")],
    kind: Annotated[Kind, typer.Option(help="What the files hold.")] = Kind.events,
    home: HomeOpt = None,
) -> None:
    """Validate files and land them; bad rows go to quarantine with a reason.

    Exits with status 1 if any file was rejected as a whole (the others still land).
    """
    from recsys.data.ingest import ingest_paths

    reports = ingest_paths(paths, kind=kind.value, data_paths=_paths(home), progress=True)
    for r in reports:
        typer.echo(r.summary())
    if any(r.error for r in reports):
        raise typer.Exit(1)


@app.command("load")
def load_dataset(
    path: Annotated[Path, typer.Argument(help="Dataset file or folder.")],
    fmt: Annotated[Format, typer.Option("--format", help="Dataset format.")],
    home: HomeOpt = None,
) -> None:
    """Ingest a public dataset (MovieLens, RetailRocket, SASRec txt) in one go."""
    from recsys.data.ingest import ingest_frame
    from recsys.data.loaders import load

    paths = _paths(home)
    loaded = load(path, fmt.value)
    typer.echo(ingest_frame(loaded.events, str(path), data_paths=paths).summary())
    if loaded.items is not None:
        typer.echo(ingest_frame(loaded.items, f"{path}:items", kind="items",
                                data_paths=paths).summary())


@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="Dataset file or folder to stream.")],
    fmt: Annotated[Format, typer.Option("--format", help="Dataset format.")] = Format.contract,
    speedup: Annotated[float | None, typer.Option(
        help="Event-time seconds per wall second (default: ReplayConfig's).")] = None,
    tick: Annotated[float | None, typer.Option(
        help="Wall seconds between ingests (default: ReplayConfig's).")] = None,
    max_ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks.")] = None,
    no_sleep: Annotated[bool, typer.Option("--no-sleep",
                                           help="Do not wait between ticks.")] = False,
    home: HomeOpt = None,
) -> None:
    """Stream a dataset into the landing zone in time order, at a chosen speed-up."""
    from recsys.data.loaders import load
    from recsys.data.replay import ReplayConfig
    from recsys.data.replay import replay as run_replay

    loaded = load(path, fmt.value)
    given = {"speedup": speedup, "tick_seconds": tick}
    cfg = ReplayConfig(max_ticks=max_ticks, realtime=not no_sleep,
                       **{k: v for k, v in given.items() if v is not None})
    reports = run_replay(loaded.events, cfg, paths=_paths(home), source=str(path))
    typer.echo(f"replayed {sum(r.accepted for r in reports):,} events in {len(reports)} ticks")


@app.command()
@config_options(features=(FeatureConfig, ["max_seq_len", "text_encoder"]))
def features(features: FeatureConfig, home: HomeOpt = None) -> None:
    """Refresh the DuckDB feature store from the landing zone and rebuild derived tables."""
    from recsys.data.features import build_features

    report, summary = build_features(_paths(home), features)
    typer.echo(report.summary())
    typer.echo(json.dumps(summary.as_dict(), default=str, indent=2))


@app.command()
@config_options(
    training=(TrainConfig, TRAIN_OPTIONS), model=(ModelConfig, MODEL_OPTIONS),
    evaluation=(EvalConfig, ["exclude_seen"]),
    tracking=(TrackingConfig, [Opt("register_model", "register",
                                   help="Register the model in the MLflow registry.")]),
    gate=(GateConfig, ["tolerance", "unseen_min_events", "full_retrain_online"]),
    threads=(ThreadConfig, [Opt("full_retrain", "threads")]))
def train(training: TrainConfig, model: ModelConfig, evaluation: EvalConfig,
          tracking: TrackingConfig, gate: GateConfig, threads: ThreadConfig,
          home: HomeOpt = None) -> None:
    """Full retrain from the feature store: train, evaluate against baselines, log to MLflow."""
    from recsys import threads as thread_budget
    from recsys.training.full_retrain import train as run_training

    thread_budget.apply(thread_budget.Job.full_retrain, threads)

    result = run_training(_paths(home), model, training, evaluation, tracking, gate)
    if result is not None:  # None on DDP worker ranks: rank zero reports
        _report_training(result)


@app.command()
def status(home: HomeOpt = None) -> None:
    """Print what the data folders hold, the champion, and what precision=auto measured here."""
    from recsys import precision
    from recsys.config import TrackingConfig
    from recsys.data.status import status_report
    from recsys.registry.registry import Registry

    paths = _paths(home)
    typer.echo(status_report(paths))
    champion = Registry(paths, TrackingConfig()).champion()
    if champion is None:
        typer.echo("champion: none yet (run `recsys train`)")
    else:
        age = champion.age_seconds()
        typer.echo(f"champion: version {champion.version} ({champion.kind}), watermark "
                   f"{champion.watermark}, model age "
                   + ("unknown" if age is None else human_age(age)))
    typer.echo(precision.report())


@app.command()
@config_options(training=(TrainConfig, [Opt("max_epochs", "epochs")]))
def demo(
    *,
    preset: Annotated[Preset, typer.Option(help="Size of the synthetic world.")] = Preset.small,
    training: TrainConfig,
    live_fraction: Annotated[float, typer.Option(
        help="Newest share of events held back and landed live after the full retrain.")]
    = 0.1,
    updates: Annotated[int, typer.Option(help="Micro-batch updates run on the live events.")]
    = 3,
    home: HomeOpt = None,
) -> None:
    """End to end on the embedded defaults: data, features, full retrain, micro-batches.

    Generates the synthetic world, ingests all but the newest events, builds features and
    fully retrains (registered and promoted to champion); then lands the newest events live
    and runs micro-batch updates on them (fine-tune, gate, promote).
    """
    import time

    import pandas as pd

    from recsys import console
    from recsys.data.features import build_features
    from recsys.data.ingest import ingest_frame, ingest_paths
    from recsys.data.live_split import split_live
    from recsys.data.status import status_report
    from recsys.data.synthetic import preset as get_preset
    from recsys.training.estimate import duration, estimate_demo
    from recsys.training.full_retrain import train as run_training
    from recsys.training.update import update as run_update

    t0 = time.perf_counter()
    paths = _paths(home)
    say = console.say
    say("timing two training steps to estimate how long the demo takes ...")
    plan = estimate_demo(get_preset(preset.value, seed=0), ModelConfig(), training,
                         UpdateConfig(), updates, live_fraction)
    say(plan.summary())
    # One bar for the whole demo (the fit's own bar would fight it for the line).
    training = training.model_copy(update={"progress_bar": False})
    expected = dict(plan.parts())
    with console.estimate("demo", plan.total_s) as bar:
        say(_generate(preset, 0, paths.raw))
        for r in ingest_paths([paths.raw / "items.parquet"], kind="items", data_paths=paths,
                              config=IngestConfig()):
            say(r.summary())
        history, live = split_live(pd.read_parquet(paths.raw / "events.parquet"), live_fraction)
        say(ingest_frame(history, "history", data_paths=paths).summary())
        report, _ = build_features(paths, FeatureConfig())
        say(report.summary())
        say(status_report(paths))
        bar.finished(expected["data and features"], "data and features")
        say("training the sequential recommender (full retrain) ...")
        result = run_training(paths, ModelConfig(), training, EvalConfig(), TrackingConfig())
        _report_training(result, say)
        done = expected["data and features"] + expected["training"]
        bar.finished(done + expected["evaluation and registry"], "training")
        n_live = len(live)
        if updates and n_live:
            parts = 2 * updates  # each update trains one part and holds out the newest
            say(f"landing {n_live:,} newer events in {parts} parts, "
                f"with a micro-batch update after every 2 ...")
            for i in range(parts):
                chunk = live.iloc[i * n_live // parts:(i + 1) * n_live // parts]
                ingest_frame(chunk, f"live-{i}", data_paths=paths)
                if i % 2 == 1:
                    say(run_update(paths).summary())
                    done = plan.total_s - expected["updates"] * (1 - (i + 1) / parts)
                    bar.finished(done, f"update {(i + 1) // 2}/{updates}")
    models(home=home)
    took = time.perf_counter() - t0
    say(f"demo finished in {duration(took)}; estimated {duration(plan.total_s)} "
        f"({100 * (took / plan.total_s - 1):+.0f}%)")
    say(f"data under {paths.root}, MLflow in {paths.mlflow_db} and {paths.mlruns}. Next: "
        "`.venv/bin/recsys stack up` for the Prefect and MLflow UIs, the real-time service "
        "and simulated traffic (README, 'The local stack and its UIs'); `.venv/bin/recsys "
        "--help` for every command.")


def _generate(preset: Preset, seed: int, out: Path) -> str:
    """Write the synthetic world to ``out`` (events, items, ground truth); says what it wrote."""
    from recsys.data.synthetic import generate as gen
    from recsys.data.synthetic import preset as get_preset
    from recsys.data.world import world_path

    out.mkdir(parents=True, exist_ok=True)
    data = gen(get_preset(preset.value, seed=seed))
    data.events.to_parquet(out / "events.parquet", index=False)
    data.items.to_parquet(out / "items.parquet", index=False)
    data.world.save(world_path(out))
    return (f"wrote {len(data.events):,} events and {len(data.items):,} items to {out} "
            "(and the world's ground truth, world.npz)")


def _report_training(result, echo=typer.echo) -> None:
    echo(result.summary())
    echo(f"best epoch {result.best_epoch} after {result.time_to_best_s:.1f} s; "
         f"{result.positions_per_s:,.0f} target positions/s; "
         f"peak RSS {result.memory['peak_rss_mb']:.0f} MB")
    echo(f"MLflow run {result.run_id}; model {result.model_uri}"
         + (f"; registered version {result.version}" if result.version else ""))
    if result.decision:
        echo(f"version {result.version} {result.decision}: {result.decision_reason}")


@app.command()
@config_options(
    update=(UpdateConfig, ["max_steps", "time_budget_s", "batch_size", "lr", "replay_ratio",
                           "holdout_fraction", "max_batch_events"]),
    gate=(GateConfig, [Opt("tolerance", help="Largest relative NDCG@10 drop against the "
                                             "champion that still promotes.")]),
    retention=(RetentionConfig, ["keep_incremental", "keep_full"]),
    threads=(ThreadConfig, [Opt("micro_batch", "threads")]))
def update(update: UpdateConfig, gate: GateConfig, retention: RetentionConfig,
           threads: ThreadConfig, home: HomeOpt = None) -> None:
    """Micro-batch update: fine-tune the champion on events after its watermark, gate, promote.

    Exits quickly when nothing new has landed. Every outcome is appended to updates.jsonl.
    """
    from recsys import threads as thread_budget
    from recsys.data.journal import recover
    from recsys.training.update import update as run_update

    thread_budget.apply(thread_budget.Job.micro_batch, threads)
    recover(_paths(home), timeout=60)  # events a dead service journaled land first
    typer.echo(run_update(_paths(home), update, gate, retention).summary())


@app.command()
@config_options(scoring=(ScoreConfig, [
    "k", "window_days", "exclude_purchased", "exclude_seen",
    Opt("exclude_categories", "exclude-category", type=list[str] | None,
        help="Never recommend this category (repeatable)."),
    "chunk_size", Opt("progress_bar", "progress")]),
    threads=(ThreadConfig, [Opt("score", "threads")]))
def score(scoring: ScoreConfig, threads: ThreadConfig, home: HomeOpt = None) -> None:
    """Batch top-K for active users with the champion, into recommendations.duckdb + Parquet."""
    from recsys import threads as thread_budget
    from recsys.scoring.batch import score_users

    thread_budget.apply(thread_budget.Job.score, threads)

    typer.echo(score_users(_paths(home), scoring).summary())


@app.command()
@config_options(
    serving=(ServeConfig, ["host", "port", "access_log"]),
    intake=(IntakeConfig, ["group_window_ms", "seal_interval_s", "max_request_events",
                           "max_request_bytes"]),
    impressions=(ImpressionConfig, [Opt("enabled", "impressions"), "flush_interval_s"]),
    threads=(ThreadConfig, [Opt("service", "threads")]))
def serve(serving: ServeConfig, intake: IntakeConfig, impressions: ImpressionConfig,
          threads: ThreadConfig, home: HomeOpt = None) -> None:
    """Real-time service over HTTP (FastAPI): recommendations and event intake.

    GET /recommendations/USER and POST /recommendations follow the champion and every user's
    latest events; POST /events lands events (acknowledged once fsynced). Every answer carries
    a request_id, and what it showed is logged to the impressions zone.
    """
    from recsys import threads as thread_budget
    from recsys.scoring.service import serve as run_service

    budget = thread_budget.apply(thread_budget.Job.service, threads)
    run_service(_paths(home), serving, threads=budget.intra, intake=intake,
                impressions=impressions)


@app.command("online-report")
@config_options(attribution=(AttributionConfig, ["window_minutes", "k", "hours"]))
def online_report(
    attribution: AttributionConfig,
    until: Annotated[datetime | None, typer.Option(
        help="End of the period, UTC (default: now).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for the report's files (default: <home>/reports/online).")] = None,
    mlflow: Annotated[bool, typer.Option(
        help="Log the figures and files on the MLflow runs of the versions that served in the "
             "latest hour.")] = True,
    home: HomeOpt = None,
) -> None:
    """Online metrics of the served lists: CTR@k, cart and purchase rates, coverage, novelty.

    Credits each click, cart and purchase to the impression it came from (its request id, else
    the latest impression of the item to the user within the window); per model version and
    hour of the last --hours. Prints the summary and writes it with a PNG and two CSVs.
    """
    from recsys.online_report_run import run_online_report

    run = run_online_report(_paths(home), attribution, TrackingConfig(), now=until,
                            folder=out, log_runs=mlflow)
    typer.echo(run.markdown)
    typer.echo(f"figure: {run.file('figure')}")
    typer.echo(f"tables: {run.file('hourly')}, {run.file('positions')}")
    for version, run_id in run.logged.items():
        typer.echo(f"logged to the MLflow run of version {version}: {run_id}")
    for version, why in run.not_logged.items():
        typer.echo(f"not logged for version {version}: {why}")


@app.command("forget-user")
def forget_user(
    user_id: Annotated[str, typer.Argument(help="The user id exactly as ingested.")],
    home: HomeOpt = None,
) -> None:
    """Remove a user's events from the landing zone, quarantine, features and recommendations.

    Files are rewritten atomically; versions trained on the user's data are tagged
    forget_requests and listed (the next full retrain is free of them). The request log keeps
    a SHA-256 of the id, never the id. Safe to run again after a crash.
    """
    from recsys.config import TrackingConfig
    from recsys.forget import forget_user as run_forget

    typer.echo(run_forget(user_id, _paths(home), TrackingConfig()).summary())


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version to make the champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the version).")] = "operator",
    home: HomeOpt = None,
) -> None:
    """Make VERSION the champion (the current one becomes previous-champion); recorded."""
    from recsys.config import TrackingConfig
    from recsys.registry.registry import Registry

    registry = Registry(_paths(home), TrackingConfig())
    registry.get(version)  # a clear error for a version that does not exist
    registry.promote(version, f"operator: {reason}", action="promoted by operator")
    typer.echo(f"{registry.name} version {version} is the champion")


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded on the versions).")] = "operator",
    home: HomeOpt = None,
) -> None:
    """Champion <- previous-champion; recorded on both versions."""
    from recsys.config import TrackingConfig
    from recsys.registry.registry import Registry

    registry = Registry(_paths(home), TrackingConfig())
    try:
        frm, to = registry.rollback(f"operator: {reason}")
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"{registry.name}: champion rolled back from version {frm} to {to}")


@app.command()
def models(home: HomeOpt = None) -> None:
    """List registered versions: aliases, kind, parent, watermark, model age, decision.

    A version trained on a forgotten user's data says so (forget requests).
    """
    from recsys.config import TrackingConfig
    from recsys.registry.registry import Registry

    registry = Registry(_paths(home), TrackingConfig())
    typer.echo("| version | aliases | kind | parent | watermark | model age | decision "
               "| forget requests |")
    typer.echo("|---|---|---|---|---|---|---|---|")
    for v in registry.versions():
        age = v.age_seconds()
        typer.echo(f"| {v.version} | {', '.join(v.aliases)} | {v.kind} | {v.parent or ''} | "
                   f"{v.watermark} | {'' if age is None else human_age(age)} | "
                   f"{v.tags.get('decision', '')}: {v.tags.get('decision_reason', '')} | "
                   f"{v.tags.get('forget_requests', '')} |")


@app.command()
@config_options(
    data=(BacktestData, ["dataset", "format", Opt("synthetic", "preset")]),
    replay=(BacktestConfig, ["windows", "initial_fraction", "full_every"]),
    training=(TrainConfig, [Opt("max_epochs", "epochs"), "patience"]),
    model=(ModelConfig, ["d_model"]))
def backtest(
    data: BacktestData, replay: BacktestConfig, training: TrainConfig, model: ModelConfig,
    workdir: Annotated[Path | None, typer.Option(
        help="Scratch project folder for the replay (default: <home>/backtests/<UTC time>).")]
    = None,
    home: HomeOpt = None,
) -> None:
    """Prequential replay: static vs micro-batch-updated vs periodically retrained model.

    Prints HR@10/NDCG@10 per window and the mean freshness lag; logs the table, JSON and a
    PNG plot to the MLflow experiment recsys-backtest of this project.
    """
    from recsys.backtest_run import run_backtest

    run = run_backtest(data, replay, model, training, _paths(home), workdir)
    typer.echo(run.result.table())
    typer.echo(f"MLflow run {run.result.run_id} (experiment recsys-backtest); "
               f"replay in {run.workdir}")


@app.command()
@config_options(simulation=(SimulateConfig, [
    "url", "rate", Opt("duration_s", "duration"), "k", Opt("eta", "position-bias"),
    "organic_share", "seed", "batch_events", "flush_interval_s", "report_every_s"]))
def simulate(
    simulation: SimulateConfig,
    world: Annotated[Path | None, typer.Option(
        help="The world's ground truth (default: <home>/raw/world.npz, from `recsys generate`).",
        show_default=False)] = None,
    home: HomeOpt = None,
) -> None:
    """Simulated users of the synthetic world against the running real-time service.

    About RATE times a second one of the world's users asks GET /recommendations for K items,
    looks at position p with probability (1/p)^POSITION_BIAS and clicks what the world's ground
    truth says they like (near successors of their last item, their interests, popularity),
    never what the model scores; a click may lead to a cart and a purchase. Their events go to
    POST /events, tagged with the list's request_id. Stops after DURATION seconds (0: at
    Ctrl-C); prints a line every REPORT_EVERY_S seconds and a summary at the end.
    """
    import signal

    from recsys.data.world import World, world_path
    from recsys.simulate import Stopper, service_url
    from recsys.simulate import simulate as run_simulation

    path = world or world_path(_paths(home).raw)
    if not path.exists():
        raise typer.BadParameter(f"no world file at {path}: write one with `recsys generate` "
                                 "(a dataset loaded with `recsys load` has no ground truth)")
    stopper = Stopper(simulation.duration_s, grace_s=2 * simulation.timeout_s)
    typer.echo(f"simulating the users of {path} against {service_url(simulation)}: "
               f"{simulation.rate:g} requests/s, "
               + (f"for {simulation.duration_s:g} s" if simulation.duration_s
                  else "until Ctrl-C"))
    # Ctrl-C or SIGTERM ends the run cleanly: the last events go out, the summary prints.
    before = {sig: signal.signal(sig, lambda *_: stopper.stop())
              for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        counts = run_simulation(  # the report at the end is the summary below
            World.load(path), simulation, stopper,
            on_progress=lambda c: None if stopper.over() else typer.echo(c.line()))
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    by_position = ", ".join(f"{100 * c / counts.requests:.1f}" if counts.requests else "0"
                            for c in counts.clicks_by_position)
    typer.echo(f"done: {counts.line()}")
    typer.echo(f"CTR by position 1..{simulation.k} (%): {by_position}")


experiment_app = typer.Typer(
    help="Online experiments: champion against challenger on live (or simulated) traffic, "
         "by A/B split or interleaving, decided by an always-valid sequential test.",
    no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("start")
@config_options(experiment=(ExperimentConfig, [
    "control", "treatment", "mode", "traffic_share", "metric", "guardrail", "alpha",
    "effect_scale", "min_minutes", "max_minutes", "min_users"]))
def experiment_start(experiment: ExperimentConfig, home: HomeOpt = None) -> None:
    """Start showing TREATMENT (default: the challenger) beside CONTROL (the champion).

    The real-time service picks the experiment up within seconds; the experiment-decision
    deployment looks every minute and promotes, stops or ends it (`recsys experiment decide`
    does one look by hand).
    """
    from recsys import experiment_run

    try:
        exp = experiment_run.start(_paths(home), experiment)
    except experiment_run.ExperimentError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"experiment {exp.id} started: version {exp.treatment_version} against "
               f"version {exp.control_version} ({experiment.mode.value}, "
               f"{100 * experiment.traffic_share:.0f}% of users)")


@experiment_app.command("status")
def experiment_status(home: HomeOpt = None) -> None:
    """Every experiment, and the evidence so far for the running one."""
    from recsys import experiment_run

    every, seen = experiment_run.status(_paths(home))
    if not every:
        typer.echo("no experiments yet: `recsys experiment start`")
        return
    for exp in every:
        typer.echo(f"{exp.id}  {exp.status:<12} v{exp.treatment_version} vs "
                   f"v{exp.control_version}  {exp.settings.mode.value:<10} {exp.reason or ''}")
    if seen is not None:
        typer.echo("")
        typer.echo(experiment_run.markdown(seen.experiment, seen).rstrip())


@experiment_app.command("decide")
def experiment_decide(home: HomeOpt = None) -> None:
    """One look at the running experiment, acted on (what the every-minute deployment runs)."""
    from recsys import experiment_run

    out = experiment_run.decide(_paths(home))
    if out is None:
        typer.echo("no experiment is running")
        return
    exp = out.experiment
    typer.echo(f"experiment {exp.id}: {exp.status}: "
               + (out.look.verdict.reason if out.look and not out.acted else exp.reason or ""))


@experiment_app.command("stop")
def experiment_stop(
    experiment_id: Annotated[str | None, typer.Argument(
        help="Experiment id (default: the running one).", show_default=False)] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "operator",
    home: HomeOpt = None,
) -> None:
    """End an experiment now; the champion stays as it is."""
    from recsys import experiment_run

    try:
        exp = experiment_run.stop(_paths(home), experiment_id, f"stopped by operator: {reason}")
    except experiment_run.ExperimentError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"experiment {exp.id} stopped; the champion is unchanged")


stack_app = typer.Typer(help="The local stack: Prefect server + worker, MLflow server, "
                             "deployments, synthetic data and never-ending live traffic.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")

StateOpt = Annotated[Path, typer.Option(
    "--state", help="Folder for the stack's state, logs and Prefect database.")]


def _stack(home: Path | None, state: Path, stack: StackConfig | None = None, say=None):
    from recsys.stack import Stack

    project = Path(__file__).resolve().parent.parent
    return Stack(project, state.resolve(), _paths(home), stack or StackConfig(), say=say)


@stack_app.command("up")
@config_options(stack=(StackConfig, ["prefect_port", "mlflow_port", "serve_port", "preset",
                                     "epochs", "traffic", "speedup"]))
def stack_up(
    stack: StackConfig,
    bootstrap: Annotated[bool, typer.Option(
        help="Bootstrap what is missing (data, first champion) and start live traffic.")]
    = True,
    state: StateOpt = Path(".stack"),
    home: HomeOpt = None,
) -> None:
    """Start everything on 127.0.0.1 from whatever the folder holds, and keep traffic flowing.

    Says what it found (world, landed events, features, champion) and what it will do,
    bootstraps only what is missing, then starts the real-time service and live traffic:
    simulated users of the world (replay-loop: its events, lap after lap).
    """
    local = _stack(home, state, stack, say=typer.echo)
    if local.running():
        typer.echo(f"the stack is already running (state in {local.state_file}):")
        for name, line in local.status().items():
            typer.echo(f"  {name}: {line}")
        return
    local.up(bootstrap=bootstrap)
    typer.echo(f"Prefect UI: {local.prefect_url}")
    typer.echo(f"MLflow UI:  {local.mlflow_url}")
    if bootstrap:
        typer.echo(f"service:    {local.service_url} (docs at {local.service_url}/docs)")
    typer.echo(f"logs: {local.logs}; `recsys stack status` shows progress; stop with "
               "`recsys stack down`")


@stack_app.command("down")
def stack_down(state: StateOpt = Path(".stack"), home: HomeOpt = None) -> None:
    """Stop exactly the processes `stack up` started."""
    stopped = _stack(home, state).down()
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(state: StateOpt = Path(".stack"), home: HomeOpt = None) -> None:
    """Each service (running, healthy, log), the traffic, the last update and the champion."""
    lines = _stack(home, state).status()
    if not lines:
        typer.echo("no stack started from this folder")
    for name, line in lines.items():
        typer.echo(f"{name}: {line}")


@stack_app.command("reset")
def stack_reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
    = False,
    state: StateOpt = Path(".stack"),
    home: HomeOpt = None,
) -> None:
    """Return the folder to fresh: data home, mlflow.db, mlruns/* and the stack's state.

    Refuses while the stack is up (`recsys stack down` first).
    """
    local = _stack(home, state)
    if local.running():
        typer.echo("the stack is running: stop it first with `recsys stack down`", err=True)
        raise typer.Exit(1)
    targets = local.reset_targets()
    if not targets:
        typer.echo("nothing to remove: the folder is already fresh")
        return
    typer.echo("this removes:\n" + "\n".join(f"  {p}" for p in targets))
    if not yes and not typer.confirm("remove them?", default=False):
        typer.echo("nothing removed")
        raise typer.Exit(1)
    removed = local.reset()
    typer.echo(f"removed {len(removed)} path(s); the folder is fresh")


@stack_app.command("traffic")
def stack_traffic(state: StateOpt = Path(".stack"), home: HomeOpt = None) -> None:
    """Run the live traffic recorded in the stack's state, until stopped (`stack up` starts it)."""
    _stack(home, state).run_traffic()


if __name__ == "__main__":
    app()
