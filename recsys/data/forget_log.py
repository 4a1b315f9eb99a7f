"""The forget-request log: which users were forgotten, and when.

One JSON line per step of a request (``started``, then ``done``), holding a SHA-256 of the user
id, never the id itself. Everything that keeps user data reads it: the real-time service drops
forgotten users from memory, and a training that read its data before a request finished tags
the version it registers (``requests_after``). The use case that writes it is
``recsys.forget.forget_user``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from recsys.config import Paths
from recsys.timeutil import parse_ts

# Version tag listing the forget requests whose user a version was trained on.
TAG = "forget_requests"


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def log_path(paths: Paths) -> Path:
    return paths.root / "privacy" / "forget-log.jsonl"


def append(paths: Paths, record: dict) -> None:
    """Add one record to the log (the folder is created on first use)."""
    path = log_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


def read_log(paths: Paths) -> list[dict]:
    path = log_path(paths)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def forgotten_hashes(paths: Paths) -> set[str]:
    return {r["user_sha256"] for r in read_log(paths) if r.get("status") == "done"}


def requests_after(paths: Paths, read_at: dt.datetime | None, watermark: int) -> list[str]:
    """Requests a training that read its data at ``read_at`` may not have seen through.

    A request counts if it finished after the read and the user's first event is at or below
    the model's watermark: the model may hold their data though the request tagged nothing.
    """
    out = []
    for r in read_log(paths):
        done = parse_ts(r.get("finished_at"))
        if (r.get("status") == "done" and r.get("first_seq") is not None
                and int(r["first_seq"]) <= watermark
                and (done is None or read_at is None or done >= read_at)):
            out.append(r["request_id"])
    return out
