"""What the Prefect flows need beyond the library calls themselves, kept testable here.

Flows in ``flows/`` stay declarative; the rules they apply (when a scheduled run is too late
to be worth running, which failures are worth a retry) live in this module.
"""

from __future__ import annotations

import datetime as dt

# Global concurrency limit held while aliases may move: by every micro-batch update, and by a
# full retrain while it gates and promotes. Created by `recsys stack up`.
REGISTRY_LIMIT = "recsys-registry"


def started_late(scheduled: dt.datetime | None, now: dt.datetime | None = None, *,
                 max_delay_s: float) -> bool:
    """A scheduled run that starts this late is a leftover (a worker that was away): skip it.

    The allowed delay is the micro-batch flow's parameter (its one home).

    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> late = dt.timedelta(hours=1)
    >>> started_late(t, t + dt.timedelta(seconds=30), max_delay_s=120), started_late(
    ...     t, t + late, max_delay_s=120)
    (False, True)
    """
    if scheduled is None:
        return False
    now = now or dt.datetime.now(dt.UTC)
    if scheduled.tzinfo is None:
        scheduled = scheduled.replace(tzinfo=dt.UTC)
    return (now - scheduled).total_seconds() > max_delay_s


def retry_on_io(task, task_run, state) -> bool:
    """Retry a task only for I/O trouble (disk, network, a busy lock), never for bad data.

    ``OSError`` covers them all: connection errors of ``requests`` and our ``LockTimeout``
    derive from it, while bad input raises ``ValueError`` and friends. MLflow wraps a dead
    tracking server's connection error in an ``MlflowException``: the chain is searched.
    """
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as raised:  # a state whose result cannot even be read
        exc = raised
    return caused_by_io(exc)


def caused_by_io(exc: BaseException | None) -> bool:
    """``exc`` is an ``OSError``, or was raised while handling or because of one."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
