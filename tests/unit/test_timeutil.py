from recsys import timeutil
from recsys.timeutil import LapClock, human_age


def test_lap_clock_times_each_step_from_the_previous_lap_and_adds_up_repeats(monkeypatch):
    ticks = iter([10.0, 10.5, 12.0, 12.25])
    monkeypatch.setattr(timeutil.time, "perf_counter", lambda: next(ticks))
    clock = LapClock()             # starts at 10.0
    clock.lap("extract")           # 10.5
    clock.lap("train")             # 12.0
    clock.lap("extract")           # 12.25: a second extract adds to the first
    assert clock.timings == {"extract": 0.75, "train": 1.5}


def test_human_age_reads_as_people_say_it():
    assert [human_age(s) for s in (42, 5400, 3 * 86400, 24_634_648)] == [
        "42 s", "1.5 h", "3.0 days", "285.1 days"]
