"""Thread budgets: the plan from a core count, a cgroup quota, the child's environment, and
that ``apply`` really sets torch's thread counts in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys import threads
from recsys.config import ThreadConfig, WaitPolicy
from recsys.threads import Budget, Job

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("cores", "expected"), [
    # cores: full_retrain, micro_batch, score, service, traffic
    (1, (1, 1, 1, 1, 1)),
    (2, (1, 1, 1, 1, 1)),  # every job one thread: a retrain beside an update fills 2 cores
    (4, (2, 1, 1, 1, 1)),
    (16, (10, 4, 2, 2, 1)),
])
def test_the_plan_from_a_core_count(cores, expected):
    cfg = ThreadConfig(cores=cores)
    got = tuple(threads.budget(job, cfg, environ={}).intra for job in
                (Job.full_retrain, Job.micro_batch, Job.score, Job.service, Job.traffic))
    assert got == expected
    # the jobs that may run together (retrain, update, service) never ask for more than the
    # cores, once there are enough cores to give each its own
    if cores >= 3:
        assert got[0] + got[1] + got[3] <= cores


def test_a_budget_holds_the_inter_op_count_and_the_wait_policy():
    assert threads.budget("micro_batch", ThreadConfig(cores=2), environ={}) == \
        Budget(1, 1, "PASSIVE")
    cfg = ThreadConfig(cores=8, interop=2, wait_policy=WaitPolicy.default)
    assert threads.budget(Job.full_retrain, cfg, environ={}) == Budget(5, 2, None)


def test_a_count_in_the_config_wins_then_the_environment_then_the_plan():
    cfg = ThreadConfig(cores=16)
    assert threads.budget(Job.full_retrain, cfg, environ={}).intra == 10
    assert threads.budget(Job.full_retrain, cfg, environ={"OMP_NUM_THREADS": "3"}).intra == 3
    assert threads.budget(Job.full_retrain, cfg, environ={"OMP_NUM_THREADS": "x"}).intra == 10
    pinned = ThreadConfig(cores=16, full_retrain=7)
    assert threads.budget(Job.full_retrain, pinned, environ={"OMP_NUM_THREADS": "3"}).intra == 7


def test_budgets_off_keep_torch_defaults():
    cfg = ThreadConfig(cores=4, enabled=False)
    assert threads.budget(Job.score, cfg, environ={"OMP_NUM_THREADS": "1"}) == Budget(4, 4, None)
    assert threads.env(Job.score, cfg) == {}
    assert threads.launcher_env(cfg) == {}


@pytest.mark.parametrize(("files", "quota"), [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     None),
    ({}, None),
])
def test_a_cgroup_cpu_quota_is_read_from_v1_or_v2(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads.cgroup_cpu_quota(tmp_path) == quota


def test_a_quota_caps_the_cores_and_rounds_down(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert threads.available_cores(tmp_path) == affinity  # no quota: the affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.available_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert threads.available_cores(tmp_path) == 1  # half a CPU still runs one thread


def test_the_child_environment_sizes_every_pool_and_sets_the_wait_policy():
    assert threads.env(Job.full_retrain, ThreadConfig(cores=16)) == {
        "OMP_NUM_THREADS": "10", "MKL_NUM_THREADS": "10", "OPENBLAS_NUM_THREADS": "10",
        "OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
    active = threads.env(Job.service, ThreadConfig(cores=16, wait_policy=WaitPolicy.active))
    assert active["OMP_WAIT_POLICY"] == "ACTIVE" and active["OMP_NUM_THREADS"] == "2"
    assert "OMP_WAIT_POLICY" not in threads.env(
        Job.service, ThreadConfig(wait_policy=WaitPolicy.default))
    # the worker's: the wait policy only, each flow sets its own counts
    assert threads.launcher_env(ThreadConfig()) == {"OMP_WAIT_POLICY": "PASSIVE",
                                                    "KMP_BLOCKTIME": "0"}


def test_the_module_imports_no_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, recsys.threads; "
                          "print('torch' in sys.modules)"], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


CHILD = """
import json, sys, torch
from recsys import threads
from recsys.config import ThreadConfig
cfg = ThreadConfig.model_validate_json(sys.argv[1])
before = torch.get_num_threads()
threads.apply(sys.argv[2], cfg)
threads.apply(sys.argv[2], cfg)  # twice: nothing breaks
torch.ones(64, 64) @ torch.ones(64, 64)
after_work = threads.apply(sys.argv[2], cfg.model_copy(update={"interop": 3}))
print(json.dumps({"before": before, "intra": torch.get_num_threads(),
                  "inter": torch.get_num_interop_threads(), "budget_inter": after_work.inter}))
"""


def _child(cfg: ThreadConfig, job: Job, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in (*threads.COUNT_VARS, "OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
    out = subprocess.run([sys.executable, "-c", CHILD, cfg.model_dump_json(), job.value],
                         env={**clean, **env}, capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_apply_sets_torch_threads_in_a_child_launched_with_the_env():
    # one retrain thread (torch caps $OMP_NUM_THREADS at the cores it sees, so a test that
    # must pass on any machine asks for fewer than the default, which is every core)
    cfg = ThreadConfig(cores=2)
    got = _child(cfg, Job.full_retrain, threads.env(Job.full_retrain, cfg))
    assert got["before"] == 1  # the environment sized the pool before apply ran
    assert got["intra"] == 1
    # inter-op is set once, before parallel work: the second count is refused, quietly
    assert got["inter"] == 1 and got["budget_inter"] == 3


def test_apply_without_the_env_still_sets_the_counts_and_off_changes_nothing():
    got = _child(ThreadConfig(cores=16), Job.full_retrain, {})
    assert got["intra"] == 10 and got["inter"] == 1  # set_num_threads goes past the cores
    cores = threads.available_cores()
    off = _child(ThreadConfig(enabled=False), Job.full_retrain, {})
    assert off["intra"] == off["before"] == cores
