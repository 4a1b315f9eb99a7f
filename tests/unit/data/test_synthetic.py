"""The synthetic world is deterministic and has the structure models should exploit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.synthetic import generate, preset


@pytest.fixture(scope="module")
def data():
    return generate(preset("tiny", n_users=400, n_items=240, mean_events_per_user=30))


def test_same_seed_same_data(data):
    again = generate(preset("tiny", n_users=400, n_items=240, mean_events_per_user=30))
    pd.testing.assert_frame_equal(data.events, again.events)
    other = generate(preset("tiny", n_users=400, n_items=240, mean_events_per_user=30, seed=1))
    assert not data.events.equals(other.events)


def test_contract_and_catalogue(data):
    ev = data.events
    assert set(ev.columns) == {"user_id", "item_id", "event_type", "ts", "value"}
    assert set(ev.event_type) == {"view", "click", "cart", "purchase", "rating"}
    assert ev.ts.is_monotonic_increasing
    assert set(ev.item_id) <= set(data.items.item_id)
    assert data.items.title.str.len().min() > 5 and data.items.category.nunique() == 6


def test_items_are_never_used_before_release(data):
    created = data.items.set_index("item_id").created_at
    assert (data.events.ts.to_numpy() >= created[data.events.item_id].to_numpy()).all()
    assert (created > data.events.ts.min()).sum() > 10, "new items arrive during the period"


def test_users_stay_within_their_interests_and_follow_chains(data):
    cat = data.items.set_index("item_id").category
    ev = data.events.assign(cat=cat[data.events.item_id].to_numpy())
    ev = ev.sort_values(["user_id", "ts"], kind="stable")
    same_user = ev.user_id.eq(ev.user_id.shift())
    same_cat = ev.cat.eq(ev.cat.shift())[same_user].mean()
    assert same_cat > 0.5, "consecutive events mostly stay in a category (6 categories => 1/6)"
    idx = ev.item_id.str[1:].astype(int)
    step = (idx - idx.shift())[same_user]
    assert np.isin(step, [1, 2, 3]).mean() > 0.2, "chain successors are frequent"
