"""The one online-report entry behind ``recsys online-report`` and the ``online-report`` flow.

Computes the online metrics of the period (``evaluation/online.py``), writes the summary, the
figure and the tables to a folder, and logs them on the run of each model version that served in
the period's latest hour, so a version's MLflow run shows how it did once it served.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from recsys import columns as C
from recsys.config import AttributionConfig, Paths, TrackingConfig
from recsys.data.impression_compaction import CompactionReport, compact_impressions
from recsys.evaluation.online import OnlineReport, online_report
from recsys.evaluation.online_report import figure, markdown
from recsys.registry.online import log_online, version_runs

LOGGED_VERSIONS = 5  # most runs one refresh logs to: those of the latest hour, most shown first
METRICS = ("impressions", "users", "requests", "ctr_at_k", "cart_rate", "purchase_rate",
           "coverage", "novelty")
FILES = {"markdown": "online_report.md", "figure": "online_report.png",
         "hourly": "online_hourly.csv", "positions": "online_positions.csv"}


@dataclass
class OnlineReportRun:
    """A refreshed online report: its tables, where its files are, which runs received it."""

    report: OnlineReport
    folder: Path
    markdown: str
    logged: dict[str, str] = field(default_factory=dict)  # version -> MLflow run id
    not_logged: dict[str, str] = field(default_factory=dict)  # version -> why
    compaction: CompactionReport = field(default_factory=CompactionReport)

    def file(self, kind: str) -> Path:
        """Path of one of :data:`FILES` (``markdown``, ``figure``, ``hourly``, ``positions``)."""
        return self.folder / FILES[kind]

    def summary(self) -> str:
        """One line for logs: impressions, CTR@k of all versions, files, runs logged to."""
        cfg, until = self.report.cfg, f"{self.report.now:%Y-%m-%d %H:%M} UTC"
        if self.report.empty:
            return f"online report: no impressions in the {cfg.hours:g} h to {until}"
        every = self.report.overall
        runs = ", ".join(f"v{v}" for v in self.logged) or "none"
        return (f"online report: {int(every.impressions):,} impressions, CTR@{cfg.k} "
                f"{every.ctr_at_k:.2%} in the {cfg.hours:g} h to {until} from "
                f"{len(self.report.versions)} versions; files in {self.folder}; logged to the "
                f"runs of {runs}")


def default_folder(paths: Paths) -> Path:
    """``<home>/reports/online``: each refresh replaces the files of the last."""
    return paths.root / "reports" / "online"


def recent_versions(report: OnlineReport, limit: int = LOGGED_VERSIONS) -> list[str]:
    """Versions that served in the latest hour with impressions, most impressions first."""
    hourly = report.hourly[report.hourly[C.MODEL_VERSION].notna()]
    if hourly.empty:
        return []
    latest = hourly[hourly["hour"] == hourly["hour"].max()]
    ranked = latest.sort_values(["impressions", C.MODEL_VERSION], ascending=[False, True])
    return ranked[C.MODEL_VERSION].tolist()[:limit]


def _replace(path: Path, write) -> None:
    """Write through a temp name and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def write_files(report: OnlineReport, text: str, folder: Path) -> None:
    """The summary, the figure and the two tables (every version) into ``folder``."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    _replace(folder / FILES["markdown"], lambda p: p.write_text(text))
    fig = figure(report)
    try:
        _replace(folder / FILES["figure"], lambda p: fig.savefig(p, format="png", dpi=100))
    finally:
        plt.close(fig)
    hourly = report.hourly.sort_values(["hour", C.MODEL_VERSION], na_position="first")
    for kind, table in (("hourly", hourly), ("positions", report.positions)):
        table = table.assign(**{C.MODEL_VERSION: table[C.MODEL_VERSION].fillna("all")})
        _replace(folder / FILES[kind], lambda p, t=table: t.to_csv(p, index=False))


def run_online_report(paths: Paths | None = None, cfg: AttributionConfig | None = None,
                      tracking: TrackingConfig | None = None, now: dt.datetime | None = None,
                      folder: Path | None = None, log_runs: bool = True,
                      compact: bool = True) -> OnlineReportRun:
    """Refresh the online report and log it to the serving versions' runs.

    Parameters
    ----------
    paths, cfg, tracking
        The project, the attribution window / CTR cut-off / hours covered, the MLflow store.
    now
        End of the period (naive UTC; default: the current time).
    folder
        Where the files go (default: :func:`default_folder`).
    log_runs
        Log metrics and files to the runs of :func:`recent_versions` (``online/``).
    compact
        First merge the impressions zone's parts of closed hours into hourly files
        (``data/impression_compaction.py``): the report's cost follows files as much as rows.
    """
    paths = paths or Paths()
    compaction = compact_impressions(paths) if compact else CompactionReport()
    report = online_report(paths, cfg or AttributionConfig(), now)
    text = markdown(report)
    run = OnlineReportRun(report, folder or default_folder(paths), text, compaction=compaction)
    write_files(report, text, run.folder)
    if not log_runs or report.empty:
        return run
    tracking = tracking or TrackingConfig()
    run.logged, run.not_logged = version_runs(paths, tracking, recent_versions(report))
    totals = {r[C.MODEL_VERSION]: r for _, r in report.totals.iterrows()}
    names = {m: f"ctr@{report.cfg.k}" if m == "ctr_at_k" else m for m in METRICS}
    files = [run.file(kind) for kind in FILES]
    for version, run_id in run.logged.items():
        figures = {names[m]: totals[version][m] for m in METRICS}
        log_online(paths, tracking, run_id, figures, report.now, files)
    return run

