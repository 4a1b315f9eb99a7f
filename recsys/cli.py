"""The ``recsys`` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from recsys.config import FeatureConfig, IngestConfig, Loss, LrSchedule, Paths, Protocol

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


class Preset(StrEnum):
    tiny = "tiny"
    small = "small"
    medium = "medium"
    large = "large"


class Kind(StrEnum):
    events = "events"
    items = "items"


class Format(StrEnum):
    contract = "contract"
    movielens = "movielens"
    ml100k = "ml100k"
    retailrocket = "retailrocket"
    sasrec = "sasrec"


def _paths(home: Path | None) -> Paths:
    return Paths(root=home.resolve()) if home else Paths()


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False):
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def generate(
    preset: Annotated[Preset, typer.Option(help="Size of the synthetic world.")] = Preset.small,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same data.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <home>/raw).")] = None,
    home: HomeOpt = None,
) -> None:
    """Write a seeded synthetic dataset (events.parquet + items.parquet)."""
    from recsys.data.synthetic import generate as gen
    from recsys.data.synthetic import preset as get_preset

    out = out or _paths(home).raw
    out.mkdir(parents=True, exist_ok=True)
    data = gen(get_preset(preset.value, seed=seed))
    data.events.to_parquet(out / "events.parquet", index=False)
    data.items.to_parquet(out / "items.parquet", index=False)
    typer.echo(f"wrote {len(data.events):,} events and {len(data.items):,} items to {out}")


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
    speedup: Annotated[float, typer.Option(help="Event-time seconds per wall second "
                                           "(1440 = a day per minute).")] = 1440.0,
    tick: Annotated[float, typer.Option(help="Wall seconds between ingests.")] = 5.0,
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
    cfg = ReplayConfig(speedup=speedup, tick_seconds=tick, max_ticks=max_ticks,
                       realtime=not no_sleep)
    reports = run_replay(loaded.events, cfg, paths=_paths(home), source=str(path))
    typer.echo(f"replayed {sum(r.accepted for r in reports):,} events in {len(reports)} ticks")


@app.command()
def features(
    max_seq_len: Annotated[int, typer.Option(help="Events kept per user sequence.")] = 200,
    text_encoder: Annotated[str, typer.Option(
        help="Item text encoder: wordllama (offline), sentence-transformers:<model>, none.")
    ] = "wordllama",
    home: HomeOpt = None,
) -> None:
    """Refresh the DuckDB feature store from the landing zone and rebuild derived tables."""
    from recsys.data.features import build_features

    report, summary = build_features(
        _paths(home), FeatureConfig(max_seq_len=max_seq_len, text_encoder=text_encoder))
    typer.echo(report.summary())
    typer.echo(json.dumps(summary.as_dict(), default=str, indent=2))


@app.command()
def train(
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on val NDCG@10).")]
    = 30,
    patience: Annotated[int, typer.Option(help="Epochs without improvement before stopping.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Sequences per optimiser step.")] = 128,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 3e-3,
    lr_schedule: Annotated[LrSchedule, typer.Option(
        help="constant, or cosine decay per step to 0 at --epochs.")] = LrSchedule.constant,
    weight_decay: Annotated[float, typer.Option(
        help="AdamW weight decay on weight matrices and embeddings (not norms or biases).")]
    = 0.0,
    d_model: Annotated[int, typer.Option(help="Embedding / hidden size.")] = 64,
    blocks: Annotated[int, typer.Option(help="Transformer blocks in the user tower.")] = 2,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 2,
    max_len: Annotated[int, typer.Option(help="Most recent items the user tower reads.")] = 50,
    dropout: Annotated[float, typer.Option(help="Dropout in the user tower.")] = 0.2,
    init_std: Annotated[float, typer.Option(
        help="Initial weights ~ N(0, init_std), as in SASRec's code; 0 = PyTorch's defaults.")]
    = 0.02,
    bucket_window: Annotated[int, typer.Option(
        help="Batches cut from windows of this many length-sorted batches; 1 = random batches "
             "(best quality), 50 = least padding (fastest epochs).")] = 1,
    ema_decay: Annotated[float, typer.Option(
        help="Validate and ship an exponential moving average of the weights (decay per step, "
             "e.g. 0.999); 0 = the raw weights.")] = 0.0,
    loss: Annotated[Loss, typer.Option(help="Full softmax or sampled softmax with log-Q.")]
    = Loss.softmax,
    negatives: Annotated[int, typer.Option(help="Negatives per batch for the sampled loss.")]
    = 1024,
    label_smoothing: Annotated[float, typer.Option(
        help="Share of the softmax target spread over all items (full softmax only).")] = 0.0,
    text: Annotated[bool, typer.Option(help="Use item text in the item tower.")] = True,
    protocol: Annotated[Protocol, typer.Option(help="Evaluation split.")]
    = Protocol.leave_last_out,
    exclude_seen: Annotated[bool, typer.Option(
        help="Remove already-seen items from rankings in evaluation.")] = False,
    accelerator: Annotated[str, typer.Option(help="auto, cpu, gpu ...")] = "auto",
    devices: Annotated[str, typer.Option(help="auto or a number of devices/processes.")] = "auto",
    strategy: Annotated[str, typer.Option(help="auto, ddp, ddp_spawn, ... (Lightning).")]
    = "auto",
    precision: Annotated[str, typer.Option(
        help="auto (bf16 on CUDA / bf16-capable CPUs), 32-true, bf16-mixed ...")] = "auto",
    max_steps_per_epoch: Annotated[int, typer.Option(help="Cap steps per epoch (0 = all).")]
    = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    register: Annotated[bool, typer.Option(help="Register the model in the MLflow registry.")]
    = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    home: HomeOpt = None,
) -> None:
    """Full retrain from the feature store: train, evaluate against baselines, log to MLflow."""
    from recsys.config import EvalConfig, ModelConfig, TrackingConfig, TrainConfig
    from recsys.training.full_retrain import train as run_training

    result = run_training(
        _paths(home),
        ModelConfig(d_model=d_model, n_blocks=blocks, n_heads=heads, max_len=max_len,
                    dropout=dropout, loss=loss, n_negatives=negatives, use_text=text,
                    init_std=init_std or None, label_smoothing=label_smoothing),
        TrainConfig(protocol=protocol, max_epochs=epochs, patience=patience,
                    batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                    weight_decay=weight_decay, seed=seed,
                    bucket_window=bucket_window, ema_decay=ema_decay,
                    accelerator=accelerator,
                    devices=int(devices) if devices.isdigit() else devices, strategy=strategy,
                    precision=precision, max_steps_per_epoch=max_steps_per_epoch,
                    progress_bar=progress),
        EvalConfig(exclude_seen=exclude_seen),
        TrackingConfig(register_model=register),
    )
    if result is not None:  # None on DDP worker ranks: rank zero reports
        _report_training(result)


@app.command()
def status(home: HomeOpt = None) -> None:
    """Print what the landing zone, quarantine and feature store hold, and the champion."""
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
                   + ("unknown" if age is None else f"{age:,.0f} s"))


@app.command()
def demo(
    preset: Annotated[Preset, typer.Option(help="Size of the synthetic world.")] = Preset.small,
    epochs: Annotated[int, typer.Option(help="Maximum training epochs (early stopping).")] = 30,
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
    import pandas as pd

    from recsys.config import EvalConfig, ModelConfig, TrackingConfig, TrainConfig
    from recsys.data.features import build_features
    from recsys.data.ingest import ingest_frame, ingest_paths
    from recsys.data.status import status_report
    from recsys.training.full_retrain import train as run_training
    from recsys.training.update import update as run_update

    paths = _paths(home)
    generate(preset=preset, seed=0, out=paths.raw, home=home)
    for r in ingest_paths([paths.raw / "items.parquet"], kind="items", data_paths=paths,
                          config=IngestConfig()):
        typer.echo(r.summary())
    events = pd.read_parquet(paths.raw / "events.parquet").sort_values("ts", kind="stable")
    n_live = int(len(events) * live_fraction)
    history, live = events.iloc[:len(events) - n_live], events.iloc[len(events) - n_live:]
    typer.echo(ingest_frame(history, "history", data_paths=paths).summary())
    report, _ = build_features(paths, FeatureConfig())
    typer.echo(report.summary())
    typer.echo(status_report(paths))
    typer.echo("training the sequential recommender (full retrain) ...")
    result = run_training(paths, ModelConfig(), TrainConfig(max_epochs=epochs), EvalConfig(),
                          TrackingConfig())
    _report_training(result)
    if not updates or not n_live:
        return
    parts = 2 * updates  # each update trains one part and holds out the newest
    typer.echo(f"landing {n_live:,} newer events in {parts} parts, "
               f"with a micro-batch update after every 2 ...")
    for i in range(parts):
        chunk = live.iloc[i * n_live // parts:(i + 1) * n_live // parts]
        ingest_frame(chunk, f"live-{i}", data_paths=paths)
        if i % 2 == 1:
            typer.echo(run_update(paths).summary())
    models(home=home)


def _report_training(result) -> None:
    typer.echo(result.summary())
    typer.echo(f"best epoch {result.best_epoch} after {result.time_to_best_s:.1f} s; "
               f"{result.positions_per_s:,.0f} target positions/s; "
               f"peak RSS {result.memory['peak_rss_mb']:.0f} MB")
    typer.echo(f"MLflow run {result.run_id}; model {result.model_uri}"
               + (f"; registered version {result.version}" if result.version else ""))
    if result.decision:
        typer.echo(f"version {result.version} {result.decision}: {result.decision_reason}")


@app.command()
def update(
    max_steps: Annotated[int, typer.Option(help="Most optimiser steps per update.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Sequences per step (grows to fit max-steps).")]
    = 256,
    lr: Annotated[float, typer.Option(help="Fine-tune learning rate.")] = 1e-3,
    replay_ratio: Annotated[float, typer.Option(
        help="Replayed older sequences per sequence with new events.")] = 1.0,
    holdout_fraction: Annotated[float, typer.Option(
        help="Share of the newest events held out to test on (trained on next time).")] = 0.2,
    tolerance: Annotated[float, typer.Option(
        help="Largest relative NDCG@10 drop against the champion that still promotes.")] = 0.05,
    max_batch_events: Annotated[int, typer.Option(
        help="Most events per update; a larger backlog takes several updates.")] = 200_000,
    keep_incremental: Annotated[int, typer.Option(
        help="Incremental versions kept by retention (aliased ones always are).")] = 10,
    keep_full: Annotated[int, typer.Option(help="Full-retrain versions kept by retention.")] = 5,
    home: HomeOpt = None,
) -> None:
    """Micro-batch update: fine-tune the champion on events after its watermark, gate, promote.

    Exits quickly when nothing new has landed. Every outcome is appended to updates.jsonl.
    """
    from recsys.config import GateConfig, RetentionConfig, UpdateConfig
    from recsys.training.update import update as run_update

    result = run_update(
        _paths(home),
        UpdateConfig(max_steps=max_steps, batch_size=batch_size, lr=lr, replay_ratio=replay_ratio,
                     holdout_fraction=holdout_fraction, max_batch_events=max_batch_events),
        GateConfig(tolerance=tolerance),
        RetentionConfig(keep_incremental=keep_incremental, keep_full=keep_full),
    )
    typer.echo(result.summary())


@app.command()
def score(
    k: Annotated[int, typer.Option(help="Items per user.")] = 10,
    window_days: Annotated[float, typer.Option(
        help="Score users with an event in this many days before the newest event.")] = 30.0,
    exclude_purchased: Annotated[bool, typer.Option(
        help="Remove items the user purchased or rated.")] = True,
    exclude_seen: Annotated[bool, typer.Option(help="Remove every item already seen.")]
    = False,
    exclude_category: Annotated[list[str] | None, typer.Option(
        help="Never recommend this category (repeatable).")] = None,
    chunk_size: Annotated[int, typer.Option(help="Users scored per chunk (bounds memory).")]
    = 512,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    home: HomeOpt = None,
) -> None:
    """Batch top-K for active users with the champion, into recommendations.duckdb + Parquet."""
    from recsys.config import ScoreConfig
    from recsys.scoring.batch import score_users

    report = score_users(_paths(home), ScoreConfig(
        k=k, window_days=window_days, exclude_purchased=exclude_purchased,
        exclude_seen=exclude_seen, exclude_categories=tuple(exclude_category or ()),
        chunk_size=chunk_size, progress_bar=progress))
    typer.echo(report.summary())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (keep 127.0.0.1 behind a proxy).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    home: HomeOpt = None,
) -> None:
    """Real-time recommendations over HTTP (FastAPI): follows the champion, reads new events."""
    from recsys.scoring.service import serve as run_service

    run_service(_paths(home), host=host, port=port)


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
    from recsys.privacy import forget_user as run_forget

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
                   f"{v.watermark} | {'' if age is None else f'{age:,.0f}s'} | "
                   f"{v.tags.get('decision', '')}: {v.tags.get('decision_reason', '')} | "
                   f"{v.tags.get('forget_requests', '')} |")


@app.command()
def backtest(
    dataset: Annotated[Path | None, typer.Option(
        help="Dataset file/folder to replay (default: synthetic data of --preset).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Format of --dataset.")]
    = Format.contract,
    preset: Annotated[Preset, typer.Option(help="Synthetic world when no --dataset.")]
    = Preset.tiny,
    windows: Annotated[int, typer.Option(help="Replay windows after the initial period.")] = 10,
    initial_fraction: Annotated[float, typer.Option(
        help="Share of events (by time) the static model is trained on.")] = 0.5,
    full_every: Annotated[int, typer.Option(
        help="Windows between full retrains (0 = never).")] = 5,
    epochs: Annotated[int, typer.Option(help="Epochs of each full retrain.")] = 10,
    d_model: Annotated[int, typer.Option(help="Embedding / hidden size.")] = 64,
    workdir: Annotated[Path | None, typer.Option(
        help="Scratch project folder for the replay (default: a new temp folder).")] = None,
    home: HomeOpt = None,
) -> None:
    """Prequential replay: static vs micro-batch-updated vs periodically retrained model.

    Prints HR@10/NDCG@10 per window and the mean freshness lag; logs the table, JSON and a
    PNG plot to the MLflow experiment recsys-backtest of this project.
    """
    import tempfile

    from recsys.config import BacktestConfig, ModelConfig, TrainConfig
    from recsys.data.loaders import load
    from recsys.data.synthetic import generate
    from recsys.data.synthetic import preset as synthetic_preset
    from recsys.training.backtest import backtest as run_backtest

    if dataset is not None:
        loaded = load(dataset, fmt.value)
        events, items = loaded.events, loaded.items
    else:
        data = generate(synthetic_preset(preset.value))
        events, items = data.events, data.items
    workdir = workdir or Path(tempfile.mkdtemp(prefix="recsys-backtest-"))
    result = run_backtest(
        events, items, workdir,
        BacktestConfig(windows=windows, initial_fraction=initial_fraction, full_every=full_every),
        ModelConfig(d_model=d_model),
        TrainConfig(max_epochs=epochs, patience=epochs, progress_bar=False),
        report_paths=_paths(home))
    typer.echo(result.table())
    typer.echo(f"MLflow run {result.run_id} (experiment recsys-backtest); replay in {workdir}")


stack_app = typer.Typer(help="The local stack: Prefect server + worker, MLflow server, "
                             "deployments, synthetic data and a live replay.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")

StateOpt = Annotated[Path, typer.Option(
    "--state", help="Folder for the stack's state, logs and Prefect database.")]


def _stack(home: Path | None, state: Path, prefect_port: int = 4200, mlflow_port: int = 5000,
           **kw):
    from recsys.stack import Stack, StackConfig

    project = Path(__file__).resolve().parent.parent
    return Stack(project, state.resolve(), _paths(home),
                 StackConfig(prefect_port=prefect_port, mlflow_port=mlflow_port, **kw))


@stack_app.command("up")
def stack_up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port (UI and API).")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow tracking server port.")] = 5000,
    preset: Annotated[Preset, typer.Option(help="Synthetic world to start with.")]
    = Preset.small,
    epochs: Annotated[int, typer.Option(help="Epochs of the first full retrain.")] = 10,
    speedup: Annotated[float, typer.Option(
        help="Replay speed: event seconds per wall second.")] = 2880.0,
    bootstrap: Annotated[bool, typer.Option(
        help="Generate data, train a first champion and start a replay.")] = True,
    state: StateOpt = Path(".stack"),
    home: HomeOpt = None,
) -> None:
    """Start everything on 127.0.0.1, wait until healthy, deploy, bootstrap, print the UIs."""
    stack = _stack(home, state, prefect_port, mlflow_port, preset=preset.value, epochs=epochs,
                   speedup=speedup)
    if stack.running():
        typer.echo(f"the stack is already running (state in {stack.state_file}):")
        for name, line in stack.status().items():
            typer.echo(f"  {name}: {line}")
        return
    stack.up(bootstrap=bootstrap)
    typer.echo(f"Prefect UI: {stack.prefect_url}")
    typer.echo(f"MLflow UI:  {stack.mlflow_url}")
    typer.echo(f"logs: {stack.logs}; stop with `recsys stack down`")


@stack_app.command("down")
def stack_down(state: StateOpt = Path(".stack"), home: HomeOpt = None) -> None:
    """Stop exactly the processes `stack up` started."""
    stopped = _stack(home, state).down()
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(state: StateOpt = Path(".stack"), home: HomeOpt = None) -> None:
    """Each service: running or not, healthy or not, its log file."""
    lines = _stack(home, state).status()
    if not lines:
        typer.echo("no stack started from this folder")
    for name, line in lines.items():
        typer.echo(f"{name}: {line}")


if __name__ == "__main__":
    app()
