"""The testing toolkit users rely on: the pytest fixture, and the distinct-ports fallback."""
from __future__ import annotations

import pytest
import XenAPI

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
    assert [s.xenapi.VM.get_name_label(v) for v in s.xenapi.VM.get_all()
            if not s.xenapi.VM.get_is_a_template(v)
            and not s.xenapi.VM.get_is_control_domain(v)] == ["vm1"]


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
