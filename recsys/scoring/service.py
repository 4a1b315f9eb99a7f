"""The real-time scorer: FastAPI over the champion and every user's latest events.

* ``GET /recommendations/{user_id}?k=10&because=false``: from the user's latest events,
  including events that landed seconds ago; an unknown user gets popular items, flagged.
* ``POST /recommendations``: an explicit recent-item sequence (anonymous sessions); the
  answer lists the item ids the serving model does not know (``unknown_items``).
* ``POST /events``: one event or an array, acknowledged once fsynced; visible in the user's
  history at once and landed within ``IntakeConfig.seal_interval_s`` (``intake_api``).
* ``GET /health``: serving version, the last reload error if any, freshness of the events,
  the active experiment (its treatment loaded or why not).
* ``GET /model``: which version serves, its lineage tags and its age, the active experiment.

While an experiment runs (``recsys.data.experiments``), a user with history is answered by
their arm (``recsys.scoring.assignment``): A/B gives the arm's model's list, interleaving a
team draft of both models' lists; impressions carry ``Experiment.variant(arm or team)`` and,
per item, the version whose list it came from. Fallbacks and sessions stay champion-only.

Every recommendation answer carries a ``request_id`` and is logged, off the request path, as
impressions (``recsys.data.impressions``): what was shown, where, with which score and model.

A background thread follows the ``champion`` alias and the landing zone. A new champion is
loaded beside the old one and swapped in with one reference assignment, so requests never
wait or fail; if loading fails, the old model keeps serving and ``/health`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import uuid
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, Field

from recsys.config import (
    ImpressionConfig,
    IngestConfig,
    IntakeConfig,
    Paths,
    ServeConfig,
    TrackingConfig,
)
from recsys.data import forget_log
from recsys.data.experiments import ExperimentStore
from recsys.data.impressions import ImpressionLog
from recsys.data.intake import Intake
from recsys.registry.registry import Registry
from recsys.scoring import experiment_arms
from recsys.scoring.batching import RequestBatcher
from recsys.scoring.history import RecentHistories
from recsys.scoring.intake_api import events_router
from recsys.scoring.scorer import Scorer
from recsys.timeutil import utc_now

log = logging.getLogger(__name__)

MAX_K = 1000
MAX_ID_LEN = 256
GIL_SWITCH_S = 0.001  # see serve()


@dataclass(frozen=True)
class Served:
    """One loaded champion; replaced as a whole, never mutated."""

    version: str
    scorer: Scorer
    tags: dict
    loaded_at: str


class ChampionFollower:
    """Keeps the newest loadable champion and the latest events, refreshed in the background."""

    def __init__(self, paths: Paths, tracking: TrackingConfig | None = None,
                 interval_s: float = 5.0):
        self.paths = paths
        self.registry = Registry(paths, tracking or TrackingConfig())
        self.interval_s = interval_s
        self.served: Served | None = None
        self.reload_error: str | None = None
        self.histories: RecentHistories | None = None
        self.forgotten: set[str] = set()
        self.experiments = ExperimentStore(paths)
        self.experiment: experiment_arms.LiveExperiment | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def refresh(self) -> None:
        """Follow the alias and read new landing parts; never raises."""
        try:
            champion = self.registry.champion()
            if champion is not None and (self.served is None
                                         or champion.version != self.served.version):
                scorer = Scorer.from_registry(self.registry, champion.version)
                self.served = Served(champion.version, scorer, dict(champion.tags),
                                     utc_now().isoformat(timespec="seconds"))
                self.reload_error = None
                log.info("serving %s version %s", self.registry.name, champion.version)
        except Exception as exc:  # keep serving the model we have
            self.reload_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not load the new champion, still serving %s: %s",
                        self.served.version if self.served else None, self.reload_error)
        try:
            self.experiment = experiment_arms.follow(self.experiments, self.registry,
                                                     self.experiment)
        except Exception as exc:  # an unreadable store: the champion alone, as before
            log.warning("could not follow the experiments: %s", exc)
        try:
            max_len = self.served.scorer.max_len if self.served else 50
            if self.histories is None:
                self.histories = RecentHistories(self.paths, max_len=max_len)
            else:
                self.histories.refresh()
            if (forgotten := forget_log.forgotten_hashes(self.paths)) - self.forgotten:
                dropped = self.histories.forget(forgotten - self.forgotten)
                self.forgotten |= forgotten
                log.info("forget-user: dropped %d users from memory", dropped)
        except Exception as exc:
            log.warning("could not read new landing parts: %s", exc)
        # The histories are ~10 Python objects per event: a full collection walking them took
        # ~280 ms at 20k users, a pause every request in flight would wait for. They live
        # until the service stops, so move them out of the collector's sight.
        gc.freeze()

    def start(self) -> None:
        def loop():
            while not self._stop.wait(self.interval_s):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="champion-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


class SessionRequest(BaseModel):
    item_ids: list[str] = Field(..., max_length=10_000,
                                description="Recent item ids, oldest first.")
    event_types: list[str] | None = Field(None, description="Same length as item_ids.")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = False
    because: bool = False


class Recommendation(BaseModel):
    item_id: str
    score: float | None = Field(None, description="Higher is better; null for popular items "
                                                  "given as a fallback.")
    because: str | None = Field(None, description="With because=true: the history item most "
                                                  "like this one (null when none is known).")


class ExperimentArm(BaseModel):
    id: str = Field(description="The experiment.")
    arm: str = Field(description="control, treatment, or interleaved (both models' items, "
                                 "drafted in turns).")


class Recommendations(BaseModel):
    request_id: str = Field(description="This answer's id: send it back as an event's "
                                        "request_id to tie a click to what was shown.")
    user_id: str | None = Field(description="Null for an anonymous session.")
    model_version: str = Field(description="The registered version that answered.")
    fallback: str | None = Field(description="Why the list is not the model's own, or null.")
    history_length: int = Field(description="Events in the history the answer was made from.")
    recommendations: list[Recommendation] = Field(description="Best first.")
    experiment: ExperimentArm | None = Field(
        None, description="Only for a user in a running experiment: which one, which arm.")


class SessionRecommendations(Recommendations):
    unknown_items: list[str] = Field(
        description="The request's item ids the serving model does not know (each once, in "
                    "the order sent). They do not shape the answer: an item the model has not "
                    "been trained on yet, or an id that is wrong.")


async def _answer(batcher: RequestBatcher, scorer: Scorer, version: str, user_id: str | None,
                  items: list[str], types: list[str] | None, k: int, exclude_seen: bool,
                  because: bool, fallback: str | None = None) -> dict:
    ids, scores = await batcher.recommend(scorer, items, types, k, exclude_seen)
    recs = [{"item_id": i, "score": s}
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True)]
    if because:
        for rec, why in zip(recs, scorer.because([items], [ids])[0], strict=True):
            rec["because"] = why
    return {"user_id": user_id, "model_version": version, "fallback": fallback,
            "history_length": len(items), "recommendations": recs}


def create_app(paths: Paths | None = None, tracking: TrackingConfig | None = None,
               reload_interval_s: float = 5.0, follow: bool = True,
               intake: IntakeConfig | None = None, impressions: ImpressionConfig | None = None,
               ingest: IngestConfig | None = None) -> FastAPI:
    paths = paths or Paths()
    intake = intake or IntakeConfig()
    follower = ChampionFollower(paths, tracking, reload_interval_s)
    batcher = RequestBatcher()
    shown = ImpressionLog(paths, impressions)

    def visible(events) -> None:  # posted events join the histories once durable
        if follower.histories is not None:
            follower.histories.add_events(events)

    journal = Intake(paths, intake, ingest, on_durable=visible)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        journal.start()  # its sealer first seals what a dead predecessor journaled
        shown.start()
        if follow:
            follower.start()
        yield
        follower.stop()
        batcher.stop()
        journal.close()
        shown.close()

    app = FastAPI(title="recsys real-time recommendations", lifespan=lifespan,
                  description="Top-K from the champion over each user's latest events.")
    app.state.follower = follower
    app.state.batcher = batcher
    app.state.intake = journal
    app.state.impressions = shown
    app.include_router(events_router(journal, intake))

    def served() -> Served:
        if follower.served is None:
            raise HTTPException(503, "no champion model yet: run a full retrain")
        return follower.served

    def logged(answer: dict, surface: str, request_id: str | None = None,
               versions: str | list[str] | None = None,
               variant: str | list[str] | None = None) -> dict:
        """Give the answer its request id and log what it shows (in memory, O(k)).

        ``versions`` and ``variant``: one for the whole answer or one per item (interleaving).
        """
        answer["request_id"] = request_id = request_id or uuid.uuid4().hex
        recs = answer["recommendations"]
        shown.log(request_id, answer["user_id"], [r["item_id"] for r in recs],
                  [r["score"] for r in recs], versions or answer["model_version"],
                  variant=variant, surface=surface)
        return answer

    async def in_experiment(live: experiment_arms.LiveExperiment, arm: str, model: Served,
                            user_id: str, history, k: int, exclude_seen: bool,
                            because: bool) -> dict:
        exp = live.experiment
        args = (user_id, history.item_ids, history.event_types, k, exclude_seen, because)
        if live.mode == "ab":
            scorer, version = ((live.scorer, live.treatment_version) if arm == "treatment"
                               else (model.scorer, model.version))
            answer = await _answer(batcher, scorer, version, *args)
            answer["experiment"] = {"id": exp.id, "arm": arm}
            return logged(answer, "user", variant=exp.variant(arm))
        request_id = uuid.uuid4().hex  # seeds the draft: the list can be recomputed from it
        control, treatment = await asyncio.gather(
            _answer(batcher, model.scorer, model.version, *args),
            _answer(batcher, live.scorer, live.treatment_version, *args))
        recs, teams = experiment_arms.interleave(control["recommendations"],
                                                 treatment["recommendations"], k, request_id)
        answer = control | {"recommendations": recs, "experiment": {
            "id": exp.id, "arm": experiment_arms.INTERLEAVED}}
        version = {"control": model.version, "treatment": live.treatment_version,
                   "both": model.version}  # an item both proposed: the control's answer
        return logged(answer, "user", request_id, [version[t] for t in teams],
                      [exp.variant(t) for t in teams])

    # The handlers are async: they parse and answer on the event loop and hand the model work
    # to the batcher's single thread, which serves every request waiting at once.
    # exclude_unset: "because" appears only when asked for, as before the models existed.
    @app.get("/recommendations/{user_id:path}", response_model=Recommendations,  # ids hold "/"
             response_model_exclude_unset=True)
    async def for_user(user_id: str = Path(..., min_length=1, max_length=MAX_ID_LEN),
                 k: int = Query(10, ge=1, le=MAX_K), exclude_seen: bool = False,
                 because: bool = False) -> dict:
        model = served()
        history = follower.histories.get(user_id) if follower.histories else None
        if history is None or not history.item_ids:
            popular = (follower.histories.popular if follower.histories else [])[:k]
            return logged({"user_id": user_id, "model_version": model.version,
                           "fallback": "popular: unknown user", "history_length": 0,
                           "recommendations": [{"item_id": i, "score": None}
                                               for i in popular]}, "user")
        live = follower.experiment
        arm = live.arm(user_id) if live is not None else None
        if arm is not None:
            return await in_experiment(live, arm, model, user_id, history, k, exclude_seen,
                                       because)
        return logged(await _answer(batcher, model.scorer, model.version, user_id,
                                    history.item_ids, history.event_types, k, exclude_seen,
                                    because), "user")

    @app.post("/recommendations", response_model=SessionRecommendations,
              response_model_exclude_unset=True)
    async def for_session(body: SessionRequest) -> dict:
        if body.event_types is not None and len(body.event_types) != len(body.item_ids):
            raise HTTPException(422, "event_types must have one entry per item id")
        if any(len(i) > MAX_ID_LEN for i in body.item_ids):
            raise HTTPException(422, f"item ids are at most {MAX_ID_LEN} characters")
        model = served()
        known = model.scorer.index
        unknown = [i for i in dict.fromkeys(body.item_ids) if i not in known]
        answer = await _answer(batcher, model.scorer, model.version, None, body.item_ids,
                               body.event_types, body.k, body.exclude_seen, body.because)
        return logged(answer | {"unknown_items": unknown}, "session")

    @app.get("/health")
    def health() -> dict:
        model = follower.served
        live = follower.experiment
        return {"status": "ok" if model and not follower.reload_error
                and not (live and live.error) else
                ("degraded" if model else "no model"),
                "model_version": model.version if model else None,
                "reload_error": follower.reload_error,
                "landing_seq": follower.histories.seq if follower.histories else 0,
                "users": len(follower.histories.users) if follower.histories else 0,
                "intake": {"rows_journaled": journal.rows, "fsyncs": journal.fsyncs,
                           "segments_waiting": journal.waiting(),
                           "last_seal_s": journal.last_seal_s},
                "impressions": {"written": shown.written, "dropped": shown.dropped},
                "experiment": live.describe() if live else None}

    @app.get("/model")
    def model() -> dict:
        m = served()
        return {"name": follower.registry.name, "version": m.version, "loaded_at": m.loaded_at,
                "kind": m.tags.get("kind"), "parent_version": m.tags.get("parent_version"),
                "watermark": m.tags.get("watermark"),
                "newest_event_ts": m.tags.get("newest_event_ts"),
                "model_age_s": m.scorer.model_age_s(), "n_items": m.scorer.net.n_items,
                "experiment": live.describe() if (live := follower.experiment) else None}

    return app


def serve(paths: Paths | None = None, serving: ServeConfig | None = None,
          threads: int = 1, intake: IntakeConfig | None = None,
          impressions: ImpressionConfig | None = None) -> None:
    """Run the service with uvicorn.

    ``threads``: torch threads of the batcher. One thread leaves the other core to the event
    loop; more help only with very large catalogues on machines with cores to spare.
    """
    import torch
    import uvicorn

    serving = serving or ServeConfig()
    torch.set_num_threads(threads)
    # The event loop shares the GIL with the batcher's and the intake's threads, which give it
    # up in every system call and DuckDB or torch call; at Python's default 5 ms switch interval
    # each return waited up to 5 ms for a busy loop (a group commit's fsync, over a dozen).
    sys.setswitchinterval(GIL_SWITCH_S)
    uvicorn.run(create_app(paths, intake=intake, impressions=impressions), host=serving.host,
                port=serving.port, log_level="info", access_log=serving.access_log,
                http="httptools")
