"""The precision probe's decision and cache, with fake steps and a fake clock (no timing)."""

from __future__ import annotations

import json

import pytest

from recsys import precision


class Clock:
    """``time.perf_counter`` that moves only when a fake step runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def step(self, ms: float):
        def run() -> None:
            self.now += ms / 1000
        return run


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(precision.time, "perf_counter", fake)
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    return fake


def counting(clock: Clock, fp32_ms: float, bf16_ms: float, calls: list[str]):
    def make():
        calls.append("make")
        return clock.step(fp32_ms), clock.step(bf16_ms)
    return make


def _probe(fp32_ms: float, bf16_ms: float, load: float = 0.0) -> precision.Probe:
    return precision.Probe("p", fp32_ms, bf16_ms, 3, load, "2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize("fp32_ms, bf16_ms, bf16", [
    (160.0, 100.0, True),   # 1.6x, as on an AVX-512 BF16 EPYC
    (115.0, 100.0, True),   # exactly the margin
    (110.0, 100.0, False),  # faster, but within what a busy neighbour does to the timing
    (10.0, 100.0, False),   # emulated bf16 (AVX2 only)
])
def test_bf16_only_when_clearly_faster(fp32_ms, bf16_ms, bf16):
    assert precision.MIN_SPEEDUP == 1.15
    assert _probe(fp32_ms, bf16_ms).bf16 is bf16


def test_a_probe_names_what_it_compared():
    int8 = precision.Probe("top-k", 4.4, 2.1, 3, 0.0, "now", "bf16", "int8")
    assert int8.bf16 and int8.line().startswith("top-k: bf16 4.4 ms, int8 2.1 ms per step")
    assert int8.line().endswith("-> int8")
    assert _probe(100.0, 300.0).line().endswith("-> fp32")


def test_steps_alternate_and_a_plain_answer_stops_after_one_pair(clock):
    order: list[str] = []

    def step(name, ms):
        def run():
            order.append(name)
            clock.now += ms / 1000
        return run

    fp32_ms, bf16_ms, pairs = precision.time_steps(step("fp32", 12), step("bf16", 80), 1.0)
    assert (fp32_ms, bf16_ms, pairs) == (pytest.approx(12), pytest.approx(80), 1)
    assert order == ["fp32", "bf16", "fp32", "bf16"]  # one warm-up each, then one timed pair


def test_close_figures_are_timed_until_the_budget_is_spent(clock):
    fp32_ms, bf16_ms, pairs = precision.time_steps(clock.step(12), clock.step(13), 0.09)
    # 25 ms per pair: the warm-up and 3 pairs pass 0.09 s
    assert (fp32_ms, bf16_ms, pairs) == (pytest.approx(12), pytest.approx(13), 3)
    _, _, pairs = precision.time_steps(clock.step(1), clock.step(1), 10.0)
    assert pairs == precision.MAX_PAIRS
    _, _, pairs = precision.time_steps(clock.step(400), clock.step(450), 0.2)
    assert pairs == 1  # a first pair far past the budget: no second one


def test_second_call_reads_the_cache_and_another_machine_measures_again(clock, tmp_path,
                                                                         monkeypatch):
    calls: list[str] = []
    first = precision.measure("shape A", counting(clock, 10, 50, calls), tmp_path)
    assert calls == ["make"] and not first.bf16 and first.speedup == pytest.approx(0.2)
    again = precision.measure("shape A", counting(clock, 50, 10, calls), tmp_path)
    assert calls == ["make"] and again == first  # read from the file, not timed
    assert precision.cached(tmp_path) == {first.name: first}
    other = precision.measure("shape B", counting(clock, 50, 10, calls), tmp_path)
    assert calls == ["make", "make"] and other.bf16  # another shape is its own probe

    machine = precision.machine()
    monkeypatch.setattr(precision, "machine", lambda: {**machine, "torch": "9.9.9"})
    assert precision.cached(tmp_path) == {}
    newer = precision.measure("shape A", counting(clock, 50, 10, calls), tmp_path)
    assert calls == ["make"] * 3 and newer.bf16
    files = sorted(tmp_path.glob("precision-*.json"))
    assert len(files) == 2
    kept = json.loads(precision.cache_file(tmp_path).read_text())
    assert kept["machine"]["torch"] == "9.9.9" and list(kept["probes"]) == [newer.name]


def test_the_thread_count_is_part_of_the_name(clock, tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(precision.torch, "get_num_threads", lambda: 2)
    two = precision.measure("shape", counting(clock, 10, 50, calls), tmp_path)
    monkeypatch.setattr(precision.torch, "get_num_threads", lambda: 1)
    one = precision.measure("shape", counting(clock, 10, 50, calls), tmp_path)
    assert (two.name, one.name) == ("shape threads=2", "shape threads=1")
    assert calls == ["make", "make"]


def test_figures_from_a_busy_machine_never_pick_bf16_and_are_retaken(clock, tmp_path,
                                                                       monkeypatch):
    cores = precision.os.cpu_count()
    calls: list[str] = []
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    busy = precision.measure("shape", counting(clock, 50, 10, calls), tmp_path)
    assert busy.speedup == pytest.approx(5.0) and busy.busy and not busy.bf16
    assert "busy" in busy.line() and busy.line().endswith("-> fp32")
    precision.measure("shape", counting(clock, 50, 10, calls), tmp_path)
    assert calls == ["make"]  # still busy: the figures stand
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (float(cores), 0.0, 0.0))
    quiet = precision.measure("shape", counting(clock, 50, 10, calls), tmp_path)
    assert calls == ["make", "make"] and not quiet.busy and quiet.bf16
    assert precision.measure("shape", counting(clock, 50, 10, calls), tmp_path) == quiet


def test_short_steps_are_timed_over_several_calls(clock):
    calls = {"fp32": 0, "bf16": 0}

    def step(name, ms):
        def run():
            calls[name] += 1
            clock.now += ms / 1000
        return run

    fp32_ms, bf16_ms, pairs = precision.time_steps(step("fp32", 0.6), step("bf16", 3), 1.0)
    assert (fp32_ms, bf16_ms, pairs) == (pytest.approx(0.6), pytest.approx(3), 1)
    # one warm-up call each, then samples of at least MIN_SAMPLE_MS (10 ms)
    assert calls == {"fp32": 1 + 17, "bf16": 1 + 4}


def test_an_unwritable_cache_still_gives_a_verdict(clock, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    calls: list[str] = []
    probe = precision.measure("shape", counting(clock, 50, 10, calls), blocker)
    assert probe.bf16 and calls == ["make"]


def test_report_lists_the_figures(clock, tmp_path):
    assert "none yet" in precision.report(tmp_path)
    precision.measure("train d=8", counting(clock, 30, 10, []), tmp_path)
    text = precision.report(tmp_path)
    assert precision.machine()["cpu"] in text and ">= 1.15x" in text
    assert "train d=8 threads=" in text and "fp32 30.0 ms, bf16 10.0 ms" in text
    assert "bf16 at 3.00x" in text and text.endswith("-> bf16")


def test_report_shows_the_newest_probes_and_counts_the_rest(clock, tmp_path):
    for name in ("a", "b", "c"):
        precision.measure(f"train {name}", counting(clock, 30, 10, []), tmp_path)
    lines = precision.report(tmp_path, newest=2).splitlines()
    assert len(lines) == 4 and lines[-1] == "  ... and 1 older probes, in the cache file"
    assert len(precision.report(tmp_path).splitlines()) == 4  # all three, no tail line


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "c"))
    assert precision.default_cache_dir() == tmp_path / "c"
    assert precision.cache_file().parent == tmp_path / "c"
    monkeypatch.delenv("RECSYS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert precision.default_cache_dir() == tmp_path / "x" / "recsys"
