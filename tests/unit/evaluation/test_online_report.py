"""The online report's markdown and figure: narrow tables that render, newest versions first."""

from __future__ import annotations

import matplotlib.pyplot as plt

from recsys.config import AttributionConfig, Paths
from recsys.evaluation.online import online_report
from recsys.evaluation.online_report import SHOWN_VERSIONS, figure, markdown, newest_first
from tests.unit.evaluation.test_online import (
    IMPRESSIONS,
    NOW,
    REACTIONS,
    VIEWS,
    at,
    shown,
    write_catalogue,
    write_events,
    write_impressions,
)


def tables(text: str) -> list[list[str]]:
    blocks, current, previous = [], [], ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not current:
                assert previous == "", f"no blank line before the table at {line!r}"
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
        previous = line
    return blocks + ([current] if current else [])


def test_newest_versions_first_by_number():
    assert newest_first(["9", "10", "unknown", "2"]) == ["10", "9", "2", "unknown"]


def test_the_summary_has_narrow_tables_each_after_a_blank_line(paths):
    write_catalogue(paths, ["x", "y", "z", "w", "v"])
    write_impressions(paths, IMPRESSIONS + [row for v in range(3, 7) for row in shown(
        f"c{v}", "u9", ["v"], at(12, v), version=str(v))], n=1)
    write_events(paths, REACTIONS + VIEWS)
    report = online_report(paths, AttributionConfig(k=2), now=NOW)
    text = markdown(report)
    found = tables(text)
    assert len(found) == 3 and all(max(r.count("|") - 1 for r in t) <= 5 for t in found)
    metrics, credits, hours = found
    assert metrics[0] == "| metric | all | v6 | v5 | v4 |"  # SHOWN_VERSIONS newest
    assert SHOWN_VERSIONS == 3 and "3 older versions: see online_hourly.csv." in text
    assert "| CTR@2 | 10.00% | 0.00% | 0.00% | 0.00% |" in metrics  # 1 of 10 at positions 1-2
    assert credits[2] == "| click | 2 | 1 | 0 |"
    assert hours[2].startswith("| 03-01 12:00 | 4 |")  # the latest hour first
    assert "within 30 min" in text and "5 items (the landed catalogue)" in text


def test_an_empty_period_says_so(paths):
    report = online_report(paths, now=NOW)
    assert markdown(report).endswith("No impressions in the period.\n")
    fig = figure(report)
    assert "no impressions" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_the_figure_draws_all_versions_and_each_version(paths: Paths):
    write_impressions(paths, IMPRESSIONS)
    write_events(paths, REACTIONS)
    fig = figure(online_report(paths, AttributionConfig(k=2), now=NOW))
    hourly, curve = fig.axes
    assert [line.get_label() for line in hourly.lines] == ["all versions", "v2", "v1"]
    assert list(curve.lines[0].get_ydata()) == [1 / 3, 0, 2 / 3]  # the position curve, all
    plt.close(fig)
