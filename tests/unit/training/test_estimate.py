"""The demo's time estimate counts the fine-tune steps an update really takes."""

import doctest

from recsys.config import UpdateConfig
from recsys.data.synthetic import preset
from recsys.training import estimate
from recsys.training.estimate import update_steps


def test_doctests():
    assert doctest.testmod(estimate).failed == 0


def test_update_steps_follow_the_batch_and_stop_at_the_cap():
    small = preset("small")  # 4,000 users, 40 events each
    # 0.1 of 160,000 events in 6 parts: ~1,950 users, as many replayed: 16 steps of 256.
    assert update_steps(small, UpdateConfig(), 3, 0.1) == 16
    assert update_steps(small, UpdateConfig(epochs=2), 3, 0.1) == 32
    assert update_steps(small, UpdateConfig(replay_ratio=0), 3, 0.1) == 8
    assert update_steps(preset("medium"), UpdateConfig(), 3, 0.1) == UpdateConfig().max_steps
    assert update_steps(preset("tiny"), UpdateConfig(), 3, 0.1) == 1
