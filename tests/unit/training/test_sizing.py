"""The maximum length (and, for long sequences, the attention dropout and the depth) chosen
from the data: only where the user left them unset, by the rule."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.config import ModelConfig
from recsys.training.sizing import OPTION, fit_to_data, max_len_for

rng = np.random.default_rng(0)
# The synthetic demo's lengths (lognormal, mean 40, within 3..400) and a long-history dataset
# shaped like ml-100k's (median ~63, 90th percentile ~224).
DEMO = np.clip(rng.lognormal(np.log(40) - 0.5, 1.0, 4000).astype(int), 3, 400) - 2
LONG = np.clip(rng.lognormal(np.log(65), 0.95, 943).astype(int), 18, 735)


@pytest.mark.parametrize(("lengths", "expected"), [
    (np.array([3, 5, 9]), 50),                 # short sequences: never below 50
    (DEMO, 50),                                # the demo keeps 50, so it does not slow down
    (LONG, 200),                               # long histories read up to 200
    (np.arange(1, 201), 150),                  # 90th percentile 180, rounded down to 150
    (np.full(100, 5000), 200),                 # never above 200
    (np.array([], dtype=int), 50),
])
def test_max_len_follows_the_length_distribution(lengths, expected):
    assert max_len_for(lengths) == expected


def test_an_unset_max_len_is_chosen_and_explained():
    cfg, why = fit_to_data(ModelConfig(d_model=32), LONG)
    assert (cfg.max_len, cfg.dropout, cfg.d_model) == (200, 0.2, 32)
    assert cfg.attention_dropout == 0.0  # long sequences: the fused attention kernel
    assert cfg.n_blocks == 3  # and a third block
    assert set(why) == {"max_len", "attention_dropout", "n_blocks"} == set(OPTION)
    assert "quantile" in why["max_len"]
    assert cfg.model_fields_set == {"d_model"}  # still what the user chose, nothing more
    short, why = fit_to_data(ModelConfig(), DEMO)
    assert (short.max_len, short.attention_dropout, short.n_blocks, set(why)) == (
        50, None, 2, {"max_len"})


def test_the_users_max_len_wins():
    given = ModelConfig(max_len=30)
    assert fit_to_data(given, LONG) == (given, {})


def test_a_long_max_len_drops_attention_dropout_and_adds_a_block_unless_the_user_set_them():
    cfg, why = fit_to_data(ModelConfig(max_len=200), LONG)
    assert (cfg.attention_dropout, cfg.n_blocks) == (0.0, 3)
    assert set(why) == {"attention_dropout", "n_blocks"}
    given = ModelConfig(max_len=200, attention_dropout=0.1, n_blocks=2)
    assert fit_to_data(given, LONG) == (given, {})
    cfg, why = fit_to_data(ModelConfig(max_len=200, n_blocks=1), LONG)
    assert (cfg.n_blocks, set(why)) == (1, {"attention_dropout"})


def test_the_full_retrain_applies_the_rule_with_or_without_a_given_max_len(tmp_path):
    from recsys.config import Paths, TrainConfig
    from recsys.training.full_retrain import fit_model_to_data

    paths = Paths(root=tmp_path / "home", tracking_home=tmp_path / "tracking")  # no store yet
    cfg, why = fit_model_to_data(paths, TrainConfig(), ModelConfig(max_len=200))
    assert (cfg.attention_dropout, cfg.n_blocks) == (0.0, 3)
    assert set(why) == {"attention_dropout", "n_blocks"}
    assert fit_model_to_data(paths, TrainConfig(), ModelConfig(max_len=50)) == (
        ModelConfig(max_len=50), {})
    assert fit_model_to_data(paths, TrainConfig(), ModelConfig()) == (ModelConfig(), {})


def test_each_chosen_field_names_the_option_that_sets_it():
    from typer.testing import CliRunner

    from recsys.cli import app

    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).output
    assert all(option in shown for option in OPTION.values()), shown


def test_the_prefect_forms_defaults_count_as_unset():
    """The UI sends every field at its default; those are still sized to the data."""
    from recsys.training.sizing import defaults_as_unset

    from_form = ModelConfig(**ModelConfig().model_dump())  # every field "set"
    cfg, why = fit_to_data(defaults_as_unset(from_form), LONG)
    assert (cfg.max_len, cfg.n_blocks, cfg.attention_dropout) == (200, 3, 0.0)
    assert set(why) == {"max_len", "n_blocks", "attention_dropout"}
    chosen = ModelConfig(**{**ModelConfig().model_dump(), "max_len": 100, "d_model": 32})
    kept = defaults_as_unset(chosen)
    assert {"max_len", "d_model"} <= kept.model_fields_set
    assert fit_to_data(kept, LONG)[0].max_len == 100  # a value the user changed is kept
    plain = ModelConfig()
    assert defaults_as_unset(plain) is plain
