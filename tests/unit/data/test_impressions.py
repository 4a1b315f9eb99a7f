"""Impression logging: in memory on the request path, parts written by a thread, nothing lost on
a failed write, the schema of the contract."""

from __future__ import annotations

import re
import time

import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.config import ImpressionConfig
from recsys.data.impressions import ImpressionLog

NAME = re.compile(r"^part-\d{14}-[0-9a-f]{8}-\d{6}\.parquet$")


def read(paths) -> pd.DataFrame:
    parts = sorted(paths.impressions.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts]) if parts else pd.DataFrame()


def test_answers_become_one_row_per_item_in_the_contract_schema(paths):
    log = ImpressionLog(paths, ImpressionConfig(flush_interval_s=60))
    log.log("r1", "u1", ["a", "b", "c"], [0.9, 0.5, 0.1], "7")
    log.log("r2", None, ["d"], [1.5], "7", surface="session")
    log.log("r3", "u2", ["e", "f"], [None, None], "7", variant="B")
    log.log("r4", "u3", [], [], "7")  # an empty answer shows nothing
    assert not paths.impressions.exists()  # nothing written on the request path
    log.close()
    [part] = paths.impressions.glob("part-*")
    assert NAME.match(part.name) and log.boot_id in part.name
    assert pq.read_schema(part).remove_metadata() == C.IMPRESSION_SCHEMA
    df = pd.read_parquet(part)
    assert df.request_id.tolist() == ["r1"] * 3 + ["r2"] + ["r3"] * 2
    assert df.position.tolist() == [1, 2, 3, 1, 1, 2]
    assert df.item_id.tolist() == list("abcdef")
    assert df.score.tolist()[:4] == [0.9, 0.5, 0.1, 1.5] and df.score[-2:].isna().all()
    assert df.surface.tolist() == ["user"] * 3 + ["session"] + ["user"] * 2
    assert df.variant.tolist()[-1] == "B" and df.variant[:4].isna().all()
    assert pd.isna(df.user_id.iloc[3]) and set(df.model_version) == {"7"}
    age = (pd.Timestamp.now("UTC").tz_localize(None) - df.ts).dt.total_seconds()
    assert ((age >= 0) & (age < 60)).all()  # naive UTC, when the answer was logged


def test_an_interleaved_answer_labels_each_item_with_its_team_and_model(paths):
    log = ImpressionLog(paths, ImpressionConfig(flush_interval_s=60))
    log.log("r1", "u1", ["a", "b"], [0.9, 0.5], "7")
    log.log("r2", "u2", ["c", "d", "e"], None, ["7", "8", "7"], ["A", "B", "A"])
    log.log("r3", None, ["f"], [0.3], "8", "B")
    log.close()
    df = read(paths)
    assert df.request_id.tolist() == ["r1"] * 2 + ["r2"] * 3 + ["r3"]
    assert df.position.tolist() == [1, 2, 1, 2, 3, 1]
    assert df.model_version.tolist() == ["7", "7", "7", "8", "7", "8"]
    assert df.variant.tolist()[2:] == ["A", "B", "A", "B"] and df.variant[:2].isna().all()
    assert df.score[2:5].isna().all() and df.score.tolist()[5] == 0.3
    assert df.user_id.tolist()[:5] == ["u1", "u1", "u2", "u2", "u2"] and pd.isna(df.user_id[5])


def test_the_thread_writes_a_part_every_interval_and_early_when_the_buffer_fills(paths):
    log = ImpressionLog(paths, ImpressionConfig(flush_interval_s=0.2, max_buffer_rows=1000))
    log.start()
    try:
        log.log("r1", "u", ["a"], [1.0], "1")
        deadline = time.monotonic() + 10
        while log.written < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        parts = log.parts
        log.config = ImpressionConfig(flush_interval_s=60, max_buffer_rows=1000)
        time.sleep(0.3)  # the thread now waits a minute, unless the buffer fills
        for n in range(110):
            log.log(f"r{n}", "u", [str(i) for i in range(10)], None, "1")
        while log.parts == parts:
            assert time.monotonic() < deadline, "a full buffer did not force a write"
            time.sleep(0.05)
    finally:
        log.close()
    assert len(read(paths)) == 1 + 1100 and log.dropped == 0


def test_a_failed_write_keeps_the_rows_for_the_next_one(paths):
    paths.impressions.parent.mkdir(parents=True, exist_ok=True)
    paths.impressions.write_text("a file where the folder should be")  # every write fails
    log = ImpressionLog(paths, ImpressionConfig(flush_interval_s=60))
    log.log("r1", "u", ["a", "b"], [1.0, 0.5], "1")
    assert log.flush() == 0 and log.written == 0
    log.log("r2", "u", ["c"], [0.1], "1")
    paths.impressions.unlink()
    assert log.flush() == 3
    log.close()
    assert read(paths).request_id.tolist() == ["r1", "r1", "r2"]


def test_logging_never_raises_and_a_disabled_log_writes_nothing(paths):
    log = ImpressionLog(paths)
    log.log("r1", "u", 7, None, "1")  # not a list: counted, not raised
    log.log("r1", "u", ["a", "b"], [1.0], "1")  # a score missing
    log.log("r2", "u", ["a"], [1.0], "1")
    assert log.dropped == 2 and log.flush() == 1
    off = ImpressionLog(paths, ImpressionConfig(enabled=False))
    off.start()
    off.log("r1", "u", ["a"], [1.0], "1")
    off.close()
    log.close()
    assert len(read(paths)) == 1 and off.written == 0
