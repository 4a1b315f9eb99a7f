"""The model registry as the pipeline uses it: aliases, lineage tags, promotion, retention.

Aliases, never stages: ``champion`` is in service, ``previous-champion`` is the one-step
rollback, ``challenger`` is the latest candidate. The champion's ``watermark`` tag is the
pipeline's watermark: a micro-batch trains on the events after it, and the watermark moves
only when a version that has seen those events becomes champion. Alias moves are serialised by
a lock (one host) and checked against the champion the candidate was derived from, so a full
retrain and a micro-batch that finish together cannot both win.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException

from recsys.config import Paths, RetentionConfig, TrackingConfig
from recsys.faults import crash_point
from recsys.files import file_lock
from recsys.registry import tracking
from recsys.timeutil import parse_ts, seconds_since, utc_now

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous-champion"
CHALLENGER = "challenger"  # a full retrain waiting for its experiment
CANDIDATE = "candidate"  # the newest micro-batch update, promoted or not
ALIASES = (CHAMPION, PREVIOUS, CHALLENGER, CANDIDATE)


@dataclass(frozen=True)
class Version:
    """A registered version with the tags the pipeline relies on."""

    version: str
    tags: Mapping[str, str]
    model_id: str | None
    run_id: str | None
    aliases: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.tags.get("kind", "full")

    @property
    def watermark(self) -> int:
        return int(self.tags.get("watermark", "0"))

    @property
    def parent(self) -> str | None:
        return self.tags.get("parent_version") or None

    @property
    def newest_event_ts(self) -> dt.datetime | None:
        return parse_ts(self.tags.get("newest_event_ts"))

    def age_seconds(self, now: dt.datetime | None = None) -> float | None:
        """Time since the newest event this model has learned from."""
        return seconds_since(self.newest_event_ts, now)


class Registry:
    """One registered model: the pipeline's view of MLflow's model registry."""

    def __init__(self, paths: Paths, cfg: TrackingConfig):
        self.paths, self.cfg = paths, cfg
        self.name = cfg.registered_model
        self.client, self.uri = tracking.client(paths, cfg)

    # -- reading -------------------------------------------------------------------------
    def _wrap(self, mv, aliases: tuple[str, ...] | None = None) -> Version:
        model_id = getattr(mv, "model_id", None)
        if not model_id and (mv.source or "").startswith("models:/m-"):
            model_id = mv.source.removeprefix("models:/").split("/")[0]
        if aliases is None:
            aliases = tuple(getattr(mv, "aliases", ()) or ())
        return Version(str(mv.version), dict(mv.tags or {}), model_id, mv.run_id, aliases)

    def aliases(self) -> dict[str, str]:
        """Alias -> version (searches do not fill in aliases, so ask the model itself)."""
        try:
            return dict(self.client.get_registered_model(self.name).aliases or {})
        except MlflowException:
            return {}

    def get(self, version: str | int) -> Version:
        try:
            return self._wrap(self.client.get_model_version(self.name, str(version)))
        except MlflowException as exc:
            raise LookupError(f"{self.name} has no version {version}") from exc

    def alias(self, alias: str) -> Version | None:
        try:
            return self._wrap(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def champion(self) -> Version | None:
        return self.alias(CHAMPION)

    def waiting_challenger(self) -> Version | None:
        """The newest version that waits as challenger and has met no experiment yet.

        The ``challenger`` alias alone is not it: it stays on a retrain after an experiment
        has judged it (and stores written before micro-batch updates took ``candidate`` have it
        on a micro-batch version). A full retrain that did not replace the champion is tagged
        ``decision=challenger``; an experiment that judges it tags it ``experiment``, and a
        promotion rewrites ``decision``.
        """
        # Asked of the store by tag: the every-minute decision flow calls this when idle, and
        # the registry holds a version per promoted micro-batch.
        try:
            found = self.client.search_model_versions(
                f"name = '{self.name}' and tags.decision = '{CHALLENGER}'")
        except MlflowException:
            return None
        waiting = [self._wrap(mv) for mv in found if "experiment" not in (mv.tags or {})]
        return max(waiting, key=lambda v: int(v.version), default=None)

    def versions(self) -> list[Version]:
        """Every registered version, newest first."""
        try:
            found = self.client.search_model_versions(f"name = '{self.name}'")
        except MlflowException:
            return []
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases().items():
            by_version.setdefault(str(version), []).append(alias)
        wrapped = (self._wrap(mv, tuple(by_version.get(str(mv.version), ()))) for mv in found)
        return sorted(wrapped, key=lambda v: -int(v.version))

    @contextlib.contextmanager
    def model_folder(self, version: str) -> Iterator[Path]:
        """The folder of a version's weights: read in place from a local store, else fetched."""
        v = self.get(version)
        if v.model_id:
            location = self.client.get_logged_model(v.model_id).artifact_location
            parsed = urlparse(location)
            if parsed.scheme in ("", "file"):
                folder = Path(unquote(parsed.path)) / "artifacts" / "model"
                if folder.is_dir():
                    yield folder
                    return
        tmp = Path(tempfile.mkdtemp(prefix="recsys-model-"))
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.name}/{version}",
                                                dst_path=str(tmp), tracking_uri=self.uri)
            yield tmp / "artifacts" / "model"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- writing -------------------------------------------------------------------------
    def tag(self, version: str, tags: Mapping[str, object]) -> None:
        """Set version tags; times are written as ISO timestamps to the second."""
        for key, value in tags.items():
            text = value.isoformat(timespec="seconds") if isinstance(value, dt.datetime) \
                else str(value)
            self.client.set_model_version_tag(self.name, version, tracking.safe_key(key), text)

    def set_challenger(self, version: str) -> None:
        """Name a full retrain that waits for an online experiment against the champion."""
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)

    def set_candidate(self, version: str) -> None:
        """Name the newest micro-batch update, so the registry UI shows the latest attempt.

        Not ``challenger``: that alias would then move every minute, away from the full
        retrain an operator is about to put in front of users.
        """
        self.client.set_registered_model_alias(self.name, CANDIDATE, version)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with file_lock(self.paths.root / "registry.lock", timeout=120):
            yield

    def promote(self, version: str, reason: str, expected_champion: str | None = "any",
                action: str = "promoted") -> bool:
        """Make ``version`` the champion; the old one becomes ``previous-champion``.

        ``expected_champion``: the champion the candidate was derived from (None: there was
        none). If the champion has moved since, nothing changes and False is returned: the
        candidate's watermark would otherwise skip or repeat events.
        """
        with self._locked():
            current = self.champion()
            current_version = current.version if current else None
            if expected_champion != "any" and current_version != expected_champion:
                self.tag(version, {"decision": "stale", "decision_reason": (
                    f"champion moved from {expected_champion} to {current_version} while "
                    f"this candidate was trained"), "decided_at": utc_now()})
                log.warning("version %s not promoted: the champion moved to %s", version,
                            current_version)
                return False
            if current_version == version:
                return True
            if current_version is not None:
                self.client.set_registered_model_alias(self.name, PREVIOUS, current_version)
                crash_point("registry.between_aliases")
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
            self.tag(version, {"decision": action, "decision_reason": reason,
                               "decided_at": utc_now(),
                               "promoted_over": current_version or ""})
        log.info("%s version %s %s (was %s): %s", self.name, version, action, current_version,
                 reason)
        return True

    def reject(self, version: str, reason: str) -> None:
        self.tag(version, {"decision": "rejected", "decision_reason": reason,
                           "decided_at": utc_now()})
        log.info("%s version %s rejected: %s", self.name, version, reason)

    def rollback(self, reason: str = "operator rollback") -> tuple[str, str]:
        """Champion <- previous-champion. Returns ``(from_version, to_version)``.

        The rolled-back version keeps its registry entry (tagged) but its events are no longer
        in the champion's lineage: the next micro-batch retrains them from the older watermark.
        """
        with self._locked():
            current, previous = self.champion(), self.alias(PREVIOUS)
            if previous is None:
                raise LookupError(f"{self.name} has no {PREVIOUS} to roll back to")
            self.client.set_registered_model_alias(self.name, CHAMPION, previous.version)
            before = previous.tags.get("promoted_over")
            rolled_back = current.version if current else None
            if before and before not in (previous.version, rolled_back) and self._exists(before):
                self.client.set_registered_model_alias(self.name, PREVIOUS, before)
            else:
                self.client.delete_registered_model_alias(self.name, PREVIOUS)
            stamp = utc_now()
            if current is not None:
                self.tag(current.version, {"decision": "rolled_back",
                                           "decision_reason": reason, "decided_at": stamp})
            self.tag(previous.version, {"restored_at": stamp, "restored_reason": reason})
        frm = current.version if current else ""
        log.info("%s rolled back from version %s to %s: %s", self.name, frm, previous.version,
                 reason)
        return frm, previous.version

    def _exists(self, version: str) -> bool:
        try:
            self.client.get_model_version(self.name, version)
            return True
        except MlflowException:
            return False

    # -- retention -----------------------------------------------------------------------
    def prune(self, cfg: RetentionConfig) -> list[str]:
        """Delete versions the policy does not keep, with their model artifacts.

        Kept: aliased versions, the newest ``keep_incremental`` incremental versions and the
        newest ``keep_full`` full retrains. Runs stay (metrics and lineage tags are small).
        """
        versions = self.versions()
        keep = {v.version for v in versions if v.aliases}
        incremental = [v for v in versions if v.kind == "incremental"]
        full = [v for v in versions if v.kind != "incremental"]
        keep |= {v.version for v in incremental[:cfg.keep_incremental]}
        keep |= {v.version for v in full[:cfg.keep_full]}
        deleted = []
        for v in versions:
            if v.version in keep:
                continue
            self._delete(v)
            deleted.append(v.version)
        if deleted:
            log.info("retention: deleted %d versions of %s (%s)", len(deleted), self.name,
                     ", ".join(deleted[:10]) + (" ..." if len(deleted) > 10 else ""))
        return deleted

    def _delete(self, v: Version) -> None:
        if v.model_id:
            with contextlib.suppress(MlflowException, OSError):
                location = self.client.get_logged_model(v.model_id).artifact_location
                parsed = urlparse(location)
                if parsed.scheme in ("", "file"):
                    folder = Path(unquote(parsed.path))
                    shutil.rmtree(folder.parent if folder.parent.name == v.model_id else folder,
                                  ignore_errors=True)
                else:
                    from mlflow.store.artifact.artifact_repository_registry import (
                        get_artifact_repository,
                    )

                    get_artifact_repository(location).delete_artifacts()
            with contextlib.suppress(MlflowException):
                self.client.delete_logged_model(v.model_id)
        self.client.delete_model_version(self.name, v.version)
