"""Testing toolkit: start a simulated world on free ports and tear it down.

    from xapi_sim.testing import running_world

    with running_world() as sim:              # the built-in default scenario
        url = sim.master_url()                # first pool's master
        session = XenAPI.Session(url); session.xenapi.login_with_password("root", "xenroot")

As a pytest plugin (``pytest_plugins = ["xapi_sim.testing"]`` in conftest.py, or
``pytest -p xapi_sim.testing``) it gives the ``xapi_world`` fixture and registers the
``scenario`` marker; importing ``xapi_world`` into conftest.py gives the fixture alone::

    @pytest.mark.scenario("examples/minimal.json")
    def test_x(xapi_world): ...

Modules: ``world.py`` (``running_world``, ``RunningWorld``), ``pytest_plugin.py`` (the
fixture and marker; only loaded when pytest is installed), ``soak/`` (the soak run of
``scripts/soak.py``: load, chaos and checks against a served world; needs the ``XenAPI``
package, so it is imported only on demand: ``from xapi_sim.testing import soak``).
"""

from __future__ import annotations

from .world import PASSWORD, USER, RunningWorld, running_world

try:
    import pytest  # noqa: F401 -- optional: only the fixture needs pytest
except ImportError:  # pragma: no cover - running_world works without pytest
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True

__all__ = ["PASSWORD", "USER", "RunningWorld", "running_world"]

if _HAVE_PYTEST:
    from .pytest_plugin import pytest_configure, xapi_world

    __all__ += ["pytest_configure", "xapi_world"]
