"""A human-readable summary of the data layer, for the CLI and run artifacts."""

from __future__ import annotations

import duckdb

from recsys import sql
from recsys.config import Paths
from recsys.data.features import read_store, summarize
from recsys.data.landing import LandingZone


def quarantine_counts(paths: Paths) -> dict[str, int]:
    parts = LandingZone(paths).quarantine_parts()
    if not parts:
        return {}
    with sql.connect() as con:
        rows = sql.query(con, "quarantine_counts", files=[str(p) for p in parts]).fetchall()
    return dict(rows)


def status_report(paths: Paths) -> str:
    zone = LandingZone(paths)
    lines = [
        f"home: {paths.root}",
        f"landing: {len(zone.event_parts())} event parts, {len(zone.item_parts())} item parts, "
        f"watermark {zone.event_watermark()}",
    ]
    q = quarantine_counts(paths)
    total = sum(q.values())
    lines.append(f"quarantine: {total} rows"
                 + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(q.items())) + ")" if q else ""))
    if paths.features_db.exists():
        try:
            con = read_store(paths)
        except duckdb.IOException as exc:  # a writer holds it right now
            lines.append(f"features: busy ({exc})")
        else:
            with con:
                s = summarize(con)
            lines.append(
                f"features: watermark {s.watermark}, {s.events:,} events, {s.users:,} users, "
                f"{s.items:,} items ({s.items_with_text:,} with text), {s.first_ts} .. {s.last_ts}"
            )
            lines.append(f"splits: leave-last-out {s.loo_valid_users:,} users with valid/test; "
                         f"temporal {s.temporal_test_users:,} test users")
    else:
        lines.append("features: not built yet (run `recsys features`)")
    return "\n".join(lines)
