"""What a person at a terminal sees: one line per event, no third-party noise, bars with ETAs.

The entry point (``recsys.cli``'s callback) calls :func:`configure` once. Normal output is the
command's own lines and the project's warnings; other libraries' log records below ERROR,
their Python warnings and their tips are dropped. ``-v`` shows everything, with timestamps.
MLflow logs through its own handler and prints through its own stream: the registry reads
:func:`quiet` and silences them (``recsys/registry/tracking.py``).

Progress bars are tqdm's, in one style (:data:`BAR_FORMAT`, :data:`STEP_FORMAT` when there
are steps to count), drawn only on a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import warnings
from collections.abc import Iterator

OWN = ("recsys", "flows", "__main__")  # loggers of this project; the rest is third party
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")
VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"
STEP_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit}s "
               "{elapsed}<{remaining}{postfix}")

_quiet = False


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes above any progress bar on screen.

    It writes to whatever ``sys.stderr`` is when a record comes: test runners swap it.
    """

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass

    def emit(self, record: logging.LogRecord) -> None:
        tqdm = sys.modules.get("tqdm")
        with tqdm.tqdm.external_write_mode(file=sys.stderr) if tqdm else contextlib.nullcontext():
            super().emit(record)


class _OwnOrSevere(logging.Filter):
    """Keep the project's records from ``level`` up and other libraries' from ERROR up."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in OWN
        return record.levelno >= (self.level if own else logging.ERROR)


def configure(verbose: bool = False, level: int = logging.WARNING) -> None:
    """Set up logging and warnings for a command-line process (idempotent).

    Parameters
    ----------
    verbose
        Everything at DEBUG with timestamps, third-party warnings and MLflow's messages
        included.
    level
        Lowest level of this project's own records in normal output: WARNING for commands that
        print their results, INFO for services whose log is their output (``serve``, ``stack``).
    """
    global _quiet
    _quiet = not verbose
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    if verbose:
        handler.setFormatter(logging.Formatter(VERBOSE_FORMAT))
        root.setLevel(logging.DEBUG)
        warnings.resetwarnings()
        warnings.simplefilter("default")
    else:
        fmt = VERBOSE_FORMAT if level < logging.WARNING else "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
        handler.addFilter(_OwnOrSevere(level))
        root.setLevel(min(level, logging.INFO))
        warnings.simplefilter("ignore")  # deprecations and advice meant for library authors
        warnings.filterwarnings("default", module=r"(recsys|flows)(\.|$)")
    root.addHandler(handler)
    # Lightning gives its logger a handler of its own when it is imported before logging is set
    # up (a test process, a flow); send its records through this one instead.
    for name in LIGHTNING_LOGGERS:
        if name in logging.Logger.manager.loggerDict:
            lib = logging.getLogger(name)
            lib.handlers = [h for h in lib.handlers if type(h) is not logging.StreamHandler]
            lib.propagate = True


def quiet() -> bool:
    """Whether the entry point asked for normal output (third-party messages off)."""
    return _quiet


def say(message: str) -> None:
    """Print one line to stdout, above any progress bar on screen."""
    from tqdm import tqdm

    with tqdm.external_write_mode(file=sys.stderr):
        print(message, flush=True)


class Estimate:
    """A bar over an expected duration, moved by the clock.

    The expectation is corrected as parts finish (see :meth:`finished`).
    """

    def __init__(self, desc: str, expected_s: float):
        from tqdm import tqdm

        self.expected_s = max(expected_s, 1.0)
        self.t0 = time.perf_counter()
        self._bar = tqdm(total=round(self.expected_s), desc=desc, bar_format=BAR_FORMAT,
                         disable=None, leave=False, file=sys.stderr)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def finished(self, expected_so_far_s: float, part: str | None = None) -> None:
        """Record that a part ended where the estimate put it at ``expected_so_far_s``.

        The time still to go is scaled by how fast the finished parts went.
        """
        pace = self.elapsed_s / max(expected_so_far_s, 1.0)
        total = self.elapsed_s + max(self.expected_s - expected_so_far_s, 0.0) * pace
        self._bar.total = max(round(total), 1)
        if part:
            self._bar.set_postfix_str(part, refresh=False)
        self._bar.refresh()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            # Never claim to be done before the work is: past the total, the total grows.
            total = max(self._bar.total, round(self.elapsed_s * 1.05) + 1)
            self._bar.total = total
            self._bar.n = min(round(self.elapsed_s), total - 1)
            self._bar.refresh()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._bar.close()


@contextlib.contextmanager
def estimate(desc: str, expected_s: float) -> Iterator[Estimate]:
    """Show a clock-driven bar for work with no steps of its own to count.

    ``with estimate("demo", 420) as bar: ...``; the bar is gone when the block ends.
    """
    bar = Estimate(desc, expected_s)
    try:
        yield bar
    finally:
        bar.close()
