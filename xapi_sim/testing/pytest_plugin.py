"""The pytest side of the toolkit: the ``xapi_world`` fixture and the ``scenario`` marker.

Load it as a plugin -- ``pytest_plugins = ["xapi_sim.testing"]`` in a conftest.py, or
``pytest -p xapi_sim.testing`` -- to get both; importing ``xapi_world`` into a conftest.py
gives the fixture alone.
"""

from __future__ import annotations

import pytest

from .world import running_world

MARKER = (
    "scenario(path): the scenario file (or TOML text) the xapi_world fixture starts; "
    "the built-in default without it"
)


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def xapi_world(request):
    """A fresh default world per test; parametrise with ``@pytest.mark.scenario(path)``."""
    marker = request.node.get_closest_marker("scenario")
    scn = marker.args[0] if marker else None
    with running_world(scn) as w:
        yield w
