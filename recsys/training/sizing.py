"""Model settings the data decides when the user leaves them unset: length, dropout, depth.

The maximum length always; for long sequences also the attention dropout and the depth.

A fixed maximum length either cuts long histories short or pads short ones for nothing:
ml-100k's median training sequence is 63 items and its 90th percentile 242, where the
synthetic demo's are 21 and 85. On ml-100k, reading 200 items instead of 50 raised the best
validation NDCG@10 from 0.0613 to 0.0774 (docs/benchmarks.md, "Long sequences: ml-100k at max
length 200").

Beyond 50 items, the attention weights get no dropout unless the user sets one. With dropout
on them, training must write every (query, key) weight out, where without it SDPA's fused
kernel runs: on ml-100k at length 200 an epoch ran 1.75-2.3x faster, and validation NDCG@10
matched within the spread between seeds (docs/benchmarks.md). At 50 items the two ran at the
same speed, so shorter models keep the dropout they always had.

Beyond 50 items the user tower also gets a third block unless the user sets ``n_blocks``: on
ml-100k at length 200 the best validation NDCG@10 rose from 0.0765 and 0.0757 to 0.0780 and
0.0800 (seeds 42 and 7, early stopping with patience 5), at about two thirds of the positions
per second; a longer history gives attention more to compose. At 50 items (the synthetic demo,
Beauty) nothing changes.
"""

from __future__ import annotations

import math

import numpy as np

from recsys.config import ModelConfig

# The 90th percentile of training sequence lengths, rounded down to a multiple of LEN_STEP and
# held within [MIN_LEN, MAX_LEN]. Rounding down keeps the synthetic demo (90th percentile ~85)
# at 50, the former fixed default, so it does not slow down; MAX_LEN is SASRec's longest setting
# (ML-1M), and attention's cost per position grows with the length.
LEN_QUANTILE, LEN_STEP, MIN_LEN, MAX_LEN = 0.9, 50, 50, 200
# Longer than this, an unset attention dropout is 0 (the fused kernel; see the module's note),
# and an unset depth is LONG_BLOCKS.
FUSED_ATTENTION_FROM = 51
LONG_BLOCKS = 3
# The command-line option that sets each field chosen here (`recsys train`, bench/model_quality).
OPTION = {"max_len": "--max-len", "attention_dropout": "--attention-dropout",
          "n_blocks": "--blocks"}


def max_len_for(lengths: np.ndarray) -> int:
    """The maximum length for training sequences of these lengths (see ``LEN_QUANTILE``).

    >>> max_len_for(np.array([10, 20, 30]))
    50
    >>> max_len_for(np.arange(1, 201)), max_len_for(np.arange(1, 1001))
    (150, 200)
    """
    if not len(lengths):
        return MIN_LEN
    q = float(np.quantile(lengths, LEN_QUANTILE))
    return int(min(MAX_LEN, max(MIN_LEN, math.floor(q / LEN_STEP) * LEN_STEP)))


SIZED = ("max_len", "attention_dropout", "n_blocks")  # what fit_to_data chooses when unset


def defaults_as_unset(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with the sized fields that hold their default counted as unset.

    For the Prefect UI: its run form is filled in with every default, and it cannot leave a
    field unset, so a run from it would never be sized to the data. There a default value
    means "choose for me"; to pin a field at its default, pass it from the CLI.
    """
    defaults = ModelConfig()
    unset = {f for f in SIZED if getattr(cfg, f) == getattr(defaults, f)}
    if not unset & cfg.model_fields_set:
        return cfg
    out = cfg.model_copy()
    out.__pydantic_fields_set__ = set(cfg.model_fields_set) - unset
    return out


def fit_to_data(cfg: ModelConfig, lengths: np.ndarray) -> tuple[ModelConfig, dict[str, str]]:
    """``cfg`` with ``max_len``, ``attention_dropout`` and ``n_blocks`` chosen where unset.

    A field counts as set when the caller passed it (pydantic's ``model_fields_set``; the CLI
    passes only the options given on the command line); a set field is kept as it is.

    Parameters
    ----------
    cfg
        The model settings as the user gave them.
    lengths
        Training sequence lengths (items per user in the training split, before truncation).

    Returns
    -------
    tuple
        The settings to train with, and for each field chosen here a line saying why (for
        MLflow's parameters and the console).
    """
    why: dict[str, str] = {}
    update: dict[str, object] = {}
    max_len = cfg.max_len
    if "max_len" not in cfg.model_fields_set:
        max_len = update["max_len"] = max_len_for(lengths)
        q = float(np.quantile(lengths, LEN_QUANTILE)) if len(lengths) else 0.0
        why["max_len"] = (f"{max_len}: the {LEN_QUANTILE:.0%} quantile of training sequence "
                          f"lengths is {q:.0f}")
    if "attention_dropout" not in cfg.model_fields_set and max_len >= FUSED_ATTENTION_FROM:
        update["attention_dropout"] = 0.0
        why["attention_dropout"] = (f"0: sequences of up to {max_len} items train faster with "
                                    "the fused attention kernel")
    if "n_blocks" not in cfg.model_fields_set and max_len >= FUSED_ATTENTION_FROM:
        update["n_blocks"] = LONG_BLOCKS
        why["n_blocks"] = (f"{LONG_BLOCKS}: sequences of up to {max_len} items learn more with "
                           "a third block")
    if not update:
        return cfg, {}
    resolved = cfg.model_copy(update=update)
    resolved.__pydantic_fields_set__ = set(cfg.model_fields_set)  # still the user's own
    return resolved, why
