"""What a freshly installed host's networking looks like, over the wire with the real
``XenAPI`` client: PIFs eth0-eth3 with metrics on pool-wide networks, the management
interface, the host internal management network; pool join and eject; 6.5 SP1 pools."""

from __future__ import annotations

import re

import XenAPI

from xapi_sim import install_network as inet
from xapi_sim.runtime import Hardware
from xapi_sim.testing import running_world

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

POOL = """
[[host]]
name_label = "a1"
cpu = "Haswell"
[[host]]
name_label = "a2"
cpu = "Haswell"
[[host]]
name_label = "s1"
cpu = "Haswell"
[[pool]]
name_label = "P"
master = "a1"
members = ["a2"]
"""

CREAM = """
[[host]]
name_label = "c1"
cpu = "Haswell"
version = "6.5.0"
[[host]]
name_label = "c2"
cpu = "Haswell"
version = "6.5.0"
[[pool]]
name_label = "C"
master = "c1"
members = ["c2"]
"""


def _session(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    return s


def _check_fresh_pool(w, x):
    hosts = x.host.get_all_records()
    pifs = x.PIF.get_all_records()
    nets = x.network.get_all_records()
    metrics = x.PIF_metrics.get_all_records()
    by_bridge = {n["bridge"]: (ref, n) for ref, n in nets.items()}
    assert set(by_bridge) == {"xenbr0", "xenbr1", "xenbr2", "xenbr3", "xenapi"}
    for i in range(4):
        ref, net = by_bridge[f"xenbr{i}"]
        assert net["name_label"] == f"Pool-wide network associated with eth{i}"
        assert net["MTU"] == "1500"
        assert sorted(net["PIFs"]) == sorted(p for p, r in pifs.items() if r["device"] == f"eth{i}")
    himn = by_bridge["xenapi"][1]
    assert himn["name_label"] == "Host internal management network"
    assert himn["other_config"]["is_host_internal_management_network"] == "true"
    assert himn["PIFs"] == []
    macs = set()
    for href, h in hosts.items():
        mine = {pifs[p]["device"]: (p, pifs[p]) for p in h["PIFs"]}
        assert set(mine) == {"eth0", "eth1", "eth2", "eth3"}
        for dev, (_p, r) in mine.items():
            assert r["host"] == href and r["physical"] and r["currently_attached"]
            assert MAC.match(r["MAC"]), r["MAC"]
            macs.add(r["MAC"])
            assert r["VLAN"] == "-1" and r["MTU"] == "1500" and r["managed"]
            assert r["properties"] == {"gro": "on"}
            m = metrics[r["metrics"]]
            assert m["carrier"] and m["duplex"] and m["speed"] == "1000"
            assert m["vendor_name"] == "Intel Corporation" and m["device_name"]
            assert r["management"] == (dev == "eth0")
        mgmt = mine["eth0"][1]
        assert mgmt["ip_configuration_mode"] == "Static"
        assert mgmt["IP"] == w.world.host(href).address_for_url
        assert h["address"] == w.world.host(href).address
        assert x.host.get_management_interface(href) == mine["eth0"][0]
    assert len(macs) == 4 * len(hosts)
    for p in w.world.pools:
        assert p.db.check_relations() == []


def test_fresh_pool_networking():
    with running_world(POOL) as w:
        x = _session(w.master_url()).xenapi
        _check_fresh_pool(w, x)


def test_fresh_cream_pool_networking():
    with running_world(CREAM) as w:
        x = _session(w.master_url()).xenapi
        _check_fresh_pool(w, x)
        assert "capabilities" not in x.PIF.get_record(x.PIF.get_all()[0])


def test_join_maps_pifs_by_device_and_eject_gives_networks_back():
    with running_world(POOL) as w:
        x = _session(w.master_url()).xenapi
        s1 = w.host("s1")
        sx = _session(s1.url).xenapi
        priv = sx.network.create(
            {"name_label": "lab", "name_description": "", "MTU": "1500", "other_config": {}}
        )
        assert sx.network.get_bridge(priv) == "xapi0"
        sx.pool.join(w.host("a1").address, "root", "xenroot")
        nets = x.network.get_all_records()
        by_bridge = {n["bridge"]: r for r, n in nets.items()}
        # the physical networks are the pool's, one per device; the private one is re-made
        assert sorted(b for b in by_bridge if b.startswith("xenbr")) == [
            "xenbr0",
            "xenbr1",
            "xenbr2",
            "xenbr3",
        ]
        assert "xenapi" in by_bridge
        labs = [r for r, n in nets.items() if n["name_label"] == "lab"]
        assert len(labs) == 1 and nets[labs[0]]["bridge"].startswith("xapi")
        s1_pifs = x.host.get_PIFs(s1.ref)
        for p in s1_pifs:
            dev = x.PIF.get_device(p)
            assert x.PIF.get_network(p) == by_bridge[f"xenbr{dev[3:]}"]
            assert p in x.network.get_PIFs(by_bridge[f"xenbr{dev[3:]}"])
        assert len(x.network.get_PIFs(by_bridge["xenbr0"])) == 3
        assert w.world.pools[0].db.check_relations() == []
        x.pool.eject(s1.ref)
        assert all(x.PIF.get_host(p) != s1.ref for p in x.PIF.get_all())
        assert len(x.network.get_PIFs(by_bridge["xenbr0"])) == 2
        assert len(x.PIF_metrics.get_all()) == 8
        # standalone again: its own pool-wide networks and PIFs
        sx = _session(s1.url).xenapi
        bridges = sorted(n["bridge"] for n in sx.network.get_all_records().values())
        assert bridges == ["xenapi", "xenbr0", "xenbr1", "xenbr2", "xenbr3"]
        assert len(sx.PIF.get_all()) == 4
        for p in w.world.pools:
            assert p.db.check_relations() == []


def test_join_refused_with_a_vlan():
    with running_world(POOL) as w:
        s1 = w.host("s1")
        sx = _session(s1.url).xenapi
        eth1 = [p for p, r in sx.PIF.get_all_records().items() if r["device"] == "eth1"][0]
        net = sx.network.create({"name_label": "v", "other_config": {}})
        sx.VLAN.create(eth1, "5", net)
        try:
            sx.pool.join(w.host("a1").address, "root", "xenroot")
        except XenAPI.Failure as e:
            assert e.details == ["POOL_JOINING_HOST_MUST_ONLY_HAVE_PHYSICAL_PIFS"]
        else:
            raise AssertionError("join accepted a host with a VLAN")
        assert s1.pool is not w.host("a1").pool


def test_nic_count_is_a_hardware_attribute():
    from xapi_sim.world import World

    world = World(seed=3)
    h = world.add_standalone_host("two", hardware=Hardware("Haswell", nics=2))
    db = h.db
    assert sorted(db.get("PIF", p)["device"] for p in db.get("host", h.ref)["PIFs"]) == [
        "eth0",
        "eth1",
    ]
    assert sorted(r["bridge"] for _, r in db.rows("network")) == ["xenapi", "xenbr0", "xenbr1"]
    big = world.add_standalone_host("six", hardware=Hardware("Haswell", nics=6))
    assert len(big.db.get("host", big.ref)["PIFs"]) == 6
    metrics = [
        big.db.get("PIF_metrics", big.db.get("PIF", p)["metrics"])["pci_bus_path"]
        for p in big.db.get("host", big.ref)["PIFs"]
    ]
    assert metrics[4] == "0000:02:00.0"
    assert inet.nic_count(h) == 2
