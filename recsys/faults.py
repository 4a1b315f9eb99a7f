"""Named crash points for fault-injection tests: ``RECSYS_KILL_AT=<name>`` SIGKILLs the process.

``RECSYS_KILL_AT=<name>#<n>`` kills at the n-th time the point is reached (the second chunk of
an ingest, say). A SIGKILL cannot be caught, so it is the honest model of a power cut or an
OOM kill: no ``finally`` runs. Outside tests the variable is unset and a crash point costs a
dict lookup. ``POINTS`` lists every point, so the fault suite can check it covers them all.

``RECSYS_STALL_AT=<name>`` with ``RECSYS_STALL_FILE=<path>`` holds the process at the point
instead: it writes the file and waits until the test removes it (to kill a server meanwhile).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

POINTS = {
    "ingest": ("ingest.after_validate", "ingest.after_events_part",
               "event_index.before_commit", "ingest.after_quarantine_part",
               "files.before_rename", "files.after_rename"),
    "features": ("features.after_refresh", "features.after_sequences",
                 "features.before_checkpoint"),
    "update": ("update.after_extract", "finetune.after_step", "update.after_register",
               "update.after_candidate", "registry.between_aliases", "update.after_promote"),
    "train": ("train.after_fit", "train.after_register", "registry.between_aliases"),
    "score": ("score.after_chunk", "score.before_swap", "score.after_swap",
              "files.before_rename"),
    "experiment": ("experiment.after_decision", "experiment.after_promote"),
    "forget": ("forget.after_first_part", "forget.after_landing", "forget.after_store"),
}

_hits: Counter[str] = Counter()


def crash_point(name: str) -> None:
    if os.environ.get("RECSYS_STALL_AT") == name:
        flag = Path(os.environ["RECSYS_STALL_FILE"])
        flag.write_text(name)
        while flag.exists():
            time.sleep(0.1)
    target = os.environ.get("RECSYS_KILL_AT")
    if not target:
        return
    point, _, nth = target.partition("#")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
