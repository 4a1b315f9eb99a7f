"""One look at a running experiment: its impressions, the reactions credited to them, a verdict.

The impressions of an experiment carry ``variant = '<experiment id>:<arm or team>'``; the
reactions are credited by the online report's own attribution (``sql/attribution.sql``: by
request id, else the latest impression within the window), so the experiment and the online
report can never disagree on what a click was worth. Per-user totals come from
``sql/experiment_ab_users.sql`` or ``sql/experiment_interleave_users.sql`` and go to
``experiment_decision.judge``. Reads Parquet parts only (an in-memory DuckDB), so a look never
waits for a writer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from recsys import sql
from recsys.config import AttributionConfig, ExperimentMode, Paths
from recsys.data.experiments import Experiment
from recsys.evaluation.experiment_decision import ArmTotals, InterleaveTotals, Verdict, judge
from recsys.evaluation.online import attribute, open_sources
from recsys.timeutil import utc_now


@dataclass(frozen=True)
class Look:
    experiment: Experiment
    verdict: Verdict
    minutes: float
    impressions: int


def look(paths: Paths, exp: Experiment, attribution: AttributionConfig | None = None,
         now: dt.datetime | None = None) -> Look:
    """The evidence so far and what the rules make of it."""
    attribution = attribution or AttributionConfig()
    now = (now or utc_now()).replace(tzinfo=None)
    start = dt.datetime.fromisoformat(exp.started_at)
    minutes = max((now - start).total_seconds() / 60, 0.0)
    window = dt.timedelta(minutes=attribution.window_minutes)
    cfg = attribution.model_copy(update={"hours": minutes / 60 + 1 / 60})
    params = {"experiment": exp.id, "start": start, "now": now}
    with sql.connect() as con:
        open_sources(con, paths, since=start, events_since=start - window)
        attribute(con, cfg, now).to_table("attributed")
        settings = exp.settings
        if settings.mode == ExperimentMode.ab:
            df = sql.query(con, "experiment_ab_users", k=attribution.k, **params).df()
            arms = []
            for arm in ("control", "treatment"):
                rows = df[df["arm"] == arm]
                arms.append(ArmTotals(*(rows[c].to_numpy(np.float64)
                                        for c in ("impressions", "clicks", "purchases"))))
            totals = (arms[0], arms[1])
        else:
            df = sql.query(con, "experiment_interleave_users", **params).df()
            totals = InterleaveTotals(*(df[c].to_numpy(np.float64) for c in (
                "wins", "losses", "decided", "purchase_wins", "purchase_losses",
                "purchase_decided")))
    impressions = int(df["impressions"].sum()) if len(df) else 0
    return Look(exp, judge(settings, minutes, totals, impressions), minutes, impressions)
