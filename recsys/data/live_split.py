"""Split a dataset's events into history (landed up front) and a live tail (landed later).

The demo and the local stack both start from history and then feed the newest events in as a
live stream; they split the same way, here.
"""

from __future__ import annotations

import pandas as pd

from recsys import columns as C


def split_live(events: pd.DataFrame, live_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events in time order, cut into history and the newest ``live_fraction`` of them.

    The sort is stable, so events with equal timestamps keep their file order.

    >>> ev = pd.DataFrame({"ts": [3, 1, 2, 4], "item_id": ["c", "a", "b", "d"]})
    >>> history, live = split_live(ev, 0.25)
    >>> list(history["item_id"]), list(live["item_id"])
    (['a', 'b', 'c'], ['d'])
    """
    if not 0.0 <= live_fraction <= 1.0:
        raise ValueError(f"live_fraction must be within [0, 1], not {live_fraction}")
    ordered = events.sort_values(C.TS, kind="stable")
    cut = len(ordered) - int(len(ordered) * live_fraction)
    return ordered.iloc[:cut], ordered.iloc[cut:]
