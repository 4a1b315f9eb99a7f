"""The simulated population rewards the truly better recommender, and only through its choices."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.config import SimulateConfig
from recsys.data.synthetic import generate, preset
from recsys.scoring.scorer import Scorer
from recsys.simulate.population import GaveUp, Simulator, Stopper


@pytest.fixture(scope="module")
def data():
    return generate(preset("tiny"))


class Recorder:
    """A stand-in for POST /events that keeps what it was sent."""

    def __init__(self):
        self.batches: list[list[dict]] = []

    def __call__(self, events: list[dict]) -> int:
        self.batches.append(list(events))
        return len(events)

    @property
    def events(self) -> list[dict]:
        return [e for batch in self.batches for e in batch]


def _best(holder: list[Simulator]):
    """Lists of the world's truly best items for the user right now (an oracle)."""
    def recommend(user_id: str, k: int):
        world = holder[0].world
        user = world.user_index([user_id])
        p = world.click_probability(user, world.last_item[user], np.arange(world.n_items)[None])
        return None, list(world.item_ids[np.argsort(-p[0], kind="stable")[:k]])
    return recommend


def _random(world, seed: int = 7):
    rng = np.random.default_rng(seed)
    return lambda user_id, k: (None, list(world.item_ids[rng.choice(world.n_items, k, False)]))


def _z(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample z of the mean clicks per request (a list's clicks are one observation, so
    clicks within one list may depend on each other)."""
    return (a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))


def test_the_worlds_best_lists_earn_far_more_clicks_than_random_ones(data):
    cfg = SimulateConfig(seed=3, k=10)
    holder: list[Simulator] = []
    best = Simulator(data.world, cfg, _best(holder), Recorder())
    holder.append(best)
    best.run_requests(1500)
    rand = Simulator(data.world, cfg, _random(data.world), Recorder()).run_requests(1500)
    assert best.counts.impressions == rand.impressions == 15_000
    assert best.counts.ctr > 4 * rand.ctr, (best.counts.ctr, rand.ctr)
    p1, p2, n = best.counts.ctr, rand.ctr, 15_000
    pooled = (p1 + p2) / 2
    assert (p1 - p2) / math.sqrt(pooled * (1 - pooled) * 2 / n) > 4
    # The oracle's users move along chains: what they click is mostly the next step.
    assert best.counts.clicks > 0 and best.counts.purchases > 0


def test_position_bias_shapes_the_clicks_of_random_lists(data):
    """Random lists: position 1 is looked at 10 times as often as position 10 with eta=1."""
    biased = Simulator(data.world, SimulateConfig(seed=1, eta=1.0), _random(data.world),
                       Recorder()).run_requests(3000).clicks_by_position
    flat = Simulator(data.world, SimulateConfig(seed=1, eta=0.0), _random(data.world),
                     Recorder()).run_requests(3000).clicks_by_position
    assert biased[0] > 4 * biased[-1] and sum(biased[:3]) > 2 * sum(biased[-3:])
    assert 0.5 < sum(flat[:5]) / sum(flat[5:]) < 2.0, flat


def test_reactions_are_events_of_the_contract_dated_now_and_tied_to_their_list(data):
    world = data.world
    served = Counter()
    shown: dict[str, list[str]] = {}

    def recommend(user_id: str, k: int):
        served[user_id] += 1
        request_id = f"req-{sum(served.values())}"
        shown[request_id] = list(_random(world, sum(served.values()))(user_id, k)[1])
        return request_id, shown[request_id]

    sink = Recorder()
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    sim = Simulator(world, SimulateConfig(seed=5, batch_events=7, organic_share=0.5),
                    recommend, sink)
    counts = sim.run_requests(600)
    events = pd.DataFrame(sink.events)
    assert all(len(batch) <= 7 for batch in sink.batches)
    assert counts.events_posted == len(events) == \
        counts.clicks + counts.carts + counts.purchases + counts.organic_views
    assert set(events.event_type) == {"click", "cart", "purchase", "view"}
    ts = pd.to_datetime(events.ts)
    assert (ts >= before).all() and ts.is_monotonic_increasing
    reactions = events[events.event_type != "view"]
    assert all(item in shown[rid] for rid, item in zip(reactions.request_id, reactions.item_id,
                                                       strict=True))
    assert events[events.event_type == "view"].request_id.isna().all()  # organic: no list
    purchases = events[events.event_type == "purchase"]
    assert len(purchases) and (purchases.value > 5).all() and events.value.notna().sum() == \
        len(purchases)
    # Each user's last item is their newest event's item, as the simulator remembers it.
    newest = events.groupby("user_id").item_id.last()
    assert (sim.world.item_ids[sim.world.last_item[world.user_index(newest.index)]]
            == newest.to_numpy()).all()
    assert (world.last_item == data.world.last_item).all()  # the given world is untouched
    # Same seed, same lists: same reactions.
    again = Recorder()
    served.clear()
    Simulator(world, SimulateConfig(seed=5, batch_events=7, organic_share=0.5), recommend,
              again).run_requests(600)
    assert [(e["user_id"], e["item_id"], e["event_type"]) for e in again.events] == \
        [(e["user_id"], e["item_id"], e["event_type"]) for e in sink.events]


def test_a_service_that_never_answers_ends_the_run_and_drops_what_it_could_not_send(data):
    def gone(events):
        raise GaveUp("refused")

    sim = Simulator(data.world, SimulateConfig(seed=1, duration_s=0.3, rate=200),
                    _random(data.world), gone)
    counts = sim.run()
    assert counts.requests > 0 and counts.events_posted == 0
    assert counts.events_dropped > 0 and not sim.pending


def test_it_stops_by_itself_after_its_duration_at_about_its_rate(data):
    reports = []
    sim = Simulator(data.world, SimulateConfig(seed=1, duration_s=1.0, rate=50,
                                               report_every_s=0.25),
                    _random(data.world), Recorder())
    counts = sim.run(reports.append)
    assert 1.0 <= counts.elapsed_s < 3.0
    assert 15 <= counts.requests <= 100, counts.requests  # Poisson(50), on a busy machine
    assert len(reports) >= 2 and reports[-1] is counts
    assert counts.events_posted == counts.clicks + counts.carts + counts.purchases \
        + counts.organic_views  # the last batch went out before the end
    stopper = Stopper(0)
    stopper.start()
    stopped = Simulator(data.world, SimulateConfig(seed=1, rate=50), _random(data.world),
                        Recorder(), stopper)
    stopper.stop()
    assert stopped.run().requests == 0  # stop() ends a run without a duration


# -- the test: a trained model against the same model with its item vectors shuffled --
class InProcessService:
    """The real-time service's job without HTTP: each user's latest events in,
    ``Scorer.recommend`` out; posted events join the user's history at once."""

    def __init__(self, scorer: Scorer, events: pd.DataFrame):
        self.scorer, self.n = scorer, 0
        self.history = {u: (list(g.item_id), list(g.event_type))
                        for u, g in events.groupby("user_id", sort=False)}
        self.clicks: Counter = Counter()
        self.requests: list[str] = []

    def recommend(self, user_id: str, k: int):
        self.n += 1
        request_id = f"r{self.n}"
        self.requests.append(request_id)
        items, types = self.history.get(user_id, ([], []))
        n = self.scorer.max_len
        top, _ = self.scorer.recommend([items[-n:]], k, types=[types[-n:]])
        return request_id, list(top[0])

    def post_events(self, events: list[dict]) -> int:
        for e in events:
            items, types = self.history.setdefault(e["user_id"], ([], []))
            items.append(e["item_id"])
            types.append(e["event_type"])
            if e["event_type"] == "click":
                self.clicks[e["request_id"]] += 1
        return len(events)

    def clicks_per_request(self) -> np.ndarray:
        return np.array([self.clicks[r] for r in self.requests], dtype=float)


@pytest.fixture
def one_thread():
    """One torch thread: a single-row forward pass is ~40x slower with two on a busy 2-core
    machine (threads wait for each other), and the test makes a thousand of them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_trained_model_earns_clearly_more_clicks_than_the_same_model_shuffled(
        world, data, one_thread):
    """The conftest world's champion (4 epochs on the tiny preset) against itself with its
    item vectors shuffled (each item id now owns another item's vector, in and out): same
    architecture, same users, same seed; only knowing the world separates them."""
    trained = Scorer.from_registry(world.registry)
    perm = np.random.default_rng(0).permutation(len(trained.item_ids))
    shuffled = Scorer(trained.net, list(trained.item_ids[perm]), trained.meta)
    cfg = SimulateConfig(seed=11)
    results = {}
    for name, scorer in (("trained", trained), ("shuffled", shuffled)):
        service = InProcessService(scorer, data.events)
        counts = Simulator(data.world, cfg, service.recommend,
                           service.post_events).run_requests(500)
        results[name] = (counts, service.clicks_per_request())
    (good, good_clicks), (bad, bad_clicks) = results["trained"], results["shuffled"]
    assert good.clicks == good_clicks.sum() and bad.clicks == bad_clicks.sum()
    # Per request, so that clicks within one list count as one observation: z > 4 has a
    # one-sided chance below 4e-5 if the models were equally good. When written: CTR 8.2%
    # against 2.1% over 500 requests each, z = 13.2.
    z = _z(good_clicks, bad_clicks)
    assert z > 4, (z, good.line(), bad.line())
    assert good.ctr > 2 * bad.ctr, (good.line(), bad.line())
