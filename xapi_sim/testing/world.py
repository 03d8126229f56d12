"""A simulated world served on free ports for the length of a ``with`` block."""

from __future__ import annotations

import contextlib

from .. import scenario as _scenario
from ..server import Simulator

USER = "root"
PASSWORD = "xenroot"


class RunningWorld:
    """A started world: ``world``, ``sim`` (listeners), and helpers to reach its hosts."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.world = sim.world
        self.user = sim.world.user
        self.password = sim.world.password

    def host(self, name):
        return self.world.host_by_name(name)

    def url(self, name) -> str:
        return self.host(name).url

    def master_url(self, pool_index: int = 0) -> str:
        return self.world.pools[pool_index].master.url

    def describe(self) -> dict:
        return self.sim.describe()


@contextlib.contextmanager
def running_world(
    scenario=None, seed=0, user=USER, password=PASSWORD, bind="127.0.0.1", **world_kw
):
    """Build and serve a world from ``scenario`` (path, Scenario, TOML text or None)."""
    if scenario is None:
        scn = _scenario.default()
    elif isinstance(scenario, _scenario.Scenario):
        scn = scenario
    elif isinstance(scenario, str) and "\n" in scenario:
        scn = _scenario.loads(scenario, "<inline scenario>")
    else:
        scn = _scenario.load(scenario)
    world = _scenario.build(scn, seed=seed, user=user, password=password, **world_kw)
    sim = Simulator(world, bind=bind, port=0).start()
    try:
        yield RunningWorld(sim)
    finally:
        sim.stop()
