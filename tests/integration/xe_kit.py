"""The project's ``xe`` client for the integration tests: where it is, the environment it
runs in (a HOME of the test's own, no ``XE_EXTRA_ARGS`` from the caller's shell) and a
runner bound to one simulated host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

XE = shutil.which("xe", path=os.path.dirname(sys.executable)) or shutil.which("xe")


def xe_runner(host, home, user="root", password="xenroot", timeout=60):
    """``xe(*args, input=None)``: the command run against ``host`` (a HostRuntime), its
    ``CompletedProcess`` (text) returned."""
    if XE is None:
        pytest.fail("the xe console script is not installed: pip install -e . (see README)")
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env["HOME"] = str(home)
    base = [XE, "-s", host.address_for_url, "-p", str(host.port), "-u", user, "-pw", password]

    def xe(*args, input=None):
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, env=env, timeout=timeout, input=input
        )

    return xe
