"""Seeded synthetic events realistic enough that model choices matter.

What the generator builds in, and which model should exploit it:

* categories with their own vocabularies, so item text carries signal
  (the text tower; cold-start items);
* users with a few latent interests that drift (sequence models beat
  static profiles; micro-batch updates beat a stale model);
* sequential structure: the next item is often a near successor of the last
  one in its category's "chain" (order matters: SASRec beats co-occurrence);
* popularity that changes: items peak after release and oscillate
  (recent-window popularity beats all-time popularity);
* new items released throughout the period (id maps grow; cold start).

Everything is vectorised over users, so tens of millions of events take
seconds to minutes, and the same seed always gives the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.data.world import Tastes, World
from recsys.data.world import ids as _ids

VOCAB: dict[str, list[str]] = {
    "running": ["trail", "marathon", "sprint", "cushioned", "shoe", "tempo", "stride", "track"],
    "cycling": ["bike", "helmet", "gravel", "road", "pedal", "chain", "saddle", "carbon"],
    "skincare": ["serum", "moisturizer", "cleanser", "spf", "retinol", "hydrating", "toner",
                 "face"],
    "makeup": ["lipstick", "mascara", "foundation", "blush", "palette", "eyeliner", "matte",
               "gloss"],
    "coffee": ["espresso", "arabica", "roast", "grinder", "beans", "brew", "latte", "aroma"],
    "tea": ["green", "oolong", "matcha", "herbal", "teapot", "leaf", "chai", "infusion"],
    "gaming": ["console", "controller", "rpg", "shooter", "headset", "keyboard", "mouse",
               "esports"],
    "books": ["novel", "thriller", "biography", "paperback", "fantasy", "mystery", "poetry",
              "memoir"],
    "garden": ["seeds", "compost", "pruner", "planter", "hose", "soil", "tulip", "shovel"],
    "kitchen": ["pan", "knife", "skillet", "blender", "spatula", "cookware", "oven", "wok"],
    "camping": ["tent", "sleeping", "lantern", "backpack", "stove", "hiking", "tarp", "compass"],
    "music": ["guitar", "vinyl", "amplifier", "drum", "piano", "strings", "synth", "microphone"],
    "pets": ["dog", "cat", "leash", "kibble", "litter", "aquarium", "collar", "treats"],
    "baby": ["diaper", "stroller", "crib", "bottle", "pacifier", "onesie", "rattle", "wipes"],
    "office": ["notebook", "pen", "stapler", "desk", "monitor", "chair", "planner", "folder"],
    "fitness": ["dumbbell", "yoga", "kettlebell", "protein", "mat", "resistance", "treadmill",
                "rower"],
}
ADJECTIVES = ["classic", "pro", "ultra", "lite", "premium", "eco", "compact", "deluxe", "smart",
              "vintage", "essential", "advanced"]
BRANDS = ["Acme", "Nordik", "Vela", "Orbit", "Kumo", "Basalt", "Lumen", "Fjord", "Tessel",
          "Quill", "Arbor", "Zephyr"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and behaviour knobs; the defaults train in minutes on a laptop CPU."""

    n_users: int = 4000
    n_items: int = 2000
    n_categories: int = 16
    mean_events_per_user: float = 40.0
    max_events_per_user: int = 400
    days: float = 60.0
    start: str = "2026-01-01"
    new_item_fraction: float = 0.3  # share of the catalogue released during the period
    p_sequential: float = 0.55  # next item follows the chain of the last one
    p_explore: float = 0.05  # a random category instead of an interest
    drift_per_event: float = 0.01  # chance an interest is replaced, per event
    n_interests: int = 3
    n_epochs: int = 24  # popularity is piecewise constant over this many periods
    seed: int = 0


PRESETS: dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(n_users=150, n_items=120, n_categories=6, mean_events_per_user=20,
                            days=20, n_epochs=8),
    "small": SyntheticConfig(),
    "medium": SyntheticConfig(n_users=50_000, n_items=20_000, mean_events_per_user=40),
    "large": SyntheticConfig(n_users=250_000, n_items=50_000, mean_events_per_user=40),
}


def preset(name: str, **overrides) -> SyntheticConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass
class SyntheticData:
    events: pd.DataFrame  # the event contract
    items: pd.DataFrame  # the catalogue contract
    world: World  # the latent state the events were drawn from, at the end of the period


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticData:
    rng = np.random.default_rng(cfg.seed)
    cats = list(VOCAB)[: cfg.n_categories]
    n_cat = len(cats)
    seconds = cfg.days * 86400.0

    # ---- catalogue: items are contiguous per category, in chain order.
    cat_sizes = np.full(n_cat, cfg.n_items // n_cat)
    cat_sizes[: cfg.n_items % n_cat] += 1
    cat_start = np.concatenate([[0], np.cumsum(cat_sizes)[:-1]])
    item_cat = np.repeat(np.arange(n_cat), cat_sizes)
    item_pos = np.arange(cfg.n_items) - cat_start[item_cat]
    is_new = rng.random(cfg.n_items) < cfg.new_item_fraction
    is_new[cat_start] = False  # every category has something on day one
    created = np.where(is_new, rng.uniform(0.05, 0.95, cfg.n_items) * seconds,
                       -rng.uniform(1, 30, cfg.n_items) * 86400.0)
    base_pop = rng.pareto(1.2, cfg.n_items) + 0.05
    phase = rng.uniform(0, 2 * np.pi, cfg.n_items)
    period = rng.uniform(10, 40, cfg.n_items) * 86400.0

    # ---- popularity per epoch: release boost that decays, plus a slow oscillation.
    edges = np.linspace(0, seconds, cfg.n_epochs + 1)
    t_mid = (edges[:-1] + edges[1:]) / 2
    age = t_mid[:, None] - created[None, :]
    boost = 1 + 4 * np.exp(-np.clip(age, 0, None) / (7 * 86400.0))
    wave = 1 + 0.6 * np.sin(2 * np.pi * t_mid[:, None] / period[None, :] + phase[None, :])
    weight = base_pop[None, :] * boost * wave * (created[None, :] <= edges[:-1, None])
    # Normalised CDF per (epoch, category) block, offset by the block number so one
    # searchsorted over the flat array samples every user's block at once.
    cdf = np.zeros_like(weight)
    for c in range(n_cat):
        s, e = cat_start[c], cat_start[c] + cat_sizes[c]
        block = np.cumsum(weight[:, s:e], axis=1)
        cdf[:, s:e] = block / block[:, -1:]
    block_id = np.arange(cfg.n_epochs)[:, None] * n_cat + item_cat[None, :]
    flat_cdf = (cdf + block_id).ravel()

    def sample_items(epoch: np.ndarray, cat: np.ndarray) -> np.ndarray:
        key = epoch * n_cat + cat + rng.random(len(cat)) * (1 - 1e-9)
        flat = np.searchsorted(flat_cdf, key, side="right")
        return np.minimum(flat, flat_cdf.size - 1) % cfg.n_items

    # ---- users.
    n_u = cfg.n_users
    length = np.clip(
        rng.lognormal(np.log(cfg.mean_events_per_user) - 0.5, 1.0, n_u).astype(int),
        3, cfg.max_events_per_user)
    start = rng.uniform(0, 0.85, n_u) * seconds
    span = rng.uniform(0.1, 1.0, n_u) * (seconds - start)
    mean_gap = span / length
    interests = rng.integers(0, n_cat, (n_u, cfg.n_interests))
    interest_w = rng.dirichlet(np.ones(cfg.n_interests), n_u).cumsum(axis=1)

    t = start.copy()
    last = np.full(n_u, -1)
    out_u, out_i, out_t = [], [], []
    for step in range(int(length.max())):
        act = np.flatnonzero(length > step)
        if act.size == 0:
            break
        t[act] += rng.exponential(mean_gap[act])
        done = t[act] >= seconds  # the period ended for these users
        length[act[done]] = step
        act = act[~done]
        if act.size == 0:
            break
        ta = t[act]
        epoch = np.minimum((ta / seconds * cfg.n_epochs).astype(int), cfg.n_epochs - 1)
        # interests drift: one slot is replaced by a random category
        drift = act[rng.random(act.size) < cfg.drift_per_event]
        interests[drift, rng.integers(0, cfg.n_interests, drift.size)] = rng.integers(
            0, n_cat, drift.size)
        slot = (rng.random(act.size)[:, None] > interest_w[act]).sum(axis=1)
        cat = interests[act, np.minimum(slot, cfg.n_interests - 1)]
        explore = rng.random(act.size) < cfg.p_explore
        cat[explore] = rng.integers(0, n_cat, explore.sum())
        item = sample_items(epoch, cat)
        # sequential mode: a near successor of the last item in its category chain
        prev = last[act]
        seq = (rng.random(act.size) < cfg.p_sequential) & (prev >= 0)
        pc = item_cat[np.maximum(prev, 0)]
        succ = cat_start[pc] + (item_pos[np.maximum(prev, 0)] + rng.integers(1, 4, act.size)) \
            % cat_sizes[pc]
        seq &= created[succ] <= ta
        item = np.where(seq, succ, item)
        last[act] = item
        out_u.append(act)
        out_i.append(item)
        out_t.append(ta)
    # The latent state as the period ends (no random draws: the events stay what they were).
    popularity = base_pop * (1 + 4 * np.exp(-np.clip(seconds - created, 0, None) / (7 * 86400.0))) \
        * (1 + 0.6 * np.sin(2 * np.pi * seconds / period + phase))
    weights = np.diff(interest_w, axis=1, prepend=0.0)
    world = World(categories=cats, item_cat=item_cat, item_pos=item_pos, cat_start=cat_start,
                  cat_sizes=cat_sizes, base_pop=base_pop, created=created, popularity=popularity,
                  interests=interests, interest_weights=weights, last_item=last, start=cfg.start,
                  seconds=seconds, p_sequential=cfg.p_sequential, p_explore=cfg.p_explore,
                  drift_per_event=cfg.drift_per_event, tastes=Tastes())

    users = np.concatenate(out_u)
    items = np.concatenate(out_i)
    secs = np.concatenate(out_t)
    n = users.size
    kinds = np.array(["view", "click", "cart", "purchase", "rating"])
    kind = kinds[np.searchsorted(np.cumsum([0.62, 0.2, 0.09, 0.05, 0.04]), rng.random(n),
                                 side="right").clip(0, 4)]
    price = np.round(5 + base_pop[items] * 3 + rng.gamma(2, 10, n), 2)
    rating = np.clip(np.round(rng.normal(4, 1, n)), 1, 5)
    value = np.where(kind == "purchase", price, np.where(kind == "rating", rating, np.nan))
    t0 = pd.Timestamp(cfg.start)
    events = pd.DataFrame({
        C.USER_ID: _ids("u", users),
        C.ITEM_ID: _ids("i", items),
        C.EVENT_TYPE: kind,
        C.TS: t0 + pd.to_timedelta(np.round(secs), unit="s"),
        C.VALUE: value,
    }).sort_values([C.TS, C.USER_ID], kind="stable", ignore_index=True)

    catalogue = pd.DataFrame({
        C.ITEM_ID: _ids("i", np.arange(cfg.n_items)),
        C.TITLE: _titles(rng, item_cat, cats),
        C.CATEGORY: [cats[c] for c in item_cat],
        C.DESCRIPTION: _descriptions(rng, item_cat, cats),
        C.CREATED_AT: t0 + pd.to_timedelta(np.round(created), unit="s"),
    })
    return SyntheticData(events=events, items=catalogue, world=world)


def _titles(rng, item_cat, cats) -> list[str]:
    out = []
    for c in item_cat:
        words = VOCAB[cats[c]]
        brand, adj = BRANDS[rng.integers(len(BRANDS))], ADJECTIVES[rng.integers(len(ADJECTIVES))]
        out.append(f"{brand} {adj} {words[rng.integers(len(words))]} "
                   f"{words[rng.integers(len(words))]}")
    return out


def _descriptions(rng, item_cat, cats) -> list[str]:
    out = []
    for c in item_cat:
        words = VOCAB[cats[c]]
        picks = rng.choice(words, 4, replace=False)
        out.append(f"A {ADJECTIVES[rng.integers(len(ADJECTIVES))]} {picks[0]} for {cats[c]} fans: "
                   f"{picks[1]}, {picks[2]} and {picks[3]}.")
    return out

