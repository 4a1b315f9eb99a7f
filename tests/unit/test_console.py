"""recsys.console: normal output keeps the project's lines and drops other libraries' noise."""

from __future__ import annotations

import logging
import warnings

import pytest

from recsys import console


@pytest.fixture
def restore_root(monkeypatch):
    import pytorch_lightning  # noqa: F401  imported first, it adds a handler of its own

    lightning = logging.getLogger("pytorch_lightning")
    monkeypatch.setattr(lightning, "handlers", list(lightning.handlers))
    monkeypatch.setattr(lightning, "propagate", lightning.propagate)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(console, "_quiet", console.quiet())


def _emit_all() -> None:
    logging.getLogger("recsys.data.ingest").info("own info")
    logging.getLogger("recsys.stack").warning("own warning")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").info("Tip: install something")
    logging.getLogger("some.library").warning("library warning")
    logging.getLogger("some.library").error("library error")


def test_normal_output_drops_other_libraries_below_error(restore_root, capsys):
    console.configure(verbose=False)
    assert console.quiet()
    _emit_all()
    with warnings.catch_warnings(record=True) as caught:
        console.configure(verbose=False)  # again: idempotent, and sets the filters inside
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == ["WARNING recsys.stack: own warning",
                                "ERROR some.library: library error"]
    assert caught == []  # third-party (here: test module) warnings are ignored


def test_services_show_the_projects_info_lines(restore_root, capsys):
    console.configure(verbose=False, level=logging.INFO)
    _emit_all()
    err = capsys.readouterr().err
    assert "own info" in err and "own warning" in err and "library error" in err
    assert "Tip" not in err and "library warning" not in err


def test_verbose_shows_everything(restore_root, capsys):
    console.configure(verbose=True)
    assert not console.quiet()
    _emit_all()
    err = capsys.readouterr().err
    for line in ("own info", "own warning", "Tip: install something", "library warning",
                 "library error"):
        assert line in err
    assert sum(isinstance(h, logging.StreamHandler) and type(h).__name__ == "_StderrHandler"
               for h in logging.getLogger().handlers) == 1  # configured twice, one handler


def test_estimate_bar_corrects_its_total_by_the_pace_so_far():
    with console.estimate("work", 100) as bar:
        bar.t0 -= 20  # 20 s spent on a part expected to take 10 s: twice as slow
        bar.finished(10, "part 1")
        assert bar._bar.total == pytest.approx(20 + 90 * 2, abs=1)
