"""Host failure without HA (issue 7 item 4): ``sim.host_crash`` and ``sim.host_power_on``.

In XAPI (Dundee ``ocaml/xapi/db_gc.ml`` ``check_host_liveness``) the master marks a host
whose heartbeats stopped ``host_metrics.live = false``; without HA nothing else happens to
its VMs: they stay ``Running`` and ``resident_on`` the dead host until it comes back (or an
administrator resets them). When it boots again, xapi's start-up resync
(``xapi_xenops.ml``: VMs the database says are resident but xenopsd does not know) resets
them to ``Halted``, ``resident_on`` NULL.
"""

from __future__ import annotations

import socket

import pytest
import XenAPI


@pytest.fixture
def lab(fresh_world, login):
    s = login(fresh_world.master_url())
    x = s.xenapi
    h = {n: x.host.get_by_name_label(n)[0] for n in ("xs1", "xs2", "xs3")}
    yield fresh_world, s, x, h
    try:
        x.session.logout()
    except Exception:  # noqa: BLE001
        pass


def refused(url):
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def live(x, host):
    return x.host_metrics.get_live(x.host.get_metrics(host))


def test_a_crashed_host_stops_answering_and_is_marked_not_live(lab, wire):
    w, s, x, h = lab
    web2 = x.VM.get_by_name_label("web2")[0]
    level = x.pool.get_cpu_info(x.pool.get_all()[0])
    token = s.xenapi_request("event.from", (["host_metrics"], "", 0.0))["token"]
    assert wire.xml(w.url("xs2"), "pool.get_all", s.handle)["Status"] == "Failure"  # answers
    s.xenapi_request("sim.host_crash", (h["xs2"],))
    assert refused(w.url("xs2"))
    assert live(x, h["xs2"]) is False
    assert live(x, h["xs1"]) is True and live(x, h["xs3"]) is True
    # what XAPI shows after a host failure without HA: the VM still "runs" there
    assert x.VM.get_power_state(web2) == "Running"
    assert x.VM.get_resident_on(web2) == h["xs2"]
    assert web2 in x.host.get_resident_VMs(h["xs2"])
    # Dundee keeps an offline host in the pool level
    assert x.pool.get_cpu_info(x.pool.get_all()[0]) == level
    events = s.xenapi_request("event.from", (["host_metrics"], token, 1.0))["events"]
    assert any(e["operation"] == "mod" and e["snapshot"]["live"] is False for e in events)
    # the rest of the pool keeps working
    x.VM.start(x.VM.get_by_name_label("batch1")[0], False, False)


def test_crash_and_power_on_preconditions(lab):
    w, s, x, h = lab
    with pytest.raises(XenAPI.Failure) as e:
        s.xenapi_request("sim.host_power_on", (h["xs3"],))
    assert e.value.details == ["OPERATION_NOT_ALLOWED", "host is already running"]
    s.xenapi_request("sim.host_crash", (h["xs3"],))
    with pytest.raises(XenAPI.Failure) as e:
        s.xenapi_request("sim.host_crash", (h["xs3"],))
    assert e.value.details == ["HOST_OFFLINE", h["xs3"]]
    with pytest.raises(XenAPI.Failure) as e:
        s.xenapi_request("sim.host_crash", ("OpaqueRef:nope",))
    assert e.value.details == ["HANDLE_INVALID", "host", "OpaqueRef:nope"]


def test_power_on_brings_the_host_back_through_a_normal_boot(lab, wire):
    w, s, x, h = lab
    cpus_before = sorted(x.host.get_host_CPUs(h["xs2"]))
    s.xenapi_request("sim.host_crash", (h["xs2"],))
    s.xenapi_request("sim.host_power_on", (h["xs2"],))
    assert not refused(w.url("xs2"))
    # a member again: a root login there is refused with the master's address
    err = wire.xml_err(w.url("xs2"), "session.login_with_password", "root", "xenroot")
    assert err == ["HOST_IS_SLAVE", x.host.get_address(h["xs1"])]
    assert live(x, h["xs2"]) is True
    assert x.host.get_enabled(h["xs2"]) is True
    # the xapi start recreated the host_cpu objects
    cpus_after = sorted(x.host.get_host_CPUs(h["xs2"]))
    assert len(cpus_after) == len(cpus_before) and cpus_after != cpus_before
    # and the host takes VMs again
    batch1 = x.VM.get_by_name_label("batch1")[0]
    x.VM.start_on(batch1, h["xs2"], False, False)
    assert x.VM.get_resident_on(batch1) == h["xs2"]


def test_vms_of_a_crashed_host_are_halted_when_it_boots_again(lab):
    w, s, x, h = lab
    web2 = x.VM.get_by_name_label("web2")[0]
    s.xenapi_request("sim.host_crash", (h["xs2"],))
    s.xenapi_request("sim.host_power_on", (h["xs2"],))
    assert x.VM.get_power_state(web2) == "Halted"
    assert x.VM.get_resident_on(web2) == "OpaqueRef:NULL"


def test_operations_on_vms_of_a_dead_host_fail_with_host_offline(lab):
    w, s, x, h = lab
    web2 = x.VM.get_by_name_label("web2")[0]
    s.xenapi_request("sim.host_crash", (h["xs2"],))
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.clean_shutdown(web2)
    assert e.value.details == ["HOST_OFFLINE", h["xs2"]]
