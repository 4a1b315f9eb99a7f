from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.live_split import split_live


def _events(ts: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": "u", "item_id": [f"i{n}" for n in range(len(ts))], "ts": ts})


def test_the_newest_share_is_live_and_history_comes_before_it():
    events = _events([5, 1, 4, 2, 3, 9, 7, 8, 6, 0])
    history, live = split_live(events, 0.3)
    assert list(history["ts"]) == list(range(7)) and list(live["ts"]) == [7, 8, 9]
    assert len(history) + len(live) == len(events)


def test_ties_keep_file_order_and_the_live_count_rounds_down():
    events = _events([1, 1, 1, 2, 2])
    history, live = split_live(events, 0.5)  # int(2.5) = 2 live events
    assert list(history["item_id"]) == ["i0", "i1", "i2"]
    assert list(live["item_id"]) == ["i3", "i4"]


@pytest.mark.parametrize(("fraction", "n_live"), [(0.0, 0), (1.0, 4)])
def test_the_extremes(fraction, n_live):
    history, live = split_live(_events([3, 2, 1, 0]), fraction)
    assert len(live) == n_live and len(history) == 4 - n_live


def test_a_fraction_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="live_fraction"):
        split_live(_events([1, 2]), 1.5)
