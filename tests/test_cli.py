"""The CLI: --help everywhere, options build the typed configs, and the demo runs end to end."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import (
    BacktestConfig,
    BacktestData,
    EvalConfig,
    GateConfig,
    ModelConfig,
    Paths,
    RetentionConfig,
    ScoreConfig,
    TrackingConfig,
    TrainConfig,
    UpdateConfig,
)

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["generate"], ["ingest"], ["load"], ["replay"],
                                 ["features"], ["train"], ["status"], ["demo"],
                                 ["update"], ["promote"], ["rollback"], ["models"],
                                 ["backtest"], ["score"], ["serve"], ["stack", "up"]])
def test_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _capture(monkeypatch, module: str, name: str) -> list:
    import importlib

    calls = []

    class Result:
        def summary(self) -> str:
            return "captured"

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return Result()
    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return calls


def test_train_options_build_the_configs(monkeypatch, tmp_path):
    calls = _capture(monkeypatch, "recsys.training.full_retrain", "train")
    monkeypatch.setattr("recsys.cli._report_training", lambda result: None)
    result = runner.invoke(app, [
        "train", "--epochs", "4", "--heads", "1", "--blocks", "3", "--no-text", "--init-std",
        "0", "--devices", "2", "--lr-schedule", "cosine", "--no-register", "--exclude-seen",
        "--no-progress", "--unseen-min-events", "10", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (paths, model, training, evaluation, tracking, gate), _ = calls[0]
    assert gate == GateConfig(unseen_min_events=10)
    assert paths == Paths(root=tmp_path.resolve())
    assert model == ModelConfig(n_heads=1, n_blocks=3, use_text=False, init_std=None)
    assert training == TrainConfig(max_epochs=4, devices=2, lr_schedule="cosine",
                                   progress_bar=False)
    assert evaluation == EvalConfig(exclude_seen=True)
    assert tracking == TrackingConfig(register_model=False)
    bad = runner.invoke(app, ["train", "--label-smoothing", "0.1", "--loss", "sampled"])
    assert bad.exit_code != 0 and "label_smoothing" in bad.output


def test_update_score_and_backtest_options_build_the_configs(monkeypatch, tmp_path):
    home = ["--home", str(tmp_path)]
    calls = _capture(monkeypatch, "recsys.training.update", "update")
    assert runner.invoke(app, ["update", "--max-steps", "7", "--tolerance", "0.1",
                               "--keep-full", "2", *home]).exit_code == 0
    assert calls[0][0][1:] == (UpdateConfig(max_steps=7), GateConfig(tolerance=0.1),
                               RetentionConfig(keep_full=2))
    calls = _capture(monkeypatch, "recsys.scoring.batch", "score_users")
    assert runner.invoke(app, ["score", "--exclude-category", "a", "--exclude-category", "b",
                               *home]).exit_code == 0
    assert calls[0][0][1] == ScoreConfig(exclude_categories=("a", "b"))
    assert runner.invoke(app, ["score", *home]).exit_code == 0
    assert calls[1][0][1] == ScoreConfig()

    seen = []
    done = SimpleNamespace(result=SimpleNamespace(table=lambda: "table", run_id="r"),
                           workdir=tmp_path)
    monkeypatch.setattr("recsys.backtest_run.run_backtest",
                        lambda *args: seen.append(args) or done)
    result = runner.invoke(app, ["backtest", "--preset", "small", "--windows", "8", "--epochs",
                                 "5", *home])
    assert result.exit_code == 0, result.output
    data, replay, model, training, paths, workdir = seen[0]
    assert data == BacktestData(synthetic="small") and replay == BacktestConfig(windows=8)
    assert model == ModelConfig() and training == TrainConfig(max_epochs=5) and workdir is None


@pytest.fixture
def process_output_settings(monkeypatch):
    """The CLI's callback sets up this process's logging, warnings and MLflow's messages:
    put them back after the test."""
    import logging

    from mlflow.utils import logging_utils

    from recsys import console

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(console, "_quiet", console.quiet())
    monkeypatch.setattr(logging_utils.MLFLOW_LOGGING_STREAM, "_enabled", True)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)


def assert_quiet(output: str) -> None:
    """One line per event: no line twice, no other library's warnings, tips or bars."""
    lines = [line for line in output.splitlines() if line.strip() and set(line) - set("|-")]
    twice = sorted({line for line in lines if lines.count(line) > 1})
    assert not twice, f"printed more than once: {twice}\n{output}"
    for noise in ("Warning", "WARNING", "warn", "Tip", "tip:", "Downloading artifacts", "INFO",
                  "Successfully registered", "it/s", "deprecated"):
        assert noise not in output, f"{noise!r} in the output:\n{output}"


def test_demo_then_status_and_a_rejected_file(tmp_path, monkeypatch, process_output_settings):
    from recsys.registry.registry import Registry

    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(tmp_path / "tracking"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = tmp_path / "home"
    result = runner.invoke(app, ["demo", "--preset", "tiny", "--epochs", "8", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert_quiet(result.output)
    first = result.output.splitlines()
    assert first[0].startswith("timing two training steps")
    assert first[1].startswith("expected duration: about ")
    assert re.search(r"^demo finished in .*; estimated .* \([+-]\d+%\)$", result.output, re.M)
    assert "features: watermark" in result.output and "quarantine: 0 rows" in result.output
    assert "registered version 1" in result.output and "| seqrec |" in result.output
    assert "version 1 promoted" in result.output
    assert (tmp_path / "tracking" / "mlflow.db").exists()

    # Each of the three updates registered a candidate of the champion of its time, and the
    # registry agrees with what the demo printed: the champion moved exactly on promotions.
    updates = re.findall(r"update (promoted|rejected): .*?candidate version (\d+) "
                         r"\(parent (\d+)\)", result.output)
    assert len(updates) == 3, result.output
    registry = Registry(Paths(root=home, tracking_home=tmp_path / "tracking"), TrackingConfig())
    champion = "1"
    for status, version, parent in updates:
        assert parent == champion
        v = registry.get(version)
        assert v.kind == "incremental" and v.parent == champion
        assert v.tags["decision"] == status
        if status == "promoted":
            champion = version
    assert registry.champion().version == champion
    row = next(line for line in result.output.splitlines() if line.startswith(f"| {champion} |"))
    assert "champion" in row.split("|")[2]

    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    result = runner.invoke(app, ["ingest", str(bad), "--home", str(home)])
    assert result.exit_code == 1
    assert "missing required column" in result.output
