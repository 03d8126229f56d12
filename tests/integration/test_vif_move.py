"""``VIF.move`` (XenServer 7.1 on) over the wire with the real ``XenAPI`` client: a halted
VM's VIF just changes network, a running VM's is moved live and stays plugged, a host that
cannot see the network refuses (``HOST_CANNOT_ATTACH_NETWORK``), an offline host gives
``HOST_OFFLINE``, events, and 7.0 does not know the message; plus ``xe vif-move``."""

from __future__ import annotations

import pytest
import XenAPI
from xe_kit import xe_runner

from xapi_sim.testing import running_world

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{version}"
[[host]]
name_label = "h2"
cpu = "Haswell"
version = "{version}"
[[pool]]
name_label = "P"
master = "h1"
members = ["h2"]
[[network]]
name_label = "inner"
[[vm]]
name_label = "run"
domain_type = "pv"
power_state = "Running"
host = "h1"
vifs = ["Pool-wide network associated with eth0"]
[[vm]]
name_label = "off"
domain_type = "pv"
power_state = "Halted"
host = "h1"
vifs = ["Pool-wide network associated with eth0"]
[[vm]]
name_label = "other"
domain_type = "pv"
power_state = "Running"
host = "h2"
vifs = ["inner"]
"""


def _session(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    return s


def _err(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


@pytest.fixture
def lab():
    with running_world(WORLD.format(version="8.2.1")) as w:
        x = _session(w.master_url()).xenapi
        vms = {r["name_label"]: ref for ref, r in x.VM.get_all_records().items()}
        nets = {r["name_label"]: ref for ref, r in x.network.get_all_records().items()}
        yield w, x, vms, nets


def _net(nets, n):
    return nets[f"Pool-wide network associated with eth{n}"]


def test_halted_vm_vif_changes_network_only(lab):
    w, x, vms, nets = lab
    vif = x.VM.get_VIFs(vms["off"])[0]
    eth1 = _net(nets, 1)
    # even the internal network pinned to h2 by a running VM: nothing is attached
    x.VIF.move(vif, nets["inner"])
    rec = x.VIF.get_record(vif)
    assert rec["network"] == nets["inner"] and rec["currently_attached"] is False
    assert vif in x.network.get_VIFs(nets["inner"])
    x.VIF.move(vif, eth1)
    assert vif in x.network.get_VIFs(eth1) and vif not in x.network.get_VIFs(nets["inner"])
    x.VIF.move(vif, eth1)  # to the same network: fine
    assert x.VIF.get_network(vif) == eth1


def test_running_vm_vif_moves_live(lab):
    w, x, vms, nets = lab
    vif = x.VM.get_VIFs(vms["run"])[0]
    eth1 = _net(nets, 1)
    h1 = w.host("h1").ref
    pif = [p for p in x.network.get_PIFs(eth1) if x.PIF.get_host(p) == h1][0]
    x.PIF.unplug(pif)
    assert x.PIF.get_currently_attached(pif) is False
    x.VIF.move(vif, eth1)
    rec = x.VIF.get_record(vif)
    assert rec["network"] == eth1 and rec["currently_attached"] is True
    assert x.PIF.get_currently_attached(pif) is True  # attached for the VIF on h1
    assert x.VM.get_power_state(vms["run"]) == "Running"
    # a new internal network nobody runs on: visible everywhere
    free = x.network.create({"name_label": "free", "other_config": {}})
    x.VIF.move(vif, free)
    assert x.VIF.get_network(vif) == free and x.VIF.get_currently_attached(vif) is True


def test_running_vm_cannot_move_to_a_network_its_host_cannot_see(lab):
    w, x, vms, nets = lab
    vif = x.VM.get_VIFs(vms["run"])[0]
    before = x.VIF.get_record(vif)
    h1 = w.host("h1").ref
    # "inner" is in use by a VM running on h2 only
    assert _err(x.VIF.move, vif, nets["inner"]) == [
        "HOST_CANNOT_ATTACH_NETWORK",
        h1,
        nets["inner"],
    ]
    assert x.VIF.get_record(vif) == before
    # unless the network is declared shared
    x.network.add_to_other_config(nets["inner"], "assume_network_is_shared", "true")
    x.VIF.move(vif, nets["inner"])
    assert x.VIF.get_network(vif) == nets["inner"]
    # a VIF that is not plugged is not checked
    x.VIF.unplug(vif)
    x.network.remove_from_other_config(nets["inner"], "assume_network_is_shared")
    other = x.network.create({"name_label": "o", "other_config": {}})
    x.VIF.move(vif, other)
    assert x.VIF.get_currently_attached(vif) is False


def test_move_errors(lab):
    w, x, vms, nets = lab
    vif = x.VM.get_VIFs(vms["other"])[0]
    bogus = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert _err(x.VIF.move, bogus, nets["inner"]) == ["HANDLE_INVALID", "VIF", bogus]
    assert _err(x.VIF.move, vif, bogus) == ["HANDLE_INVALID", "network", bogus]
    h2 = w.host("h2")
    metrics = x.host.get_metrics(h2.ref)
    db = w.world.pools[0].db
    with db.lock:
        db.set("host_metrics", metrics, "live", False)
    assert _err(x.VIF.move, vif, _net(nets, 0)) == ["HOST_OFFLINE", h2.ref]
    assert x.VIF.get_network(vif) == nets["inner"]


def test_move_is_an_event(lab):
    w, x, vms, nets = lab
    vif = x.VM.get_VIFs(vms["off"])[0]
    token = x.event_from(["VIF", "network"], "", 0.0)["token"]
    x.VIF.move(vif, nets["inner"])
    evs = x.event_from(["VIF", "network"], token, 5.0)["events"]
    mods = {(e["class"], e["ref"]) for e in evs if e["operation"] == "mod"}
    assert ("vif", vif) in mods
    assert ("network", nets["inner"]) in mods
    assert ("network", _net(nets, 0)) in mods


def test_not_before_7_1(tmp_path):
    with running_world(WORLD.format(version="7.0.0")) as w:
        x = _session(w.master_url()).xenapi
        vif = x.VIF.get_all()[0]
        net = x.network.get_all()[0]
        assert _err(x.VIF.move, vif, net) == ["MESSAGE_METHOD_UNKNOWN", "VIF.move"]
        # 7.0's CLI has no vif-move either
        xe = xe_runner(w.host("h1"), tmp_path, w.user, w.password)
        r = xe(
            "vif-move",
            f"uuid={x.VIF.get_uuid(vif)}",
            f"network-uuid={x.network.get_uuid(net)}",
        )
        assert r.returncode == 1 and r.stderr.startswith("Unknown command: vif-move\n")
        r = xe("help", "vif-move")
        assert r.stdout == "Unknown command 'vif-move'\n"
    with running_world(WORLD.format(version="7.1.0")) as w:
        x = _session(w.master_url()).xenapi
        vm = [r for r, v in x.VM.get_all_records().items() if v["name_label"] == "off"][0]
        vif = x.VM.get_VIFs(vm)[0]
        net = [r for r, n in x.network.get_all_records().items() if n["name_label"] == "inner"]
        x.VIF.move(vif, net[0])
        assert x.VIF.get_network(vif) == net[0]
        r = xe_runner(w.host("h1"), tmp_path, w.user, w.password)("help", "--all")
        assert "vif-move" in r.stdout


def test_xe_vif_move(lab, tmp_path):
    w, x, vms, nets = lab
    vif = x.VM.get_VIFs(vms["run"])[0]
    eth2 = _net(nets, 2)
    h = w.host("h1")

    xe = xe_runner(h, tmp_path, w.user, w.password)

    vif_uuid, net_uuid = x.VIF.get_uuid(vif), x.network.get_uuid(eth2)
    r = xe("vif-move", f"uuid={vif_uuid}", f"network-uuid={net_uuid}")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert x.VIF.get_network(vif) == eth2
    r = xe("vif-move", f"uuid={vif_uuid}")
    assert r.returncode == 1 and "network-uuid" in r.stderr
    r = xe("vif-move", f"uuid={vif_uuid}", f"network-uuid={x.network.get_uuid(nets['inner'])}")
    assert r.returncode == 1 and r.stderr.startswith("Server cannot attach network"), r.stderr
    assert f"host: {h.uuid} (h1)\n" in r.stderr
    assert x.VIF.get_network(vif) == eth2
