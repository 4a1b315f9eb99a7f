"""Thread budgets: how many cores each job of the stack may use, set before torch starts work.

Why: the stack puts an every-minute micro-batch update, batch scoring, the real-time service
and a nightly (or hand-started) full retrain on one machine. PyTorch gives every process one
intra-op thread per core, and its OpenMP threads spin while they wait for work. Two such
processes on 2 cores each kept 3% of their solo training speed, where a fair share is 50%
(docs/compute.md has the figures). A budget gives each job a thread count that, summed over
the jobs that may run at once, fits the cores, and makes waiting threads sleep.

The plan, from the cores this process may use (``available_cores``):

* the service keeps ``max(1, cores // 8)`` threads for its model work, whatever else runs;
* the micro-batch update gets ``max(1, cores // 4)``, batch scoring ``max(1, cores // 8)``;
* the full retrain gets the rest: ``cores - service - micro_batch``, at least 1;
* the live traffic (or simulator) gets 1: it parses and writes, it runs no model.

On 2 cores every job gets 1 thread; on 16, the retrain 10, the update 4, scoring 2, the
service 2. A count set in :class:`~recsys.config.ThreadConfig` wins over the plan, and
``$OMP_NUM_THREADS`` (a launcher's or a person's explicit choice) wins over the plan too.

Three ways in, because the OpenMP wait policy is read once, when torch loads its OpenMP
library, and cannot be changed later from Python:

* :func:`env`: the variables for launching a child process that runs one job
  (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``OMP_WAIT_POLICY``);
* :func:`launcher_env`: the wait policy alone, for a process that starts jobs of several
  kinds (the Prefect worker), each of which then calls :func:`apply`;
* :func:`apply`: in-process thread counts (``torch.set_num_threads``,
  ``torch.set_num_interop_threads``), called at the start of a job.

Library code never writes ``os.environ``: whoever launches a process passes these variables.
This module imports torch only inside :func:`apply`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from recsys.config import ThreadConfig, WaitPolicy

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Variables that size the thread pools of the libraries a job loads: torch's OpenMP and MKL,
# numpy's OpenBLAS. ``apply`` sets torch's from Python; the others exist only as variables.
COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Job(StrEnum):
    """The kinds of process that share the machine; each has its own budget."""

    full_retrain = "full_retrain"
    micro_batch = "micro_batch"
    score = "score"
    service = "service"
    traffic = "traffic"  # the stack's live traffic, the simulator, a replay


@dataclass(frozen=True)
class Budget:
    """What one job may use: intra-op threads, inter-op threads, the OpenMP wait policy.

    ``omp_wait_policy`` is ``"PASSIVE"`` or ``"ACTIVE"``, or None for the OpenMP library's
    own default.
    """

    intra: int
    inter: int
    omp_wait_policy: str | None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup may use (quota / period), or None when it sets no quota.

    Containers often give a process a CPU quota below the cores it can see: threads beyond
    the quota are throttled in turns, which is the contention a budget avoids. cgroup v2
    keeps it in ``cpu.max`` ("max 100000" = none, "150000 100000" = 1.5 CPUs), v1 in
    ``cpu.cfs_quota_us`` (-1 = none) and ``cpu.cfs_period_us``.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota = int((root / folder / "cpu.cfs_quota_us").read_text())
            period = int((root / folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def available_cores(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota.

    A fractional quota rounds down (1.5 CPUs: 1 thread), never below 1: a thread the quota
    cannot keep running only waits for its turn.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores)


def plan(cores: int) -> dict[Job, int]:
    """Intra-op threads of each job on a machine of ``cores`` cores (see the module's plan)."""
    service = max(1, cores // 8)
    micro_batch = max(1, cores // 4)
    return {Job.full_retrain: max(1, cores - service - micro_batch),
            Job.micro_batch: micro_batch, Job.score: max(1, cores // 8),
            Job.service: service, Job.traffic: 1}


def _env_threads(environ: dict[str, str] | os._Environ) -> int | None:
    try:
        value = int(environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def budget(job: Job | str, config: ThreadConfig | None = None,
           environ: dict[str, str] | None = None) -> Budget:
    """The budget of ``job``: the config's count, else ``$OMP_NUM_THREADS``, else the plan.

    ``environ`` is the process environment to read (default ``os.environ``). With the budgets
    off, the job keeps torch's defaults: every core for both pools, the library's wait policy.
    """
    config = config or ThreadConfig()
    job = Job(job)
    cores = config.cores or available_cores()
    if not config.enabled:
        return Budget(cores, cores, None)
    intra = getattr(config, job.value) or _env_threads(
        os.environ if environ is None else environ) or plan(cores)[job]
    policy = None if config.wait_policy is WaitPolicy.default else config.wait_policy.upper()
    return Budget(intra, config.interop, policy)


def _policy_env(policy: str | None) -> dict[str, str]:
    if policy is None:
        return {}
    # KMP_BLOCKTIME is the same switch for Intel's OpenMP (some torch builds use it).
    return {"OMP_WAIT_POLICY": policy, "KMP_BLOCKTIME": "0" if policy == "PASSIVE" else "200"}


def env(job: Job | str, config: ThreadConfig | None = None) -> dict[str, str]:
    """Variables for launching a child process that runs ``job`` (empty with budgets off).

    Pass them with the rest of the environment (``env={**os.environ, **threads.env(...)}``):
    the OpenMP library reads them once, as torch loads it, so only a launcher can set the
    wait policy. The counts are the budget's, so a child that calls :func:`apply` agrees.
    """
    config = config or ThreadConfig()
    if not config.enabled:
        return {}
    b = budget(job, config, environ={})
    return {**dict.fromkeys(COUNT_VARS, str(b.intra)), **_policy_env(b.omp_wait_policy)}


def launcher_env(config: ThreadConfig | None = None) -> dict[str, str]:
    """The wait policy alone, for a process that starts jobs of several kinds.

    The Prefect worker starts every flow run as a child with its own environment; each flow
    then sets its own thread counts with :func:`apply`, but the wait policy must already be
    in the environment when the flow run's torch loads.
    """
    config = config or ThreadConfig()
    if not config.enabled or config.wait_policy is WaitPolicy.default:
        return {}
    return _policy_env(config.wait_policy.upper())


def apply(job: Job | str, config: ThreadConfig | None = None) -> Budget:
    """Set this process's torch thread counts to the budget of ``job``; returns the budget.

    Safe to call more than once. The inter-op count can be set only before torch has started
    inter-op work (and once): later calls keep what is there, and say so in the debug log.
    With the budgets off, nothing changes.
    """
    import torch

    config = config or ThreadConfig()
    b = budget(job, config)
    if not config.enabled:
        return b
    if torch.get_num_threads() != b.intra:
        torch.set_num_threads(b.intra)
    if torch.get_num_interop_threads() != b.inter:
        try:
            torch.set_num_interop_threads(b.inter)
        except RuntimeError as exc:  # parallel work has started, or it was set before
            log.debug("inter-op threads stay at %d: %s", torch.get_num_interop_threads(), exc)
    if b.omp_wait_policy and os.environ.get("OMP_WAIT_POLICY", "").upper() != b.omp_wait_policy:
        log.debug("%s runs without OMP_WAIT_POLICY=%s: its launcher did not pass "
                  "recsys.threads.env()", Job(job).value, b.omp_wait_policy)
    log.debug("%s: %d intra-op, %d inter-op threads", Job(job).value, torch.get_num_threads(),
              torch.get_num_interop_threads())
    return b
