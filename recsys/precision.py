"""Precision by measurement: time fp32 against bf16 once per machine and remember the verdict.

Whether bf16 pays on a CPU cannot be read from its flags: bf16 autocast ran at 1.6x fp32 on an
AMD EPYC with AVX-512 BF16 and no AMX, at 0.86-0.93x on an AMX Xeon held to AVX-512 BF16, and
at 0.08-0.15x on AVX2-only CPUs, where it is emulated. So ``precision=auto`` times a few steps
of the real work in both precisions, interleaved so that a busy neighbour slows both alike,
and picks bf16 only when it is at least ``MIN_SPEEDUP`` times faster, on a machine that was not
busy. The figures are kept in a small JSON file per machine (CPU model, instruction sets, torch
version), so the probe runs once per machine and shape: ``recsys status`` prints them.

The callers (``recsys.training.precision`` for a training step, ``recsys.scoring.topk`` for
the top-K's first stage) say what to time; this module times, decides and caches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from recsys.files import file_lock

log = logging.getLogger(__name__)

# bf16 must be this much faster to be chosen: below it the gain is within what a busy
# neighbour does to a one-second measurement, and fp32 is the exact, always-safe choice.
MIN_SPEEDUP = 1.15
# Timed steps (after one warm-up step each) stop once this many seconds are spent ...
PROBE_SECONDS = 1.0
MIN_PAIRS, MAX_PAIRS = 2, 8
# ... or after one pair when the answer is already plain (emulated bf16 is 7-12x slower).
CLEAR_RATIO = 2.0
# A timed sample repeats a step until this long has passed: one call of a sub-millisecond
# step measures the scheduler, not the step.
MIN_SAMPLE_MS = 10.0


def default_cache_dir() -> Path:
    """Folder of the probe's cache.

    ``$RECSYS_CACHE_DIR``, else ``$XDG_CACHE_HOME/recsys``, else ``~/.cache/recsys``: the
    figures are a fact of the machine, not of a data home (tests make many data homes).
    """
    if folder := os.environ.get("RECSYS_CACHE_DIR"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recsys"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """What a verdict holds for: the CPU and its vector units, and the torch build.

    Virtual machines often report a bare "AMD EPYC" for CPUs with and without AVX-512 BF16,
    so the instruction sets torch sees are part of the key.
    """
    return {"cpu": _cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(),
            "avx512_bf16": str(torch.cpu._is_avx512_bf16_supported()),
            "amx": str(torch.cpu._is_amx_tile_supported()), "torch": torch.__version__}


def cache_file(folder: Path | None = None) -> Path:
    """The cache file of this machine: ``precision-<hash of machine()>.json``."""
    key = hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:12]
    return (folder or default_cache_dir()) / f"precision-{key}.json"


@dataclass(frozen=True)
class Probe:
    """One measured comparison: the median time of one step in each precision."""

    name: str  # what was timed, with its shape and thread count
    fp32_ms: float
    bf16_ms: float
    pairs: int  # timed steps per precision
    load: float  # 1-minute load average when measured (a busy machine blurs the figures)
    measured_at: str
    # What the two times are of: fp32 against bf16 unless the caller says otherwise (the top-K
    # also times an int8 first stage against whichever stage it would use without).
    base: str = "fp32"
    low: str = "bf16"

    @property
    def speedup(self) -> float:
        """bf16's speed relative to fp32 (above 1: bf16 is faster)."""
        return self.fp32_ms / self.bf16_ms

    @property
    def busy(self) -> bool:
        """Timed under a load above the core count.

        Processes that each use every core slow each other far beyond their share (a step that
        took 40-80 ms on one thread took 2 s on two, beside four such processes on 2 cores),
        and the ratio says little: such figures never choose bf16, and are timed again once
        the load is lower.
        """
        return self.load > (os.cpu_count() or 1)

    @property
    def bf16(self) -> bool:
        """The lower precision (``low``, bf16 unless said) is chosen.

        Chosen: clearly faster, and measured on a machine that was not busy.
        """
        return self.speedup >= MIN_SPEEDUP and not self.busy

    def line(self) -> str:
        choice = self.low if self.bf16 else self.base
        busy = (f", busy: {self.base} until retaken on a quieter machine" if self.busy else "")
        return (f"{self.name}: {self.base} {self.fp32_ms:.1f} ms, {self.low} {self.bf16_ms:.1f} "
                f"ms per step ({self.low} at {self.speedup:.2f}x, {self.pairs} steps each, load "
                f"{self.load:.1f}{busy}, {self.measured_at}) -> {choice}")

    def figures(self, prefix: str) -> dict[str, float]:
        """Numbers for a tracking run: ``<prefix>fp32_ms``, ``bf16_ms``, ``bf16_speedup``."""
        return {f"{prefix}fp32_ms": self.fp32_ms, f"{prefix}bf16_ms": self.bf16_ms,
                f"{prefix}bf16_speedup": self.speedup}


def cached(folder: Path | None = None) -> dict[str, Probe]:
    """Every probe measured on this machine (with this torch), by name."""
    try:
        raw = json.loads(cache_file(folder).read_text())
        return {name: Probe(**p) for name, p in raw.get("probes", {}).items()}
    except (OSError, ValueError, TypeError):
        return {}


def _store(probe: Probe, folder: Path | None) -> None:
    path = cache_file(folder)
    probes = {name: asdict(p) for name, p in cached(folder).items()} | {probe.name: asdict(probe)}
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"machine": machine(), "probes": probes}, indent=1))
    os.replace(tmp, path)


def _sample(step: Callable[[], object]) -> float:
    """Milliseconds per call of ``step``, over at least ``MIN_SAMPLE_MS``."""
    calls, t0 = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = (time.perf_counter() - t0) * 1000
        if elapsed >= MIN_SAMPLE_MS:
            return elapsed / calls


def time_steps(fp32_step: Callable[[], object], bf16_step: Callable[[], object],
               seconds: float = PROBE_SECONDS) -> tuple[float, float, int]:
    """Median milliseconds of one step in each precision, and the number of timed pairs.

    One warm-up step each (kernel selection, allocations), then alternating steps, so that
    other processes' load falls on both, until ``seconds`` have passed: at least ``MIN_PAIRS``
    pairs, unless the first already differs by ``CLEAR_RATIO`` or ran past twice the time.
    """
    t_end = time.perf_counter() + seconds
    fp32_step(), bf16_step()
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for pair in range(MAX_PAIRS):
        for name, step in (("fp32", fp32_step), ("bf16", bf16_step)):
            times[name].append(_sample(step))
        ratio = times["fp32"][-1] / times["bf16"][-1]
        now = time.perf_counter()
        if pair == 0 and (not 1 / CLEAR_RATIO < ratio < CLEAR_RATIO or now >= t_end + seconds):
            break  # plain already, or steps so slow that a second pair would overrun
        if pair + 1 >= MIN_PAIRS and now >= t_end:
            break
    return statistics.median(times["fp32"]), statistics.median(times["bf16"]), len(times["fp32"])


def _usable(probe: Probe | None) -> Probe | None:
    """A cached probe, unless it was timed on a busy machine and this one is no longer busy."""
    if probe is not None and probe.busy and os.getloadavg()[0] <= (os.cpu_count() or 1):
        return None
    return probe


Steps = tuple[Callable[[], object], Callable[[], object]]


def _timed(name: str, make_steps: Callable[[], Steps], seconds: float,
           kinds: tuple[str, str]) -> Probe:
    fp32_ms, bf16_ms, pairs = time_steps(*make_steps(), seconds)
    return Probe(name, fp32_ms, bf16_ms, pairs, os.getloadavg()[0],
                 dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), *kinds)


def measure(name: str, make_steps: Callable[[], Steps], folder: Path | None = None,
            seconds: float = PROBE_SECONDS, kinds: tuple[str, str] = ("fp32", "bf16")) -> Probe:
    """The cached probe called ``name`` on this machine, timed now if there is none.

    ``make_steps()`` builds the ``(fp32_step, bf16_step)`` pair to time; it is called only
    when nothing is cached. ``kinds`` names the two steps when they are not fp32 and bf16.
    The name gets this process's thread count appended: a verdict holds for one thread count.
    A file lock keeps two processes from timing at once (each would slow the other). When the
    cache cannot be written, or the lock is held for minutes, the figures are timed and used
    for this process only.
    """
    name = f"{name} threads={torch.get_num_threads()}"
    if (probe := _usable(cached(folder).get(name))) is not None:
        return probe
    path = cache_file(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_suffix(".lock"), timeout=120):
            # Another process may have measured it while we waited for the lock.
            if (probe := _usable(cached(folder).get(name))) is not None:
                return probe
            probe = _timed(name, make_steps, seconds, kinds)
            _store(probe, folder)
    except OSError as exc:  # a read-only or full cache folder, or a lock held too long
        log.warning("precision probe not cached in %s: %s", path, exc)
        probe = _timed(name, make_steps, seconds, kinds) if probe is None else probe
    log.info("precision probe %s", probe.line())
    return probe


def report(folder: Path | None = None, newest: int = 8) -> str:
    """What ``precision=auto`` measured on this machine (``recsys status``), newest first.

    The ``newest`` probes, a line each, then how many older ones the cache holds: the cache
    is per machine, so it also gathers the small shapes of every test run there.
    """
    path, probes = cache_file(folder), cached(folder)
    m = machine()
    head = (f"precision probes for {m['cpu']} ({m['isa']}, avx512_bf16={m['avx512_bf16']}, "
            f"amx={m['amx']}), torch {m['torch']}; bf16 needs >= {MIN_SPEEDUP:.2f}x")
    if not probes:
        return (f"{head}: none yet (measured by the first training or scoring with "
                f"precision=auto; cache {path})")
    recent = sorted(probes.values(), key=lambda p: p.measured_at, reverse=True)
    lines = [f"{head} ({path}):", *(f"  {p.line()}" for p in recent[:newest])]
    if len(recent) > newest:
        lines.append(f"  ... and {len(recent) - newest} older probes, in the cache file")
    return "\n".join(lines)
