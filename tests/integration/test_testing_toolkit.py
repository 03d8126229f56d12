"""The testing toolkit users rely on: the pytest fixture and plugin, the distinct-ports
fallback, and what the installed package ships."""

from __future__ import annotations

import configparser
import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import XenAPI

import xapi_sim
from xapi_sim.testing import running_world, xapi_world  # noqa: F401 -- the fixture


def test_fixture_gives_a_running_default_world(xapi_world):  # noqa: F811
    s = XenAPI.Session(xapi_world.master_url())
    s.xenapi.login_with_password(xapi_world.user, xapi_world.password)
    names = sorted(s.xenapi.host.get_name_label(h) for h in s.xenapi.host.get_all())
    assert names == ["xs1", "xs2", "xs3"]


@pytest.mark.scenario("examples/minimal.json")
def test_fixture_takes_a_scenario_marker(xapi_world):  # noqa: F811
    s = XenAPI.Session(xapi_world.url("solo"))
    s.xenapi.login_with_password("root", "xenroot")
    assert [
        s.xenapi.VM.get_name_label(v)
        for v in s.xenapi.VM.get_all()
        if not s.xenapi.VM.get_is_a_template(v) and not s.xenapi.VM.get_is_control_domain(v)
    ] == ["vm1"]


def test_non_loopback_bind_falls_back_to_distinct_ports():
    """Without loopback aliases every host gets its own port; host.address is ip:port."""
    with running_world(bind="0.0.0.0") as w:
        addrs = {h["name_label"]: h["address"] for h in w.describe()["hosts"]}
        ports = {a.rsplit(":", 1)[1] for a in addrs.values()}
        assert len(ports) == len(addrs)
        assert all(a.startswith("127.0.0.1:") for a in addrs.values())
        s = XenAPI.Session(w.url("xs1"))
        s.xenapi.login_with_password("root", "xenroot")
        with pytest.raises(XenAPI.Failure) as e:
            XenAPI.Session(w.url("xs2")).xenapi.login_with_password("root", "xenroot")
        assert e.value.details == ["HOST_IS_SLAVE", addrs["xs1"]]
        # pool.join accepts the ip:port address form
        s4 = XenAPI.Session(w.url("xs4"))
        s4.xenapi.login_with_password("root", "xenroot")
        s4.xenapi.pool.join(addrs["xs1"], "root", "xenroot")
        assert len(s.xenapi.host.get_all()) == 4


MINIMAL = Path(__file__).resolve().parents[2] / "examples" / "minimal.json"

USER_TEST = f"""
import XenAPI
import pytest


def test_default(xapi_world):
    s = XenAPI.Session(xapi_world.master_url())
    s.xenapi.login_with_password(xapi_world.user, xapi_world.password)
    assert len(s.xenapi.host.get_all()) == 3


@pytest.mark.scenario({str(MINIMAL)!r})
def test_marker(xapi_world):
    assert [h.name_label for h in xapi_world.world.hosts.values()] == ["solo"]
"""


@pytest.mark.parametrize("how", ["-p", "pytest_plugins"])
def test_the_plugin_in_a_project_of_ones_own(tmp_path, how):
    """A user's project loads ``xapi_sim.testing`` as a plugin (command line or conftest):
    the fixture works and the ``scenario`` marker is registered (``--strict-markers``)."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--strict-markers",
        "-p",
        "no:cacheprovider",
        "-W",
        "error::pytest.PytestUnknownMarkWarning",
        str(tmp_path),
    ]
    if how == "-p":
        args[3:3] = ["-p", "xapi_sim.testing"]
    else:
        (tmp_path / "conftest.py").write_text('pytest_plugins = ["xapi_sim.testing"]\n')
    path = [str(Path(xapi_sim.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    r = subprocess.run(
        args,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)},
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout


def test_package_data_covers_every_shipped_file():
    """setup.cfg's package_data names py.typed and every data file of the package."""
    root = Path(xapi_sim.__file__).parent
    cfg = configparser.ConfigParser()
    cfg.read(root.parent / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["xapi_sim"].split(",")]
    shipped = {Path(f) for p in patterns for f in glob.glob(str(root / p))}
    assert root / "py.typed" in shipped
    data = {p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert data <= shipped, sorted(str(p) for p in data - shipped)
    assert cfg["options"]["packages"].strip() == "find_namespace:"
