"""The update's decision.md renders: every block is its own paragraph, the table stays a table."""

from __future__ import annotations

from recsys.training.update import UpdateResult


def test_lines_after_the_table_are_not_read_as_rows():
    result = UpdateResult(
        "promoted", "not worse within 5%", champion="1", version="2",
        figures={"holdout.champion.ndcg@10": 0.1, "holdout.challenger.ndcg@10": 0.2,
                 "holdout.champion.hr@10": 0.3, "holdout.challenger.hr@10": 0.4,
                 "holdout.champion.n": 50},
        model_age_s=1234.0)
    blocks = result.markdown().strip().split("\n\n")
    assert blocks[0] == "**promoted**: not worse within 5%"
    table = next(b for b in blocks if b.startswith("| set |"))
    assert table.splitlines()[-1] == "| holdout | 0.1000 | 0.2000 | 0.3000 | 0.4000 | 50 |"
    assert blocks[-1] == "champion model age: 1,234 s"  # its own paragraph, not a table row
    # and with timings between them, each is still a block of its own
    result.timings = {"train": 1.5}
    assert result.markdown().strip().split("\n\n")[-2:] == ["time: train 1.50 s",
                                                           "champion model age: 1,234 s"]
