"""The stateful machines build their worlds with few templates (``tests/small_worlds.py``):
no rule or invariant here is about templates, and the 80-odd per pool were most of each
example's world build and allowed-operations refresh."""

from __future__ import annotations

import pytest

from tests.small_worlds import few_templates


@pytest.fixture(scope="module", autouse=True)
def _few_templates():
    with few_templates():
        yield
