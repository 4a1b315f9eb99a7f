"""sql/attribution.sql on hand-checked tiny traffic: which impression each reaction credits."""

from __future__ import annotations

import datetime as dt

import pytest

from recsys import sql
from recsys.config import AttributionConfig, Paths
from recsys.evaluation.online import attribute, open_sources
from tests.unit.evaluation.test_online import (
    NOW,
    at,
    event,
    shown,
    write_events,
    write_impressions,
)


def credited(paths: Paths, window_minutes: float = 30.0, hours: float = 24.0,
             now: dt.datetime = NOW) -> dict[str, tuple]:
    """event id -> (request id, position, how), or None when not credited."""
    cfg = AttributionConfig(window_minutes=window_minutes, hours=hours)
    with sql.connect() as con:
        open_sources(con, paths)
        rows = attribute(con, cfg, now).df()
    assert rows.event_id.is_unique
    return {r.event_id: (r.request_id, int(r.position), r.matched_by)
            if isinstance(r.matched_by, str) else None
            for r in rows.itertuples()}


@pytest.fixture
def shop(paths: Paths) -> Paths:
    """u1 is shown x twice (a1 at 10:00 in position 2, a2 at 10:05 in position 1); u2 is shown
    y at 11:00 (b1) and 11:20 (b2); an anonymous session is shown z (s1, 12:00)."""
    write_impressions(paths, shown("a1", "u1", ["w", "x"], at(10)), n=1)
    write_impressions(paths, shown("a2", "u1", ["x", "w"], at(10, 5)) +
                      shown("b1", "u2", ["y"], at(11)) + shown("b2", "u2", ["y"], at(11, 20)) +
                      shown("s1", None, ["z", "x"], at(12)), n=2)
    return paths


def test_a_request_id_credits_its_own_answer_even_when_a_later_one_showed_the_item(shop):
    write_events(shop, [event("e1", "u1", "x", "click", at(10, 6), "a1"),
                        event("e2", "u1", "x", "cart", at(10, 7), "a2")])
    assert credited(shop) == {"e1": ("a1", 2, "exact"), "e2": ("a2", 1, "exact")}


def test_exact_credit_ignores_the_window_and_a_client_clock_a_little_behind(shop):
    write_events(shop, [event("late", "u1", "x", "purchase", at(20), "a1"),   # 10 h later
                        event("early", "u1", "x", "click", at(9, 59), "a1")])  # before it
    assert credited(shop) == {"late": ("a1", 2, "exact"), "early": ("a1", 2, "exact")}


def test_without_a_request_id_the_latest_impression_within_the_window(shop):
    write_events(shop, [event("in", "u1", "x", "click", at(10, 20)),       # a2 is the latest
                        event("edge", "u1", "x", "click", at(10, 35)),     # 30 min after a2
                        event("out", "u1", "x", "click", at(10, 35, 1)),   # just past it
                        event("before", "u1", "x", "click", at(9, 59)),    # nothing shown yet
                        event("other", "u1", "y", "click", at(10, 6)),     # y not shown to u1
                        event("seen", "u1", "x", "view", at(10, 6))])      # views are no credit
    assert credited(shop) == {"in": ("a2", 1, "window"), "edge": ("a2", 1, "window"),
                              "out": None, "before": None, "other": None}
    assert credited(shop, window_minutes=40)["out"] == ("a2", 1, "window")


def test_late_and_out_of_order_events_are_judged_by_event_time(shop):
    """Landed in reverse: the 11:25 click first, the 11:10 click in a later part."""
    write_events(shop, [event("second", "u2", "y", "click", at(11, 25))], seq=2)
    write_events(shop, [event("first", "u2", "y", "click", at(11, 10))], seq=3)
    assert credited(shop) == {"first": ("b1", 1, "window"), "second": ("b2", 1, "window")}


def test_a_request_id_that_matches_no_impression_of_the_item_falls_back_to_the_window(shop):
    write_events(shop, [event("garbled", "u1", "x", "click", at(10, 10), "nope"),
                        event("not_listed", "u2", "y", "click", at(11, 30), "a1"),  # no y in a1
                        event("not_theirs", "u2", "x", "click", at(10, 6), "a2")])  # a2 was u1's
    assert credited(shop) == {"garbled": ("a2", 1, "window"), "not_listed": ("b2", 1, "window"),
                              "not_theirs": None}


def test_anonymous_impressions_are_credited_by_request_id_only(shop):
    write_events(shop, [event("tied", "session-9", "z", "click", at(12, 1), "s1"),
                        event("untied", "session-9", "x", "click", at(12, 2)),
                        event("wrong_item", "session-9", "w", "click", at(12, 3), "s1")])
    assert credited(shop) == {"tied": ("s1", 1, "exact"), "untied": None, "wrong_item": None}


def test_same_instant_goes_to_the_greater_request_id_and_one_impression_takes_many(paths):
    write_impressions(paths, shown("r1", "u1", ["x"], at(10)) + shown("r2", "u1", ["x"], at(10)))
    write_events(paths, [event("click", "u1", "x", "click", at(10, 1)),
                         event("cart", "u1", "x", "cart", at(10, 2)),
                         event("buy", "u1", "x", "purchase", at(10, 3))])
    assert set(credited(paths).values()) == {("r2", 1, "window")}


def test_only_impressions_of_the_period_are_credited(shop):
    """Period [12:00 - 1 h, 12:00): a1, a2 (10:0x) are outside; b1 and b2 are inside."""
    write_events(shop, [event("old", "u1", "x", "click", at(11, 1)),
                        event("kept", "u2", "y", "click", at(11, 21)),
                        event("early", "u2", "y", "click", at(10, 40), "b1"),  # within window
                        event("too_early", "u2", "y", "click", at(10, 29), "b1"),
                        event("after", "u2", "y", "click", at(12, 0, 1))])
    assert credited(shop, hours=1, now=at(12)) == {
        "old": None, "kept": ("b2", 1, "window"), "early": ("b1", 1, "exact")}
