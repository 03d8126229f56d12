"""Smaller worlds for tests whose many examples rebuild or re-read a whole world.

A pool's default templates (80-odd VMs per pool, ``catalogue.templates``) are most of the
time a world takes to build, a large part of every allowed-operations refresh and of every
``VM.get_all_records``. Inside ``few_templates()`` each new pool gets only the first few of
its release's templates -- real ones, with all their fields. For tests in which no check is
about templates.
"""

from __future__ import annotations

import contextlib

import pytest

from xapi_sim import catalogue

KEEP = 3


@contextlib.contextmanager
def few_templates(keep=KEEP):
    real = catalogue.templates
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalogue, "templates", lambda release: real(release)[:keep])
        yield
