"""Forgetting a user: their events leave every file the pipeline keeps; models are flagged.

Order, each step idempotent so that a crash is mended by running the command again:

1. the request is logged as started (with a hash of the id, never the id itself);
2. under the landing lock, every landing part and quarantine part holding the user is
   rewritten without them (temp file + rename, so readers see the old part or the new one;
   the part keeps its name and sequence, so no watermark moves);
3. under the store lock, their events and id-map entry are deleted and the derived tables
   rebuilt; under the recommendations lock, their list is deleted and the export rewritten;
4. every registered version whose watermark reaches the user's first event is tagged
   ``forget_requests``: its weights (and guard set) were trained on the user's data, which no
   fine-tune can take out. The next full retrain reads only what is left, so it is clean.
   A training that read its data before the request finished is tagged when it registers
   (``requests_after``);
5. the request is logged as done. The real-time service drops the user from memory when it
   sees the log entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys import columns as C
from recsys import sql
from recsys.config import FeatureConfig, Paths, TrackingConfig
from recsys.data.features import build_derived, open_store
from recsys.data.files import file_lock
from recsys.data.landing import LandingZone
from recsys.faults import crash_point
from recsys.registry.registry import Registry
from recsys.scoring.batch import export_recommendations
from recsys.timeutil import parse_ts, utc_now

log = logging.getLogger(__name__)

TAG = "forget_requests"


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def log_path(paths: Paths) -> Path:
    return paths.root / "privacy" / "forget-log.jsonl"


@dataclass
class ForgetReport:
    request_id: str
    user_sha256: str
    events_removed: int = 0
    parts_rewritten: int = 0
    quarantine_rows_removed: int = 0
    recommendation_rows_removed: int = 0
    first_seq: int | None = None
    affected_versions: list[str] = field(default_factory=list)
    champion_affected: bool = False

    def summary(self) -> str:
        lines = [f"forget request {self.request_id}: removed {self.events_removed} events "
                 f"({self.parts_rewritten} landing parts rewritten), "
                 f"{self.quarantine_rows_removed} quarantined rows and "
                 f"{self.recommendation_rows_removed} recommendation rows"]
        if self.affected_versions:
            lines.append(
                f"versions trained on this user's data (tagged {TAG}): "
                f"{', '.join(self.affected_versions)}"
                + (" (including the champion)" if self.champion_affected else "")
                + "; the next full retrain (`recsys train`) produces a model without them")
        else:
            lines.append("no registered version was trained on this user's data")
        return "\n".join(lines)


def _append_log(paths: Paths, record: dict) -> None:
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


def forget_user(user_id: str, paths: Paths | None = None,
                tracking_cfg: TrackingConfig | None = None,
                feature_cfg: FeatureConfig | None = None) -> ForgetReport:
    if not user_id:
        raise ValueError("user_id must not be empty")
    paths = paths or Paths()
    report = ForgetReport(uuid.uuid4().hex[:12], user_hash(user_id))
    started = utc_now()
    _append_log(paths, {"request_id": report.request_id, "user_sha256": report.user_sha256,
                        "status": "started", "started_at": started.isoformat()})

    zone = LandingZone(paths)
    with zone.writer() as writer:
        parts = zone.event_parts()
        if parts:
            con = sql.connect()
            try:
                hits = sql.query(con, "forget_user_parts", parts=[str(p) for p in parts],
                                 user_id=user_id).fetchall()
            finally:
                con.close()
            for path, n, first_seq in hits:
                table = pq.read_table(path, schema=C.LANDING_EVENT_SCHEMA)
                writer.replace_part(Path(path),
                                    table.filter(pc.not_equal(table[C.USER_ID], user_id)))
                report.events_removed += n
                report.parts_rewritten += 1
                crash_point("forget.after_first_part")
                report.first_seq = first_seq if report.first_seq is None else min(
                    report.first_seq, first_seq)
        for path in zone.quarantine_parts():
            con = sql.connect()
            try:
                kept = sql.query(con, "forget_user_quarantine", path=str(path),
                                 user_id=user_id).to_arrow_table().cast(C.QUARANTINE_SCHEMA)
            finally:
                con.close()
            removed = pq.read_metadata(path).num_rows - kept.num_rows
            if removed:
                writer.replace_part(path, kept)
                report.quarantine_rows_removed += removed

    crash_point("forget.after_landing")
    if paths.features_db.exists():
        with open_store(paths) as con:
            sql.run(con, "forget_user_events", user_id=user_id)
            sql.run(con, "forget_user_id_map", user_id=user_id)
            build_derived(con, feature_cfg or FeatureConfig())
            con.execute("CHECKPOINT")

    crash_point("forget.after_store")
    if paths.recommendations_db.exists():
        with file_lock(paths.recommendations_db.with_suffix(".lock"), timeout=600):
            con = sql.connect(paths.recommendations_db)
            try:
                report.recommendation_rows_removed = len(sql.run(
                    con, "forget_user_recommendations", user_id=user_id).fetchall())
                con.execute("CHECKPOINT")
                export_recommendations(con, paths.recommendations_export)
            finally:
                con.close()

    if report.first_seq is not None:
        registry = Registry(paths, tracking_cfg or TrackingConfig())
        champion = registry.champion()
        for v in registry.versions():
            if v.watermark >= report.first_seq:
                requests = [r for r in v.tags.get(TAG, "").split(",") if r]
                registry.tag(v.version, {TAG: ",".join([*requests, report.request_id])})
                report.affected_versions.append(v.version)
        report.champion_affected = champion is not None and \
            champion.version in report.affected_versions

    _append_log(paths, {**asdict(report), "status": "done", "started_at": started.isoformat(),
                        "finished_at": utc_now().isoformat()})
    log.info(report.summary())
    return report
