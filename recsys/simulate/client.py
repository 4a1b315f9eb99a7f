"""The simulated users' HTTP side: the real-time service's lists in, their reactions out.

A thin layer over httpx: ``GET /recommendations/{user_id}?k=`` gives a list and its
``request_id``; ``POST /events`` takes a JSON array of events and answers how many it accepted.
The service may restart under it (a new champion, ``stack`` restarting it): a refused
connection, a timeout, a 5xx or a 429 is retried with a backoff that doubles up to
``max_backoff_s``, said once when it starts and once when the service is back, and given up
only when the simulation ends (``Stopper.give_up``). A 4xx on ``POST /events`` (nothing
usable, too large, no such endpoint) is not retried: those events count as rejected.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

import httpx

from recsys.config import SimulateConfig
from recsys.simulate.population import GaveUp, Stopper

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.25
RETRY_STATUSES = {429, 500, 502, 503, 504}


class ServiceClient:
    """``recommend`` and ``post_events`` for :class:`~recsys.simulate.population.Simulator`."""

    def __init__(self, url: str, cfg: SimulateConfig, stopper: Stopper,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.cfg, self.stopper = cfg, stopper
        self.http = httpx.Client(base_url=self.url, timeout=cfg.timeout_s, transport=transport)
        self._down_since: float | None = None
        self._warned: set[int] = set()

    def recommend(self, user_id: str, k: int) -> tuple[str | None, list[str]]:
        response = self._call("GET", f"/recommendations/{quote(user_id, safe='')}",
                              params={"k": k})
        if response.status_code != 200:
            raise RuntimeError(f"GET {response.request.url} answered {response.status_code}: "
                               f"{response.text[:300]}")
        body = response.json()
        return body.get("request_id"), [r["item_id"] for r in body["recommendations"]]

    def post_events(self, events: list[dict]) -> int:
        response = self._call("POST", "/events", json=events)
        if response.status_code == 200:
            return int(response.json()["accepted"])
        if response.status_code not in self._warned:  # once per kind of refusal
            self._warned.add(response.status_code)
            log.warning("POST %s/events answered %d (%s): those events count as rejected",
                        self.url, response.status_code, response.text[:300])
        return 0

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One call, retried while the service is away; ``GaveUp`` when the simulation ends."""
        delay = FIRST_BACKOFF_S
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code not in RETRY_STATUSES:
                    self._back()
                    return response
                why = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:  # refused, reset, timed out
                why = f"{type(exc).__name__}: {exc}"
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("the service at %s does not answer (%s); retrying every %g s at "
                            "most", self.url, why, self.cfg.max_backoff_s)
            if self.stopper.give_up():
                raise GaveUp(why)
            self.stopper.wait(min(delay, max(0.0, self.stopper.left() + self.stopper.grace_s)))
            delay = min(2 * delay, self.cfg.max_backoff_s)

    def _back(self) -> None:
        if self._down_since is not None:
            log.warning("the service at %s answers again after %.1f s", self.url,
                        time.monotonic() - self._down_since)
            self._down_since = None

    def close(self) -> None:
        self.http.close()
