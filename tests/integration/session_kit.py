"""Helpers shared by the integration tests: a served world with a logged-in ``XenAPI``
session, and the error description of a call expected to fail."""

from __future__ import annotations

import contextlib

import pytest
import XenAPI

from xapi_sim.testing import running_world


@contextlib.contextmanager
def logged_in(scenario=None):
    """A served world (``running_world``) and a root session on its first pool's master,
    logged out at the end."""
    with running_world(scenario) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        try:
            yield w, s
        finally:
            s.xenapi.session.logout()


def failure(fn, *args):
    """The ``ErrorDescription`` of ``fn(*args)``, which must fail with an API error."""
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details
