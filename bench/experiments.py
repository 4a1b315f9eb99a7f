"""Online experiments: the A/A calibration, and interleaving's sensitivity against an A/B split.

Both measure the experiment machinery of issue 35 on the small synthetic world's users
(``recsys.evaluation.experiment_sim``: the world's ground truth decides clicks under a
position bias; decisions by the very ``judge`` the every-minute flow uses, looked at every
simulated minute).

Three user populations, each printed with its label:
  * "users alike": every one of the world's users asks equally often and clicks as the
    world's tastes say (users' click-through rates differ little: coefficient of variation
    0.18);
  * "activity as generated": a user asks in proportion to their number of events in the
    generated data (the world's own spread: lognormal sigma 1, as real users differ; see
    ``experiment_sim.Population``);
  * "... and propensity": besides, each user's clicks scale by a lognormal click propensity
    (``--propensity-sigma``, default 0.5, mean 1): an assumption, since the world has no such
    trait and the shared datasets have no impressions to measure it on.
``--activity-sigma`` adds lognormal spread on top of the generated activity (default 0).

A/A calibration. ``--runs`` experiments per mode (interleave and ab) between two models of the
same quality (Ranker noise ``--control-noise``, each with its own errors), each judged every
minute with ExperimentConfig's defaults (alpha, effect_scale, min_minutes, min_users,
guardrail on purchases, max_minutes 120). Any promote or stop is a false positive; printed as
a rate with its 95% Wilson interval against alpha, split by reason. Done for the most and the
least heterogeneous populations (heavy-tailed users are where a clustered normal
approximation is weakest).

Sensitivity. One known difference: a control ranker with noise ``--control-noise`` against a
treatment with ``--treatment-noise`` (each model's true CTR@k printed, with the relative
lift and the true interleaving margin). ``--seeds`` experiments per design and population,
each until it decides or reaches ``--cap-minutes``; printed: impressions to a decision
(median and quartiles; runs that hit the cap are censored, counted, and their value is "more
than the cap"), the decisions taken, and the ratio A/B / interleaving of the medians, all in
the same run. Then the fairness of the mixing scale: tau is ``effect_scale`` times the
control's CTR in A/B and ``effect_scale`` as a preference margin in interleaving; the bench
prints tau over each design's true effect, and repeats the comparison on the users alike with
tau set to each design's true effect (the best-tuned mixture for each), so the ratio cannot be
an artefact of one design's tau suiting it better.

Single process, vectorised (one minute's requests at a time): on 2 shared cores a pool of
workers would only fight its neighbours.

    .venv/bin/python bench/experiments.py            # full: 200 A/A runs per mode and population,
                                                     # 30 seeds per design (~10 min on 2 cores)
    .venv/bin/python bench/experiments.py --quick    # building: ~1 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from recsys.config import ExperimentConfig, ExperimentMode
from recsys.data.synthetic import generate, preset
from recsys.evaluation.experiment_decision import END, PROMOTE, STOP
from recsys.evaluation.experiment_sim import (
    Outcome,
    Population,
    Ranker,
    Traffic,
    event_counts,
    run,
    true_ctr,
    true_margin,
)

MODES = (ExperimentMode.interleave, ExperimentMode.ab)


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound near 0, unlike the Wald one).

    >>> [round(x, 4) for x in wilson(0, 200)]
    [0.0, 0.0188]
    """
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Users:
    """One population: who asks how often (``pop.activity``) and how they click (``traffic``)."""

    label: str
    pop: Population
    traffic: Traffic


def calibrate(pop: Population, ranker: Ranker, runs: int, traffic: Traffic,
              cfg: ExperimentConfig) -> None:
    """A/A experiments in both modes; prints the false-positive rate against alpha."""
    for mode in MODES:
        mcfg = replace_cfg(cfg, mode=mode)
        t0 = time.perf_counter()
        # Two models of equal quality, each with errors of its own (identical copies would
        # interleave into lists that credit no one, a null too easy to pass).
        outcomes = [run(pop, mcfg, ranker, ranker, seed=s, traffic=traffic)
                    for s in range(runs)]
        wall = time.perf_counter() - t0
        reasons = [o.verdict.reason for o in outcomes]
        decisions = [o.verdict.decision for o in outcomes]
        promote = decisions.count(PROMOTE)
        stop_primary = sum(d == STOP and "primary" in r for d, r in zip(decisions, reasons,
                                                                         strict=True))
        stop_guard = decisions.count(STOP) - stop_primary
        fp = promote + stop_primary + stop_guard
        lo, hi = wilson(fp, runs)
        lo1, hi1 = wilson(promote + stop_primary, runs)
        if fp / runs <= mcfg.alpha:
            verdict = f"at or below alpha {mcfg.alpha:g}"
        elif lo <= mcfg.alpha:
            verdict = f"above alpha {mcfg.alpha:g}, which is inside the interval"
        else:
            verdict = f"ABOVE alpha {mcfg.alpha:g}, beyond the interval"
        print(f"  {mode.value:<10} {runs} A/A runs, looked at every minute for up to "
              f"{mcfg.max_minutes:g} min: false positives {fp} = {fp / runs:.3f} "
              f"[95% CI {lo:.3f}, {hi:.3f}], {verdict}; "
              f"promote {promote}, stop on primary {stop_primary}, stop on guardrail "
              f"{stop_guard}, end {decisions.count(END)}; primary test alone "
              f"{(promote + stop_primary) / runs:.3f} [{lo1:.3f}, {hi1:.3f}]  ({wall:.0f} s)",
              flush=True)


def replace_cfg(cfg: ExperimentConfig, **changes) -> ExperimentConfig:
    return cfg.model_copy(update=changes)


def impressions_to_decide(pop: Population, cfg: ExperimentConfig, control: Ranker,
                          treatment: Ranker, seeds: range,
                          traffic: Traffic) -> list[Outcome]:
    return [run(pop, cfg, control, treatment, seed=s, traffic=traffic) for s in seeds]


def quartiles(outcomes: list[Outcome], cap: float) -> tuple[list[float], int]:
    """Impressions at the 25th, 50th, 75th percentile (inf: beyond the cap), and censored runs.

    Every censored run needed more than the cap, more than any run that decided, so the
    order statistics are exact where they fall below the cap (no survival model needed).
    """
    censored = [not o.verdict.final or o.verdict.decision == END for o in outcomes]
    values = np.sort([math.inf if c else o.impressions
                      for o, c in zip(outcomes, censored, strict=True)])
    n = len(values)
    qs = []
    for q in (0.25, 0.5, 0.75):
        pos = q * (n - 1)
        lo_v, hi_v = values[int(math.floor(pos))], values[int(math.ceil(pos))]
        qs.append(math.inf if math.isinf(hi_v) else lo_v + (hi_v - lo_v) * (pos - math.floor(pos)))
    return qs, sum(censored)


def fmt(x: float, cap: float) -> str:
    return f">{cap:,.0f}" if math.isinf(x) else f"{x:,.0f}"


def compare(pop: Population, cfgs: dict[ExperimentMode, ExperimentConfig], control: Ranker,
            treatment: Ranker, seeds: range, traffic: Traffic, label: str) -> float:
    """Both designs on the same seeds; prints impressions to decide and the ratio of medians."""
    medians = {}
    for mode in MODES:
        cfg = cfgs[mode]
        cap = cfg.max_minutes * traffic.requests_per_minute * traffic.k
        t0 = time.perf_counter()
        outcomes = impressions_to_decide(pop, cfg, control, treatment, seeds, traffic)
        wall = time.perf_counter() - t0
        qs, censored = quartiles(outcomes, cap)
        medians[mode] = qs[1]
        decisions = [o.verdict.decision for o in outcomes]
        at_floor = sum(o.verdict.decision in (PROMOTE, STOP) and o.minutes <= cfg.min_minutes
                       for o in outcomes)
        print(f"  {label:<40} {mode.value:<10} impressions to decide: median "
              f"{fmt(qs[1], cap)} (quartiles {fmt(qs[0], cap)} - {fmt(qs[2], cap)}); "
              f"censored at the cap ({cap:,.0f}) {censored}/{len(outcomes)}; "
              f"promote {decisions.count(PROMOTE)}, stop {decisions.count(STOP)}; "
              f"decided at min_minutes {at_floor}  ({wall:.0f} s)", flush=True)
    ab, il = medians[ExperimentMode.ab], medians[ExperimentMode.interleave]
    if math.isinf(ab):
        ab_cap = cfgs[ExperimentMode.ab].max_minutes * traffic.requests_per_minute * traffic.k
        shown = f"> {ab_cap / il:.1f} (the A/B median is censored at the cap: a lower bound)"
    else:
        shown = f"{ab / il:.1f}"
    print(f"  {label:<40} ratio A/B / interleaving (medians): {shown}", flush=True)
    return ab / il


def _top_share(activity: np.ndarray, share: float = 0.1) -> float:
    top = np.sort(activity)[::-1][: max(1, int(len(activity) * share))]
    return float(top.sum() / activity.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="building: 30 A/A runs, 6 seeds, caps of 40 and 300 minutes")
    ap.add_argument("--preset", default="small", help="synthetic world (default small)")
    ap.add_argument("--runs", type=int, help="A/A runs per mode and population (default 200)")
    ap.add_argument("--seeds", type=int, help="sensitivity runs per design (default 30)")
    ap.add_argument("--aa-minutes", type=float,
                    help="A/A max_minutes (default: ExperimentConfig's, 120)")
    ap.add_argument("--cap-minutes", type=float,
                    help="sensitivity max_minutes: the cap (default 1000)")
    ap.add_argument("--control-noise", type=float, default=0.1)
    ap.add_argument("--treatment-noise", type=float, default=0.05)
    ap.add_argument("--activity-sigma", type=float, default=0.0,
                    help="lognormal spread on top of the generated activity (default 0)")
    ap.add_argument("--propensity-sigma", type=float, default=0.5,
                    help="lognormal spread of users' click propensity, third population")
    ap.add_argument("--requests-per-minute", type=int, default=Traffic().requests_per_minute)
    ap.add_argument("--skip-aa", action="store_true")
    ap.add_argument("--skip-oracle", action="store_true",
                    help="skip the rerun with each design's tau set to its true effect")
    args = ap.parse_args()
    runs = args.runs or (30 if args.quick else 200)
    seeds = range(10_000, 10_000 + (args.seeds or (6 if args.quick else 30)))
    defaults = ExperimentConfig()
    aa_cfg = replace_cfg(defaults, max_minutes=args.aa_minutes or (40 if args.quick
                                                                  else defaults.max_minutes))
    cap = args.cap_minutes or (300 if args.quick else 1000)

    t_start, c_start = time.perf_counter(), cpu_seconds()
    print(f"{cpu()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{dt.date.today().isoformat()}")
    data = generate(preset(args.preset))
    world = data.world
    alike = Population(world)
    generated = alike.with_activity(event_counts(world, data.events["user_id"].to_numpy()))
    plain = Traffic(requests_per_minute=args.requests_per_minute,
                    activity_sigma=args.activity_sigma)
    spread = float(np.std(np.log(generated.activity[generated.activity > 0])))
    tag = f" x lognormal({args.activity_sigma:g})" if args.activity_sigma else ""
    populations = [
        Users("users alike", alike, replace(plain, activity_sigma=0.0)),
        Users(f"activity as generated{tag}", generated, plain),
        Users(f"activity as generated{tag}, propensity {args.propensity_sigma:g}", generated,
              replace(plain, propensity_sigma=args.propensity_sigma)),
    ]
    print(f"world {args.preset}: {world.n_users:,} users, {world.n_items:,} items; "
          f"{plain.requests_per_minute} requests a minute of k={plain.k}, position bias eta "
          f"{plain.eta:g}; generated activity: log events per user sd {spread:.2f}, the "
          f"busiest tenth of users {_top_share(generated.activity):.0%} of events")
    print(f"ExperimentConfig defaults: alpha {defaults.alpha:g}, effect_scale "
          f"{defaults.effect_scale:g}, min_minutes {defaults.min_minutes:g}, min_users "
          f"{defaults.min_users}, guardrail {defaults.guardrail}")

    control, treatment = Ranker(args.control_noise), Ranker(args.treatment_noise)
    if not args.skip_aa:
        print(f"\nA/A calibration (two Ranker(noise={args.control_noise:g}), errors of their "
              f"own; set: max_minutes {aa_cfg.max_minutes:g}, mode; all else default)")
        for users in (populations[0], populations[-1]):
            print(f" {users.label}")
            calibrate(users.pop, control, runs, users.traffic, aa_cfg)

    ctr_c = true_ctr(alike, control, requests=20_000, traffic=plain)
    ctr_t = true_ctr(alike, treatment, requests=20_000, traffic=plain)
    lift = (ctr_t - ctr_c) / ctr_c
    print(f"\nSensitivity: control Ranker(noise={args.control_noise:g}) true CTR@{plain.k} "
          f"{ctr_c:.4f}, treatment Ranker(noise={args.treatment_noise:g}) {ctr_t:.4f} (users "
          f"alike): relative lift {lift:+.1%}; {len(seeds)} seeds per design; set: mode, "
          f"max_minutes {cap:g} (the cap); all else default")
    sens_cfg = {m: replace_cfg(defaults, mode=m, max_minutes=cap) for m in MODES}
    margins = {}
    for users in populations:
        margin, decided = true_margin(users.pop, control, treatment, requests=20_000,
                                      traffic=users.traffic)
        margins[users.label] = margin
        print(f" {users.label}: true interleaving margin {margin:+.4f} (preference share "
              f"{0.5 + margin / 2:.3f}, {decided:.0%} of requests decided); tau / effect: "
              f"A/B {defaults.effect_scale:g} / {lift:.4f} = {defaults.effect_scale / lift:.1f}, "
              f"interleaving {defaults.effect_scale:g} / {margin:.4f} = "
              f"{defaults.effect_scale / margin:.1f}")
        compare(users.pop, sens_cfg, control, treatment, seeds, users.traffic, users.label)
    if not args.skip_oracle:
        first = populations[0]
        oracle = {ExperimentMode.ab: replace_cfg(sens_cfg[ExperimentMode.ab], effect_scale=lift),
                  ExperimentMode.interleave: replace_cfg(sens_cfg[ExperimentMode.interleave],
                                                         effect_scale=margins[first.label])}
        print(f" fairness check, {first.label}, tau = each design's true effect "
              f"(A/B effect_scale {lift:.4f}, interleaving {margins[first.label]:.4f}):")
        compare(first.pop, oracle, control, treatment, seeds, first.traffic, "tau = true effect")
    print(f"\nwall {time.perf_counter() - t_start:.0f} s, CPU {cpu_seconds() - c_start:.0f} s, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
