"""The world's ground truth: the generator's latent state, kept without changing its events."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from recsys.data.synthetic import generate, preset
from recsys.data.world import World, world_path

# sha256 of events.to_csv + items.to_csv, taken before the generator returned its world: the
# tests and benchmarks that depend on the exact stream of a seed keep it.
STREAMS = {
    ("tiny", ()): "d3d57c7a8fea6540944b2c56f954b69ea6cfcb7b7093ab6c30ddc7addee85708",
    ("tiny", (("n_users", 400), ("n_items", 240), ("seed", 3))):
        "df6e76bfd2969486871315b69ef7639f7d96e5073f452d8e5273951d1cdc8d70",
}


@pytest.fixture(scope="module")
def data():
    return generate(preset("tiny", n_users=400, n_items=240, seed=3))


@pytest.mark.parametrize("name, overrides", list(STREAMS))
def test_the_events_of_a_seed_are_unchanged(name, overrides):
    d = generate(preset(name, **dict(overrides)))
    text = d.events.to_csv(index=False) + d.items.to_csv(index=False)
    assert hashlib.sha256(text.encode()).hexdigest() == STREAMS[(name, overrides)]


def test_the_world_describes_the_generated_catalogue_and_users(data):
    world = data.world
    items = data.items.set_index("item_id")
    assert list(world.item_ids) == list(data.items.item_id)
    assert [world.categories[c] for c in world.item_cat] == list(items.category)
    created = pd.Timestamp(world.start) + pd.to_timedelta(np.round(world.created), unit="s")
    assert (created == items.created_at.to_numpy()).all()
    # Each user's last item is the last item of their events (a user without events has -1).
    last = data.events.groupby("user_id").item_id.last()
    users = world.user_index(last.index)
    assert (world.item_ids[world.last_item[users]] == last.to_numpy()).all()
    assert (np.delete(world.last_item, users) == -1).all()
    assert np.allclose(world.interest_weights.sum(axis=1), 1.0)
    assert world.user_index(["nobody"])[0] == -1 and world.item_index(["i999999"])[0] == -1


def test_the_world_round_trips_through_npz(data, tmp_path):
    path = data.world.save(world_path(tmp_path / "raw"))
    assert path == tmp_path / "raw" / "world.npz" and not list(path.parent.glob("*.tmp"))
    back = World.load(path)
    for name in ("item_cat", "item_pos", "cat_start", "cat_sizes", "base_pop", "created",
                 "popularity", "interests", "interest_weights", "last_item"):
        assert np.array_equal(getattr(back, name), getattr(data.world, name)), name
    assert back.categories == data.world.categories and back.tastes == data.world.tastes
    assert (back.start, back.seconds, back.p_sequential) == \
        (data.world.start, data.world.seconds, data.world.p_sequential)
    users = np.arange(back.n_users)
    items = np.tile(np.arange(back.n_items), (back.n_users, 1))
    assert np.array_equal(back.click_probability(users, back.last_item, items),
                          data.world.click_probability(users, data.world.last_item, items))


def test_click_probability_favours_successors_then_interests(data):
    world = data.world
    users = np.flatnonzero(world.last_item >= 0)
    last = world.last_item[users]
    everything = np.tile(np.arange(world.n_items), (len(users), 1))
    p = world.click_probability(users, last, everything)
    assert p.shape == everything.shape and (p > 0).all() and (p <= 1).all()
    near = np.zeros_like(p, dtype=bool)
    near[np.arange(len(users))[:, None], world.successors(last)] = True
    interest = world.affinity(users, world.item_cat[everything]) > 0
    successors, liked, other = p[near].mean(), p[~near & interest].mean(), \
        p[~near & ~interest].mean()
    assert successors > 0.45 > 3 * liked and liked > 3 * other, (successors, liked, other)
    # Within an interest category, popular items are clicked more.
    rows, cols = np.nonzero(~near & interest)
    pop = world.popularity[cols]
    top = pop > np.quantile(pop, 0.75)
    low = pop < np.quantile(pop, 0.25)
    assert p[rows[top], cols[top]].mean() > 2 * p[rows[low], cols[low]].mean()
    # Items outside the world are never clicked.
    assert (world.click_probability(users[:2], last[:2], [[-1, 0], [-1, 1]])[:, 0] == 0).all()


def test_organic_next_follows_the_generators_process(data):
    """Organic choices: successors about p_sequential of the time, else the user's interests."""
    world = data.world
    rng = np.random.default_rng(0)
    users = np.repeat(np.flatnonzero(world.last_item >= 0), 20)
    last = world.last_item[users]
    nxt = world.organic_next(rng, users, last)
    near = (world.successors(last) == nxt[:, None]).any(axis=1)
    assert abs(near.mean() - world.p_sequential) < 0.05 + (1 - world.p_sequential) * 0.05
    rest = ~near
    in_interest = world.affinity(users[rest], world.item_cat[nxt[rest]][:, None])[:, 0] > 0
    assert in_interest.mean() > 0.9  # p_explore = 0.05 picks a random category
    # Organic next items are what click_probability ranks high.
    p_next = world.click_probability(users, last, nxt[:, None])[:, 0].mean()
    p_random = world.click_probability(
        users, last, rng.integers(0, world.n_items, (len(users), 1)))[:, 0].mean()
    assert p_next > 3 * p_random


def test_drift_moves_only_the_simulators_copy(data):
    world = data.world
    mine = world.copy()
    rng = np.random.default_rng(1)
    for _ in range(50):
        mine.drift(rng, np.arange(mine.n_users))
    changed = (mine.interests != world.interests).any(axis=1).mean()
    expected = 1 - (1 - world.drift_per_event) ** 50  # minus the odd draw of the same category
    assert 0.5 * expected < changed <= expected + 0.05
    assert not np.shares_memory(mine.interests, world.interests)
