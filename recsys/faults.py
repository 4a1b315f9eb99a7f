"""Named crash points for fault-injection tests: ``RECSYS_KILL_AT=<name>`` SIGKILLs the process.

A SIGKILL cannot be caught, so it is the honest model of a power cut or an OOM kill: no
``finally`` runs. Outside tests the variable is unset and a crash point costs a dict lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("RECSYS_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
