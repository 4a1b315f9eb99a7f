"""A simulated user population for the closed loop: the synthetic world's users, for real.

``recsys simulate`` (and the local stack's live traffic) sends recommendation requests to the
running real-time service for users of the synthetic world and posts their reactions back as
events. Their choices follow the world's ground truth (``recsys.data.world``) under a
position-bias model, never the model's scores, so a better model really earns more clicks.

* ``population``: the simulator itself, over any ``recommend`` and ``post_events`` callables
  (in-process in tests; over HTTP here);
* ``client``: the HTTP calls, tolerant of a service that restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from recsys.config import ServeConfig, SimulateConfig
from recsys.data.world import World
from recsys.simulate.client import ServiceClient
from recsys.simulate.population import Counts, Simulator, Stopper

__all__ = ["Counts", "ServiceClient", "Simulator", "Stopper", "service_url", "simulate"]


def service_url(cfg: SimulateConfig) -> str:
    """The service to talk to: the config's URL, else ServeConfig's host and port."""
    if cfg.url:
        return cfg.url
    serving = ServeConfig()
    return f"http://{serving.host}:{serving.port}"


def simulate(world: World, cfg: SimulateConfig, stopper: Stopper | None = None,
             on_progress: Callable[[Counts], None] | None = None) -> Counts:
    """Run the world's users against the service at ``service_url(cfg)`` until the end."""
    stopper = stopper or Stopper(cfg.duration_s, grace_s=2 * cfg.timeout_s)
    client = ServiceClient(service_url(cfg), cfg, stopper)
    try:
        return Simulator(world, cfg, client.recommend, client.post_events,
                         stopper).run(on_progress)
    finally:
        client.close()
