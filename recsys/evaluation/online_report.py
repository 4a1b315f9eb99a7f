"""The online report for people: a markdown summary and a figure of an :class:`OnlineReport`.

The markdown renders alike in a terminal, a Prefect artifact and an MLflow run: each table has a
blank line before it and at most five columns (versions are columns, newest first, so a day of
minute-by-minute micro-batch versions does not widen it; the CSVs hold every version). The figure
has the style of the other plots (``evaluation/report.py``): CTR@k per hour per version, and the
position-bias curve.
"""

from __future__ import annotations

import math

import pandas as pd

from recsys import columns as C
from recsys.evaluation.online import OnlineReport

SHOWN_VERSIONS = 3  # version columns of the markdown, beside "all"
PLOTTED_VERSIONS = 5  # lines per panel of the figure, beside "all"
RECENT_HOURS = 6  # rows of the hourly table


def newest_first(versions: list[str]) -> list[str]:
    """Registered versions are numbers: 10 is newer than 9; other names go last."""
    return sorted(versions, key=lambda v: (not v.isdigit(), -int(v) if v.isdigit() else 0, v))


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2%}"


def _num(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{int(v):,}"


def _bits(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.2f} bits"


def _by_version(frame: pd.DataFrame) -> dict[str | None, pd.Series]:
    return {r[C.MODEL_VERSION]: r for _, r in frame.iterrows()}


def markdown(report: OnlineReport) -> str:
    """Summary: the period, one table of metrics by version, credits by kind, recent hours."""
    k, cfg = report.cfg.k, report.cfg
    title = f"### Online report: {cfg.hours:g} h to {report.now:%Y-%m-%d %H:%M} UTC"
    if report.empty:
        return f"{title}\n\nNo impressions in the period.\n"
    totals = _by_version(report.totals)
    every = totals[None]
    versions = newest_first(report.versions)
    shown = versions[:SHOWN_VERSIONS]
    source = ("the landed catalogue" if report.catalogue_source == "catalogue"
              else "the items of the landed events")
    blocks = [title, (
        f"{_num(every.impressions)} impressions in {_num(every.requests)} answers to "
        f"{_num(every.users)} users from {len(versions)} model version"
        f"{'s' if len(versions) != 1 else ''}. A click, cart or purchase is credited to the "
        f"impression its request id names, else to the latest impression of the item to the "
        f"user within {cfg.window_minutes:g} min. Coverage is of {report.catalogue_items:,} "
        f"items ({source}); novelty is the mean -log2 share of the shown item in the period's "
        f"events.")]
    rows = [("impressions", "impressions", _num), ("users", "users", _num),
            ("answers", "requests", _num), (f"CTR@{k}", "ctr_at_k", _pct),
            ("cart rate", "cart_rate", _pct), ("purchase rate", "purchase_rate", _pct),
            ("coverage", "coverage", _pct), ("novelty", "novelty", _bits)]
    header = ["metric", "all", *(f"v{v}" if v.isdigit() else v for v in shown)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for label, col, fmt in rows:
        cells = [fmt(totals[v][col]) for v in (None, *shown)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    blocks.append("\n".join(lines))
    if len(versions) > len(shown):
        blocks.append(f"{len(versions) - len(shown)} older versions: see online_hourly.csv.")
    if not report.matched.empty:
        lines = ["| reaction | by request id | by window | not credited |", "|---|---|---|---|"]
        for _, r in report.matched.iterrows():
            lines.append(f"| {r.event_type} | {_num(r['exact'])} | {_num(r['window'])} | "
                         f"{_num(r['none'])} |")
        blocks.append("\n".join(lines))
    hours = report.hourly[report.hourly[C.MODEL_VERSION].isna()].tail(RECENT_HOURS)
    lines = [f"| hour (UTC), all versions | impressions | CTR@{k} | purchase rate |",
             "|---|---|---|---|"]
    for _, r in hours.iloc[::-1].iterrows():
        lines.append(f"| {r.hour:%m-%d %H:00} | {_num(r.impressions)} | {_pct(r.ctr_at_k)} | "
                     f"{_pct(r.purchase_rate)} |")
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def figure(report: OnlineReport):
    """Figure: CTR@k per hour per version (left), CTR by list position (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    k = report.cfg.k
    lines = [None, *newest_first(report.versions)[:PLOTTED_VERSIONS]]
    for version in lines:
        label = "all versions" if version is None else f"v{version}"
        style = {"color": "black", "linewidth": 2} if version is None else {"alpha": 0.8}
        pick = (report.hourly[C.MODEL_VERSION].isna() if version is None
                else report.hourly[C.MODEL_VERSION] == version)
        hourly = report.hourly[pick]
        ax1.plot(hourly["hour"], hourly["ctr_at_k"], marker="o", label=label, **style)
        pick = (report.positions[C.MODEL_VERSION].isna() if version is None
                else report.positions[C.MODEL_VERSION] == version)
        curve = report.positions[pick]
        ax2.plot(curve[C.POSITION], curve["ctr"], marker="o", label=label, **style)
    ax1.set(title=f"CTR@{k} per hour of impression", xlabel="hour (UTC)", ylabel=f"CTR@{k}")
    ax1.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax2.set(title="CTR by list position (position bias)", xlabel="position", ylabel="CTR")
    for ax in (ax1, ax2):
        if report.empty:
            ax.text(0.5, 0.5, "no impressions in the period", ha="center", va="center",
                    transform=ax.transAxes)
        else:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"online report: {report.cfg.hours:g} h to {report.now:%Y-%m-%d %H:%M} UTC")
    fig.tight_layout()
    return fig
