"""The CLI: --help everywhere, and the demo runs end to end."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recsys.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["generate"], ["ingest"], ["load"], ["replay"],
                                 ["features"], ["train"], ["status"], ["demo"],
                                 ["update"], ["promote"], ["rollback"], ["models"],
                                 ["backtest"], ["score"], ["serve"]])
def test_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_demo_then_status_and_a_rejected_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_TRACKING_HOME", str(tmp_path / "tracking"))
    home = tmp_path / "home"
    result = runner.invoke(app, ["demo", "--preset", "tiny", "--epochs", "8", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "features: watermark" in result.output and "quarantine: 0 rows" in result.output
    assert "registered version 1" in result.output and "| seqrec |" in result.output
    assert "version 1 promoted" in result.output
    assert result.output.count("update promoted") + result.output.count("update rejected") == 3
    assert "| 4 | challenger, champion | incremental | 3 |" in result.output \
        or "update rejected" in result.output
    assert (tmp_path / "tracking" / "mlflow.db").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    result = runner.invoke(app, ["ingest", str(bad), "--home", str(home)])
    assert result.exit_code == 1
    assert "missing required column" in result.output
