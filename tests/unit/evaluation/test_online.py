"""Online metrics on tiny hand-made traffic, each figure computed by hand beside it."""

from __future__ import annotations

import datetime as dt
import math
import os

import pyarrow as pa
import pytest

from recsys import columns as C
from recsys.config import AttributionConfig, Paths
from recsys.data.landing import part_name
from recsys.evaluation.online import event_parts, impression_parts, online_report
from recsys.files import atomic_write_parquet

NOW = dt.datetime(2026, 3, 2)  # the period is the 24 h before: all of 1 March
DAY = dt.datetime(2026, 3, 1)

OLD_EVENT_SCHEMA = pa.schema([f for f in C.LANDING_EVENT_SCHEMA if f.name != C.REQUEST_ID])
EVENT_SCHEMA = OLD_EVENT_SCHEMA.append(pa.field(C.REQUEST_ID, pa.string()))


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return DAY.replace(hour=hour, minute=minute, second=second)


def shown(request_id: str, user_id: str | None, items: list[str], ts: dt.datetime,
          version: str = "1") -> list[dict]:
    """One answer: its items at positions 1, 2, ..."""
    return [{C.REQUEST_ID: request_id, C.USER_ID: user_id, C.ITEM_ID: item, C.POSITION: pos,
             C.SCORE: 1.0 / pos, C.MODEL_VERSION: version, C.VARIANT: None,
             C.SURFACE: "user" if user_id else "session", C.TS: ts}
            for pos, item in enumerate(items, start=1)]


def event(event_id: str, user_id: str, item_id: str, kind: str, ts: dt.datetime,
          request_id: str | None = None) -> dict:
    return {C.EVENT_ID: event_id, C.USER_ID: user_id, C.ITEM_ID: item_id, C.EVENT_TYPE: kind,
            C.TS: ts, C.VALUE: None, C.INGEST_SEQ: 0, C.INGESTED_AT: NOW, C.SOURCE: "test",
            C.REQUEST_ID: request_id}


def write_impressions(paths: Paths, rows: list[dict], n: int = 1) -> None:
    """A part of the impressions zone, named (as the service names them) when it is written."""
    written = max(r[C.TS] for r in rows)
    name = f"part-{written:%Y%m%d%H%M%S}-0badc0de-{n:06d}.parquet"
    atomic_write_parquet(pa.Table.from_pylist(rows, schema=C.IMPRESSION_SCHEMA),
                         paths.impressions / name)


def write_events(paths: Paths, rows: list[dict], seq: int = 2, old: bool = False) -> None:
    """A landing part; ``old``: written before events could carry a request_id."""
    schema = OLD_EVENT_SCHEMA if old else EVENT_SCHEMA
    rows = [{**r, C.INGEST_SEQ: seq} for r in rows]
    if old:
        assert all(r[C.REQUEST_ID] is None for r in rows)
        rows = [{k: v for k, v in r.items() if k != C.REQUEST_ID} for r in rows]
    atomic_write_parquet(pa.Table.from_pylist(rows, schema=schema),
                         paths.landing_events / part_name(seq))


def write_catalogue(paths: Paths, items: list[str], seq: int = 1) -> None:
    rows = [{C.ITEM_ID: i, C.TITLE: i, C.CATEGORY: None, C.DESCRIPTION: None,
             C.CREATED_AT: None, C.INGEST_SEQ: seq, C.INGESTED_AT: DAY, C.SOURCE: "test"}
            for i in items]
    atomic_write_parquet(pa.Table.from_pylist(rows, schema=C.LANDING_ITEM_SCHEMA),
                         paths.landing_items / part_name(seq))


# -- the traffic of the metric tests ------------------------------------------------------------
# version 1: a1 to u1 [x y z] at 10:00, a2 to u2 [y x w] at 10:30; version 2: b1 to u1 [w x y]
# at 11:10. Credited: a1#1 (click by request id, cart by window), a2#3 (click and purchase by
# window), b1#3 (click by request id). Catalogue: x y z w v.
IMPRESSIONS = (shown("a1", "u1", ["x", "y", "z"], at(10)) + shown("a2", "u2", ["y", "x", "w"],
               at(10, 30)) + shown("b1", "u1", ["w", "x", "y"], at(11, 10), version="2"))
REACTIONS = [
    event("e1", "u1", "x", "click", at(10, 1), "a1"),
    event("e2", "u1", "x", "cart", at(10, 2)),
    event("e3", "u2", "w", "click", at(10, 31)),
    event("e4", "u2", "w", "purchase", at(10, 35)),
    event("e5", "u1", "y", "click", at(11, 15), "b1"),
]
VIEWS = [event("v1", "u3", "v", "view", at(9)), event("v2", "u3", "x", "view", at(9, 1))]
# events of any type in the period, per item: x 3 (e1 e2 v2), w 2, y 1, v 1, z 0: 7 in all
COUNTS = {"x": 3, "w": 2, "y": 1, "v": 1, "z": 0}


def bits(item: str) -> float:
    """-log2 p(item), p = (events of the item + 1) / (7 events + 5 known items)."""
    return -math.log2((COUNTS[item] + 1) / (7 + 5))


@pytest.fixture
def traffic(paths: Paths) -> Paths:
    write_catalogue(paths, ["x", "y", "z", "w", "v"])
    write_impressions(paths, IMPRESSIONS)
    write_events(paths, REACTIONS + VIEWS)
    return paths


def _row(table, version, hour=None):
    found = table[(table.model_version.isna() if version is None
                   else table.model_version == version)
                  & (table.hour.isna() if hour is None else table.hour == hour)]
    assert len(found) == 1, (version, hour)
    return found.iloc[0]


def test_metrics_per_version_and_hour_equal_a_hand_computation(traffic):
    report = online_report(traffic, AttributionConfig(k=2), now=NOW)
    v1 = _row(report.hourly, "1", at(10))
    assert (v1.impressions, v1.users, v1.requests, v1.impressions_at_k) == (6, 2, 2, 4)
    # at positions 1-2, only a1#1 has a click (a2's click is at position 3)
    assert (v1.clicked_at_k, v1.clicked, v1.carted, v1.purchased) == (1, 2, 1, 1)
    assert v1.ctr_at_k == pytest.approx(1 / 4)
    assert v1.cart_rate == pytest.approx(1 / 6) and v1.purchase_rate == pytest.approx(1 / 6)
    assert v1["items"] == 4 and v1.coverage == pytest.approx(4 / 5)  # x y z w of 5
    assert v1.novelty == pytest.approx(
        (2 * bits("x") + 2 * bits("y") + bits("z") + bits("w")) / 6)
    v2 = _row(report.hourly, "2", at(11))
    assert (v2.impressions, v2.users, v2.requests, v2.impressions_at_k) == (3, 1, 1, 2)
    assert (v2.clicked_at_k, v2.clicked, v2.ctr_at_k, v2.cart_rate) == (0, 1, 0.0, 0.0)
    assert v2.coverage == pytest.approx(3 / 5)
    assert v2.novelty == pytest.approx((bits("w") + bits("x") + bits("y")) / 3)
    assert len(report.hourly) == 2 + 2  # two (version, hour) rows, two hours of all versions


def test_totals_over_versions_count_users_and_items_once(traffic):
    report = online_report(traffic, AttributionConfig(k=2), now=NOW)
    assert report.versions == ["1", "2"]
    every = _row(report.totals, None)
    assert (every.impressions, every.users, every.requests, every.impressions_at_k) == (9, 2, 3, 6)
    assert every.ctr_at_k == pytest.approx(1 / 6)
    assert every["items"] == 4 and every.coverage == pytest.approx(4 / 5)
    assert every.novelty == pytest.approx(
        (3 * bits("x") + 3 * bits("y") + bits("z") + 2 * bits("w")) / 9)
    hour_11 = _row(report.hourly, None, at(11))
    assert (hour_11.impressions, hour_11.users) == (3, 1)
    assert _row(report.totals, "1").ctr_at_k == pytest.approx(1 / 4)
    assert (report.catalogue_items, report.catalogue_source) == (5, "catalogue")
    counts = report.matched.set_index("event_type")
    assert counts.loc["click"].tolist() == [2, 1, 0]  # exact, window, none
    assert counts.loc["cart"].tolist() == [0, 1, 0]
    assert counts.loc["purchase"].tolist() == [0, 1, 0]


def test_the_position_curve(traffic):
    curve = online_report(traffic, AttributionConfig(k=2), now=NOW).positions
    every = curve[curve.model_version.isna()].set_index("position")
    assert every.impressions.tolist() == [3, 3, 3]
    assert every.clicked.tolist() == [1, 0, 2]  # a1#1; a2#3 and b1#3
    assert every.ctr.tolist() == pytest.approx([1 / 3, 0, 2 / 3])
    v2 = curve[curve.model_version == "2"].set_index("position")
    assert v2.clicked.tolist() == [0, 0, 1]


def test_old_landing_parts_without_request_id_read_alike(paths):
    """Events that landed before the column existed are credited by the window rule."""
    write_catalogue(paths, ["x", "y", "z", "w", "v"])
    write_impressions(paths, IMPRESSIONS)
    write_events(paths, [r for r in REACTIONS if r[C.REQUEST_ID] is None] + VIEWS, seq=2,
                 old=True)
    write_events(paths, [r for r in REACTIONS if r[C.REQUEST_ID] is not None], seq=3)
    report = online_report(paths, AttributionConfig(k=2), now=NOW)
    assert report.matched.set_index("event_type").loc["click"].tolist() == [2, 1, 0]
    assert _row(report.totals, None).ctr_at_k == pytest.approx(1 / 6)
    only_old = Paths(root=paths.root / "old", tracking_home=paths.tracking_home)
    write_impressions(only_old, IMPRESSIONS)
    write_events(only_old, [{**r, C.REQUEST_ID: None} for r in REACTIONS], old=True)
    report = online_report(only_old, AttributionConfig(k=2), now=NOW)
    # without request ids e5 falls back to the window: b1 (11:10) is the latest y to u1
    assert report.matched.set_index("event_type").loc["click"].tolist() == [0, 3, 0]
    assert _row(report.totals, None).ctr_at_k == pytest.approx(1 / 6)


def test_without_a_catalogue_coverage_counts_the_items_of_the_events(paths):
    write_impressions(paths, IMPRESSIONS)
    write_events(paths, REACTIONS + VIEWS)
    report = online_report(paths, AttributionConfig(k=2), now=NOW)
    assert (report.catalogue_items, report.catalogue_source) == (4, "events")  # x w y v
    every = _row(report.totals, None)
    # z was served but is in no event: counted as served, and as the rarest item; 4 known items
    assert every["items"] == 4 and every.coverage == pytest.approx(4 / 4)
    assert every.novelty == pytest.approx(sum(
        -math.log2((COUNTS[i] + 1) / (7 + 4)) * n
        for i, n in {"x": 3, "y": 3, "z": 1, "w": 2}.items()) / 9)


def test_only_the_period_counts_and_an_empty_one_reports_nothing(traffic):
    later = online_report(traffic, AttributionConfig(hours=1), now=NOW + dt.timedelta(hours=1))
    assert later.empty and later.hourly.empty and later.positions.empty
    assert later.versions == []
    one_hour = online_report(traffic, AttributionConfig(k=2, hours=1), now=at(11, 45))
    assert one_hour.versions == ["2"] and _row(one_hour.totals, None).impressions == 3
    nothing = online_report(Paths(root=traffic.root / "none"), now=NOW)
    assert nothing.empty and nothing.matched.empty


def test_parts_named_well_before_the_period_are_not_read(paths):
    write_impressions(paths, shown("old", "u1", ["x"], at(1)), n=1)
    write_impressions(paths, shown("new", "u1", ["x"], at(10)), n=2)
    (paths.impressions / ".tmp-half-written-part-x.parquet").write_bytes(b"")
    assert [p.name[-14:] for p in impression_parts(paths, since=at(1, 30))] == \
        ["000001.parquet", "000002.parquet"]  # within the hour of slack
    assert [p.name[-14:] for p in impression_parts(paths, since=at(3))] == ["000002.parquet"]


def test_landing_parts_written_long_before_the_period_are_not_read(traffic):
    """Ingestion refuses events more than a day ahead of it: a part written two days before the
    period cannot hold one of its events."""
    write_events(traffic, [event("x1", "u1", "x", "click", at(10, 3))], seq=3)
    two_days = (DAY - dt.timedelta(days=2)).replace(tzinfo=dt.UTC).timestamp()
    os.utime(traffic.landing_events / part_name(3), (two_days, two_days))
    assert [p.name for p in event_parts(traffic, since=DAY)] == [part_name(2)]
    assert len(event_parts(traffic)) == 2
    report = online_report(traffic, AttributionConfig(k=2), now=NOW)
    assert report.matched.set_index("event_type").loc["click"].tolist() == [2, 1, 0]  # not 2, 2
