"""Scoring speed: in-process latency, HTTP latency under an open-loop load, batch throughput.

Set-up: a synthetic store with a 100,000-item catalogue (with text), a champion trained
briefly (its quality is not the point), then:

1. in-process single-request latency of ``Scorer.recommend`` (50-item histories), p50/p99,
   for the served fp32 tower (traced), the same called op by op (eager), bf16 autocast of the
   user tower, and int8 dynamic quantization of its Linear layers, with each variant's
   NDCG@10 on held-out next items against fp32;
2. ``recsys serve`` in its own process, driven over loopback HTTP by an open-loop generator:
   requests are sent on a fixed schedule whatever the answers do (a dispatcher and a pool of
   keep-alive clients), and latency counts from the scheduled send time, so queueing shows up
   instead of being hidden by a closed loop; p50/p99
   at 200 requests/s, then rising rates until the server falls behind (saturation);
3. the same at 200 requests/s with an experiment running (an interleaving one, then an A/B
   one; a second briefly trained version as treatment), so both models are in memory and an
   interleaved request runs both: p99 against the champion alone's, same server;
4. interleaved requests through the batcher in process, beside a thread that holds the GIL half
   the time: the traced user tower against the eager one;
5. the top-K that serves against the exact fp32 product, for single users and for batches
   of 512, with its recall of the exact top 10;
6. batch throughput of ``score_users`` (users/s).

``--phases`` runs some of these only (``--home`` keeps the set-up for the next run).

    .venv/bin/python bench/serving.py                     # 100k items (~5 min set-up)
    .venv/bin/python bench/serving.py --items 20000       # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from loadgen import open_loop

from recsys import experiment_run
from recsys.config import (
    EvalConfig,
    ExperimentConfig,
    ImpressionConfig,
    IntakeConfig,
    Paths,
    ScoreConfig,
    TrackingConfig,
    TrainConfig,
)
from recsys.data.features import build_features
from recsys.data.ingest import ingest_frame
from recsys.data.synthetic import SyntheticConfig, generate
from recsys.registry.registry import Registry
from recsys.scoring.batch import score_users
from recsys.scoring.batching import RequestBatcher
from recsys.scoring.scorer import Scorer
from recsys.stack import free_port
from recsys.training.full_retrain import read_training_data, train
from recsys.training.gate import score_set


def prepare(home: Path, n_items: int, n_users: int) -> tuple[Paths, list[str]]:
    paths = Paths(root=home / "data", tracking_home=home / "tracking")
    data = generate(SyntheticConfig(n_users=n_users, n_items=n_items, mean_events_per_user=30,
                                    new_item_fraction=0.0, seed=2))
    users = sorted(data.events["user_id"].unique().tolist())[:2000]
    if Registry(paths, TrackingConfig()).champion() is not None:
        return paths, users  # prepared by an earlier run with --home
    ingest_frame(data.items, "items", kind="items", data_paths=paths)
    ingest_frame(data.events, "events", data_paths=paths)
    build_features(paths)
    result = train(paths, train_cfg=TrainConfig(max_epochs=1, max_steps_per_epoch=60,
                                                max_val_users=300, progress_bar=False),
                   eval_cfg=EvalConfig(), tracking_cfg=TrackingConfig())
    registry = Registry(paths, TrackingConfig())
    if registry.champion() is None:  # a brief model may lose to popularity: serve it anyway
        registry.promote(result.version, "bench: serve the briefly trained model")
    return paths, users


def machine() -> str:
    """The CPU the figures come from: lscpu's model name, cores, and the vector extensions."""
    try:
        info = dict(line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
            if ":" in line)
    except (OSError, subprocess.CalledProcessError):
        return f"CPU: {os.cpu_count()} cores (lscpu not available)"
    flags = set(info.get("Flags", "").split())
    vector = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                          "amx_tile", "amx_bf16") if f in flags]
    return (f"CPU: {info.get('Model name', '?').strip()}, {os.cpu_count()} cores "
            f"({' '.join(vector) or 'no AVX'})")


def start_service(paths: Paths, impressions: ImpressionConfig | None = None,
                  intake: IntakeConfig | None = None) -> tuple[subprocess.Popen, str]:
    """``recsys serve`` over ``paths`` in its own process (configs the CLI does not expose
    are passed through ``service.serve``); returns the process and its URL once healthy."""
    port = free_port()
    configs = json.dumps({"paths": paths.model_dump(mode="json"), "port": port,
                          "intake": (intake or IntakeConfig()).model_dump(mode="json"),
                          "impressions": (impressions or ImpressionConfig()).model_dump(
                              mode="json")})
    code = ("import json, sys\n"
            "from recsys.config import ImpressionConfig, IntakeConfig, Paths, ServeConfig\n"
            "from recsys.scoring.service import serve\n"
            "c = json.loads(sys.argv[1])\n"
            "serve(Paths(**c['paths']), ServeConfig(port=c['port']), "
            "intake=IntakeConfig(**c['intake']), impressions=ImpressionConfig(**c['impressions']))")
    env = {**os.environ, "RECSYS_TRACKING_HOME": str(paths.tracking_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen([sys.executable, "-c", code, configs], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the service exited with {server.returncode}")
        time.sleep(0.5)
    server.terminate()
    raise RuntimeError("the service did not become healthy in 5 minutes")


def stop_service(server: subprocess.Popen | None) -> None:
    if server is not None and server.poll() is None:
        server.terminate()
        server.wait(timeout=60)


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):.2f} ms, p99 {np.percentile(a, 99):.2f} ms"


def bf16_tower(scorer: Scorer) -> Scorer:
    """The user tower under bf16 autocast; the final product stays fp32 (SeqRec.score)."""
    variant = copy.copy(scorer)
    net = scorer.net

    class Autocast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(*args).float()

    variant.net = copy.deepcopy(net)  # a shallow copy would share (and so change) _modules
    variant.net.user = Autocast(variant.net.user)
    variant.traced = None  # the served graph was traced from the fp32 tower
    return variant


def int8_tower(scorer: Scorer) -> Scorer:
    variant = copy.copy(scorer)
    variant.net = copy.deepcopy(scorer.net)
    variant.net.user = torch.ao.quantization.quantize_dynamic(
        variant.net.user, {torch.nn.Linear}, dtype=torch.qint8)
    variant.traced = None
    return variant


def eager_tower(scorer: Scorer) -> Scorer:
    """The fp32 user tower called op by op from Python, as before it was traced."""
    variant = copy.copy(scorer)
    variant.traced = None
    return variant


def in_process(scorer: Scorer, histories: list[list[str]], n: int) -> list[float]:
    for h in histories[:20]:  # warm-up
        scorer.recommend([h], k=10)
    out = []
    for i in range(n):
        t = time.perf_counter()
        scorer.recommend([histories[i % len(histories)]], k=10)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def compare_top_k(scorer: Scorer, items: torch.Tensor, batch: int, repeats: int) -> None:
    """The top-K that serves against the exact fp32 product, in batches of ``batch`` users.

    What serves: a first stage (fp32 or bf16 as measured on this machine, int8 for batches
    up to ``ItemIndex.narrow_batch``) and an exact fp32 rescoring of its candidates.
    """
    index = scorer.catalogue
    stage = ("int8" if index.narrow is not None and batch <= index.narrow_batch
             else str(index.coarse.dtype).removeprefix("torch."))
    chunks = list(items.split(batch))

    def exact():
        return torch.cat([scorer.net.score(c, None, scorer.item_vectors).topk(10, dim=1).indices
                          for c in chunks])

    def served():
        return torch.cat([scorer.top_k(c, None, 10)[0] for c in chunks])

    timings = {}
    for label, fn in (("exact fp32", exact), (f"served ({stage} first)", served)):
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        timings[label] = (time.perf_counter() - t) / repeats * 1e3 / len(chunks)
        print(f"  {label:22s} {timings[label]:7.2f} ms a batch "
              f"({batch * 1e3 / timings[label]:,.0f} users/s)")
    truth = exact()
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10
                      for a, b in zip(served(), truth, strict=True)])
    exact_ms, served_ms = timings.values()
    print(f"  served is {exact_ms / served_ms:.2f}x faster; "
          f"recall of the exact top 10: {recall:.4f}")


def second_model(paths: Paths) -> str:
    """A second registered version (another brief training, another seed): the treatment."""
    registry = Registry(paths, TrackingConfig())
    champion = registry.champion().version
    other = [v.version for v in registry.versions() if v.version != champion]
    if other:
        return other[0]  # kept from an earlier run with --home
    result = train(paths, train_cfg=TrainConfig(max_epochs=1, max_steps_per_epoch=60, seed=7,
                                                max_val_users=300, progress_bar=False),
                   eval_cfg=EvalConfig(), tracking_cfg=TrackingConfig(), promote=False)
    return result.version


def experiment_phase(paths: Paths, url: str, users: list[str], seconds: float,
                     rate: int = 200) -> None:
    """The latency budget with two models in memory: p99 at ``rate``/s with the champion
    alone, then with an interleaving and an A/B experiment running, in turns, same server."""
    treatment = second_model(paths)
    print(f"\nHTTP at {rate}/s with an experiment running (version {treatment} as treatment; "
          f"both models loaded; all users in it):")
    alone = open_loop(url, users, rate, seconds)
    base = np.percentile(alone["latencies"], 99)
    print(f"  {'champion alone':22s} {percentiles(alone['latencies'])}, errors {alone['errors']}")
    for mode in ("interleave", "ab"):
        exp = experiment_run.start(paths, ExperimentConfig(treatment=treatment, mode=mode))
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the service follows the store every few s
                body = httpx.get(f"{url}/recommendations/{users[0]}", timeout=10).json()
                if body.get("experiment", {}).get("id") == exp.id:
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"the service did not pick up experiment {exp.id} in 60 s")
            r = open_loop(url, users, rate, seconds)
            p99 = np.percentile(r["latencies"], 99)
            print(f"  {mode + ' experiment':22s} {percentiles(r['latencies'])}, errors "
                  f"{r['errors']}; p99 {p99 / base:.2f}x the champion alone's")
        finally:
            experiment_run.stop(paths, exp.id, reason="bench: phase over")


def gil_phase(paths: Paths, rate: int = 200, seconds: float = 5.0, rounds: int = 3) -> None:
    """Interleaved requests through the batcher, in process, beside a thread that holds the GIL
    half the time (as the service's event loop does): the traced user tower against the eager
    one, alternated ``rounds`` times. Shows what the trace buys under contention, which a
    request timed alone does not."""
    registry = Registry(paths, TrackingConfig())
    champion = registry.champion().version
    models = [Scorer.from_registry(registry, champion),
              Scorer.from_registry(registry, second_model(paths))]
    graphs = [m.traced for m in models]
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(models[0].item_ids, 30)) for _ in range(500)]
    stop = threading.Event()

    def holder():  # 0.3 ms of Python, 0.3 ms asleep
        while not stop.is_set():
            until = time.perf_counter() + 3e-4
            while time.perf_counter() < until:
                pass
            time.sleep(3e-4)

    async def load() -> list[float]:
        batcher, latencies = RequestBatcher(), []

        async def one(i):
            t = time.perf_counter()
            await asyncio.gather(*(batcher.recommend(m, histories[i % 500]) for m in models))
            latencies.append((time.perf_counter() - t) * 1e3)

        tasks, start = [], time.perf_counter()
        for i in range(int(rate * seconds)):
            if (wait := start + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        batcher.stop()
        return latencies

    print(f"\nin process, {rate} interleaved requests/s through the batcher beside a thread "
          "holding the GIL half the time:")
    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    try:
        for _ in range(rounds):
            for label, traced in (("traced tower", True), ("eager tower", False)):
                for model, graph in zip(models, graphs, strict=True):
                    model.traced = graph if traced else None
                print(f"  {label:14s} {percentiles(asyncio.run(load()))}")
    finally:
        stop.set()
        for model, graph in zip(models, graphs, strict=True):
            model.traced = graph


PHASES = ("in-process", "http", "experiment", "gil", "top-k", "batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per HTTP load level")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="which measurements to run (default: all)")
    parser.add_argument("--home", type=Path, default=None,
                        help="keep the prepared store here and reuse it on the next run "
                             "(default: a temporary folder, removed afterwards)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-serving-"))
    server = None
    try:
        t0 = time.perf_counter()
        paths, users = prepare(home, args.items, args.users)
        print(machine())
        print(f"set-up: {args.items:,} items, {args.users:,} users "
              f"({time.perf_counter() - t0:.0f} s); torch threads {torch.get_num_threads()}")
        registry = Registry(paths, TrackingConfig())
        scorer = Scorer.from_registry(registry)
        data = read_training_data(paths, TrainConfig(), scorer.net.cfg)
        histories = [[scorer.item_ids[i - 1] for i in row if i > 0]
                     for row in data.test.items[:500].tolist()]

        phases = set(args.phases)
        if "in-process" in phases:
            print("\nin-process single requests (k=10, histories up to 50 items):")
            base_ndcg = score_set(scorer.net, data.test).ndcg
            for label, variant in (("fp32, traced tower", scorer),
                                   ("fp32, eager tower", eager_tower(scorer)),
                                   ("bf16 eager user tower", bf16_tower(scorer)),
                                   ("int8 dynamic eager tower", int8_tower(scorer))):
                ms = in_process(variant, histories, args.requests)
                ndcg = score_set(variant.net, data.test).ndcg
                print(f"  {label:24s} {percentiles(ms)}; test NDCG@10 {ndcg:.4f} "
                      f"({ndcg - base_ndcg:+.4f} vs fp32)")

        if phases & {"http", "experiment"}:
            server, url = start_service(paths)
        if "http" in phases:
            print("\nHTTP on loopback, open loop (latency from the scheduled send time):")
            for rate in (200, 400, 800, 1600):
                r = open_loop(url, users, rate, args.seconds)
                behind = r["achieved"] < 0.95 * rate or np.percentile(r["latencies"], 99) > 1000
                print(f"  offered {rate:5d}/s: achieved {r['achieved']:7.1f}/s, "
                      f"{percentiles(r['latencies'])}, errors {r['errors']}"
                      + ("  <- saturated" if behind else ""))
                if behind:
                    break
        if "experiment" in phases:
            experiment_phase(paths, url, users, args.seconds)

        if "gil" in phases:
            gil_phase(paths)

        if "top-k" in phases:
            for batch, repeats in ((1, 1), (512, 5)):
                print(f"\nranking 512 users over the catalogue in batches of {batch} "
                      "(user tower included):")
                compare_top_k(scorer, data.test.items[:512], batch, repeats)

        if "batch" not in phases:
            return
        t = time.perf_counter()
        report = score_users(paths, ScoreConfig(progress_bar=False, window_days=1e4))
        secs = time.perf_counter() - t
        print(f"\nbatch scoring: {report.users:,} users in {secs:.1f} s = "
              f"{report.users / secs:,.0f} users/s (model load and DuckDB writes included)")
    finally:
        stop_service(server)
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
