"""Smaller worlds for the stateful machines.

A pool's default templates (80-odd VMs per pool, ``catalogue.templates``) are most of the
time a world takes to build and a large part of every allowed-operations refresh, and no
rule or invariant of these machines is about templates. ``few_templates`` (a module-scoped
autouse fixture of the machines that build worlds) leaves each new pool the first few of
its release's templates -- real ones, with their fields -- for as long as the module runs.
"""

from __future__ import annotations

import pytest

from xapi_sim import catalogue

KEEP = 3


@pytest.fixture(scope="module", autouse=True)
def few_templates():
    real = catalogue.templates
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalogue, "templates", lambda release: real(release)[:KEEP])
        yield
