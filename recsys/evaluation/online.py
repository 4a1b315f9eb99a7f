"""Online metrics: what was shown (impressions) against what users did next (landed events).

On an in-memory DuckDB over the immutable Parquet parts of the impressions zone and the landing
zone: the period's items and reactions, one pass over the period's impressions
(``sql/online_shown.sql``) that both ``sql/attribution.sql`` (each click, cart and purchase
credited to one impression or none) and the roll-ups (``sql/online_metrics.sql``,
``sql/online_positions.sql``) read. Nothing is written and no DuckDB file is opened, so a report
never waits for (or blocks) the feature store's one writer.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from recsys import columns as C
from recsys import sql
from recsys.config import AttributionConfig, IngestConfig, Paths
from recsys.data.impression_compaction import impression_files
from recsys.data.landing import LandingZone
from recsys.timeutil import LapClock, utc_now

# A part is named when it is written, after its rows were shown, so a part named before the
# period holds none of it (an hourly file: none written after its hour); an hour of slack covers
# a clock stepped back and a part named by the time of its first row.
_PART_SLACK = dt.timedelta(hours=1)


@dataclass(frozen=True)
class OnlineReport:
    """The online metrics of one period, as tables.

    ``hourly``: one row per model version and hour of impression, and per hour for all versions
    together (``model_version`` None); ``totals``: the same over the whole period (``hour`` NaT);
    ``positions``: the position-bias curve per model version and for all; ``matched``: the
    period's reactions per event type by how they were credited (``exact``, ``window``,
    ``none``). ``timings``: seconds per step (items, attribution, impressions, metrics).
    """

    now: dt.datetime
    cfg: AttributionConfig
    catalogue_items: int
    catalogue_source: str
    hourly: pd.DataFrame
    totals: pd.DataFrame
    positions: pd.DataFrame
    matched: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def start(self) -> dt.datetime:
        return self.now - dt.timedelta(hours=self.cfg.hours)

    @property
    def versions(self) -> list[str]:
        """The model versions that served in the period."""
        return [v for v in self.totals[C.MODEL_VERSION].tolist() if v is not None]

    @property
    def empty(self) -> bool:
        return self.totals.empty

    @property
    def overall(self) -> pd.Series | None:
        """The whole period, all versions together (None when nothing was shown)."""
        rows = self.totals[self.totals[C.MODEL_VERSION].isna()]
        return None if rows.empty else rows.iloc[0]


def impression_parts(paths: Paths, since: dt.datetime | None = None) -> list[Path]:
    """The impressions zone's files (hourly files and parts not compacted yet), each row once.

    With ``since``, files written well before it are left out: a part by its name (the time it
    was written), an hourly file by the end of its hour; a name that does not parse is kept.
    """
    files = impression_files(paths)
    if since is None:
        return files
    cut = (since - _PART_SLACK).strftime("%Y%m%d%H%M%S")
    return [p for p in files if (written := _written(p)) is None or written >= cut]


def _written(path: Path) -> str | None:
    """``YYYYmmddHHMMSS`` by which a file of the zone was written, from its name."""
    if m := re.match(r"^part-(\d{14})-", path.name):
        return m.group(1)
    if m := re.match(r"^hour-(\d{10})\.parquet$", path.name):
        hour = dt.datetime.strptime(m.group(1), "%Y%m%d%H") + dt.timedelta(hours=1)
        return hour.strftime("%Y%m%d%H%M%S")
    return None


def event_parts(paths: Paths, since: dt.datetime | None = None) -> list[Path]:
    """Landing parts of events, without those landed too early to hold an event after ``since``.

    Ingestion refuses events more than ``IngestConfig.max_future_seconds`` after it lands them,
    so a part last written before ``since`` minus that cannot hold a later event (a part
    rewritten by ``forget-user`` only gets younger).
    """
    parts = LandingZone(paths).event_parts()
    if since is None:
        return parts
    cut = (since - dt.timedelta(seconds=IngestConfig().max_future_seconds)).replace(
        tzinfo=dt.UTC).timestamp()
    return [p for p in parts if p.stat().st_mtime >= cut]


def open_sources(con: duckdb.DuckDBPyConnection, paths: Paths,
                 since: dt.datetime | None = None,
                 events_since: dt.datetime | None = None) -> str:
    """Views ``impressions``, ``landed`` (events, with ``request_id``) and ``catalogue``.

    ``since``/``events_since``: the earliest impression and event time wanted; parts that cannot
    hold one are not read (:func:`impression_parts`, :func:`event_parts`). Landing parts written
    before events could carry a ``request_id`` lack the column: parts are read by column name
    and a missing column is NULL, so old and new parts read alike. ``catalogue`` (``item_id``) is
    the landed catalogue or, where none has landed, the items of the events read; which one is
    returned (``"catalogue"`` or ``"events"``).
    """
    imps = impression_parts(paths, since)
    if imps:
        # One schema by contract: reading every part's footer up front (union_by_name) would
        # double the cost of a zone of many small parts.
        con.read_parquet([str(p) for p in imps]).create_view("impressions")
    else:
        con.register("impressions", C.IMPRESSION_SCHEMA.empty_table())
    events, items = event_parts(paths, events_since), LandingZone(paths).item_parts()
    if events:
        landed = con.read_parquet([str(p) for p in events], union_by_name=True)
        if C.REQUEST_ID not in landed.columns:
            null = duckdb.ConstantExpression(None).cast(duckdb.sqltype("VARCHAR"))
            landed = landed.select(*map(duckdb.ColumnExpression, landed.columns),
                                   null.alias(C.REQUEST_ID))
        landed.create_view("landed")
    else:
        schema = C.LANDING_EVENT_SCHEMA
        if C.REQUEST_ID not in schema.names:
            schema = schema.append(pa.field(C.REQUEST_ID, pa.string()))
        con.register("landed", schema.empty_table())
    if items:
        con.read_parquet([str(p) for p in items]).select(C.ITEM_ID).create_view("catalogue")
        return "catalogue"
    con.view("landed").select(C.ITEM_ID).create_view("catalogue")
    return "events"


def prepare(con: duckdb.DuckDBPyConnection, cfg: AttributionConfig, now: dt.datetime,
            clock: LapClock | None = None) -> int:
    """The steps before attribution and the metrics, on a connection with :func:`open_sources`.

    Temp tables: the period's items (``online_items``), the reactions attribution judges
    (``online_reactions``) and the one pass over the period's impressions (``online_shown``).
    Returns the catalogue's size.
    """
    clock = clock or LapClock()
    period = {"now": now, "hours": cfg.hours}
    sql.run(con, "online_items", **period)
    catalogue, known, mass = sql.fetch_one(con, "online_catalogue")
    sql.run(con, "online_reactions", **period, window_minutes=cfg.window_minutes)
    clock.lap("items and reactions")
    sql.run(con, "online_shown", **period, k=cfg.k, known_items=known, mass=mass)
    clock.lap("impressions")
    return catalogue


def attribute(con: duckdb.DuckDBPyConnection, cfg: AttributionConfig,
              now: dt.datetime) -> duckdb.DuckDBPyRelation:
    """The period's reactions with the impression each is credited to (``attribution.sql``).

    On a connection with :func:`open_sources`; runs :func:`prepare` first.
    """
    prepare(con, cfg, now)
    return sql.query(con, "attribution", now=now, hours=cfg.hours,
                     window_minutes=cfg.window_minutes)


def _frame(rel: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    """The relation as a DataFrame whose missing model versions (all versions) are None."""
    df = rel.df()
    df[C.MODEL_VERSION] = df[C.MODEL_VERSION].astype(object).where(
        df[C.MODEL_VERSION].notna(), None)
    return df


def online_report(paths: Paths, cfg: AttributionConfig | None = None,
                  now: dt.datetime | None = None) -> OnlineReport:
    """Attribute the period's reactions and compute its online metrics.

    Parameters
    ----------
    paths
        The project whose impressions zone and landing zone are read.
    cfg
        Attribution window, CTR cut-off ``k`` and the hours of impressions covered.
    now
        End of the period (naive UTC; default: the current time).
    """
    cfg = cfg or AttributionConfig()
    now = (now or utc_now()).replace(tzinfo=None)
    start = now - dt.timedelta(hours=cfg.hours)
    clock = LapClock()
    with sql.connect() as con:
        source = open_sources(con, paths, since=start,
                              events_since=start - dt.timedelta(minutes=cfg.window_minutes))
        catalogue = prepare(con, cfg, now, clock)
        sql.query(con, "attribution", now=now, hours=cfg.hours,
                  window_minutes=cfg.window_minutes).to_table("attributed")
        clock.lap("attribution")
        metrics = _frame(sql.query(con, "online_metrics", k=cfg.k, catalogue_items=catalogue))
        positions = _frame(sql.query(con, "online_positions"))
        matched = sql.query(con, "online_matched").df()
        clock.lap("metrics")
    whole = metrics["hour"].isna()
    return OnlineReport(now=now, cfg=cfg, catalogue_items=int(catalogue),
                        catalogue_source=source, hourly=metrics[~whole].reset_index(drop=True),
                        totals=metrics[whole].reset_index(drop=True),
                        positions=positions, matched=matched, timings=clock.timings)
