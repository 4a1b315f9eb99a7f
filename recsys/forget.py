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
   (``forget_log.requests_after``);
5. the request is logged as done. The real-time service drops the user from memory when it
   sees the log entry.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys import columns as C
from recsys import sql
from recsys.config import FeatureConfig, Paths, TrackingConfig
from recsys.data import forget_log
from recsys.data.features import build_derived, open_store
from recsys.data.forget_log import TAG
from recsys.data.landing import LandingZone, Writer
from recsys.faults import crash_point
from recsys.files import file_lock
from recsys.registry.registry import Registry
from recsys.scoring.batch import export_recommendations
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)


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


def forget_user(user_id: str, paths: Paths | None = None,
                tracking_cfg: TrackingConfig | None = None,
                feature_cfg: FeatureConfig | None = None) -> ForgetReport:
    """Remove ``user_id`` from the landing zone, the store and the served lists; flag models."""
    if not user_id:
        raise ValueError("user_id must not be empty")
    paths = paths or Paths()
    report = ForgetReport(uuid.uuid4().hex[:12], forget_log.user_hash(user_id))
    started = utc_now()
    forget_log.append(paths, {"request_id": report.request_id,
                              "user_sha256": report.user_sha256,
                              "status": "started", "started_at": started.isoformat()})
    _forget_landed(paths, user_id, report)
    crash_point("forget.after_landing")
    _forget_stored(paths, user_id, feature_cfg or FeatureConfig())
    crash_point("forget.after_store")
    _forget_recommendations(paths, user_id, report)
    if report.first_seq is not None:
        _tag_trained_versions(Registry(paths, tracking_cfg or TrackingConfig()), report)
    forget_log.append(paths, {**asdict(report), "status": "done",
                              "started_at": started.isoformat(),
                              "finished_at": utc_now().isoformat()})
    log.info(report.summary())
    return report


def _forget_landed(paths: Paths, user_id: str, report: ForgetReport) -> None:
    """Rewrite every landing and quarantine part that holds the user, under the landing lock."""
    zone = LandingZone(paths)
    with zone.writer() as writer:
        parts = zone.event_parts()
        if parts:
            _rewrite_event_parts(writer, parts, user_id, report)
        for path in zone.quarantine_parts():
            with sql.connect() as con:
                kept = sql.query(con, "forget_user_quarantine", path=str(path),
                                 user_id=user_id).to_arrow_table().cast(C.QUARANTINE_SCHEMA)
            removed = pq.read_metadata(path).num_rows - kept.num_rows
            if removed:
                writer.replace_part(path, kept)
                report.quarantine_rows_removed += removed


def _rewrite_event_parts(writer: Writer, parts: list[Path], user_id: str,
                         report: ForgetReport) -> None:
    with sql.connect() as con:
        hits = sql.query(con, "forget_user_parts", parts=[str(p) for p in parts],
                         user_id=user_id).fetchall()
    for path, n, first_seq in hits:
        table = pq.read_table(path, schema=C.LANDING_EVENT_SCHEMA)
        writer.replace_part(Path(path), table.filter(pc.not_equal(table[C.USER_ID], user_id)))
        report.events_removed += n
        report.parts_rewritten += 1
        crash_point("forget.after_first_part")
        report.first_seq = first_seq if report.first_seq is None else min(
            report.first_seq, first_seq)


def _forget_stored(paths: Paths, user_id: str, feature_cfg: FeatureConfig) -> None:
    """Delete the user's events and id from the feature store and rebuild the derived tables."""
    if not paths.features_db.exists():
        return
    with open_store(paths) as con:
        sql.run(con, "forget_user_events", user_id=user_id)
        sql.run(con, "forget_user_id_map", user_id=user_id)
        build_derived(con, feature_cfg)
        con.execute("CHECKPOINT")


def _forget_recommendations(paths: Paths, user_id: str, report: ForgetReport) -> None:
    """Delete the user's served list and rewrite the export, under the recommendations lock."""
    if not paths.recommendations_db.exists():
        return
    with file_lock(paths.recommendations_db.with_suffix(".lock"), timeout=600), \
            sql.connect(paths.recommendations_db) as con:
        report.recommendation_rows_removed = len(sql.run(
            con, "forget_user_recommendations", user_id=user_id).fetchall())
        con.execute("CHECKPOINT")
        export_recommendations(con, paths.recommendations_export)


def _tag_trained_versions(registry: Registry, report: ForgetReport) -> None:
    """Tag every version whose watermark reaches the user's first event."""
    champion = registry.champion()
    for v in registry.versions():
        if v.watermark >= report.first_seq:
            requests = [r for r in v.tags.get(TAG, "").split(",") if r]
            registry.tag(v.version, {TAG: ",".join([*requests, report.request_id])})
            report.affected_versions.append(v.version)
    report.champion_affected = champion is not None and \
        champion.version in report.affected_versions
