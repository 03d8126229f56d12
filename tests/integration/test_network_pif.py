"""PIFs, VLANs, bonds, tunnels and the management interface over the wire with the real
``XenAPI`` client."""

from __future__ import annotations

import pytest
import XenAPI

from xapi_sim.testing import running_world

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
[[host]]
name_label = "h2"
cpu = "Haswell"
[[pool]]
name_label = "P"
master = "h1"
members = ["h2"]
[[vm]]
name_label = "pv"
domain_type = "pv"
power_state = "Running"
host = "h1"
"""

CREAM = """
[[host]]
name_label = "c1"
cpu = "Haswell"
version = "6.5.0"
"""

NULL = "OpaqueRef:NULL"


def _session(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    return s


def _err(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


class Lab:
    def __init__(self, w):
        self.w = w
        self.x = _session(w.master_url()).xenapi

    def pif(self, host, device):
        ref = self.w.host(host).ref
        return [
            p
            for p, r in self.x.PIF.get_all_records().items()
            if r["host"] == ref and r["device"] == device
        ][0]

    def net(self, name="n"):
        return self.x.network.create({"name_label": name, "other_config": {}})

    def ok(self):
        for p in self.w.world.pools:
            assert p.db.check_relations() == []


@pytest.fixture
def lab():
    with running_world(WORLD) as w:
        yield Lab(w)


def test_vlan_on_every_host_and_its_errors(lab):
    x = lab.x
    net = lab.net("vlan20")
    eth1 = lab.pif("h1", "eth1")
    pifs = x.pool.create_VLAN_from_PIF(eth1, net, "20")
    assert len(pifs) == 2
    for p in pifs:
        r = x.PIF.get_record(p)
        assert r["device"] == "eth1" and r["VLAN"] == "20" and not r["physical"]
        assert r["MAC"] == "fe:ff:ff:ff:ff:ff" and r["currently_attached"]
        assert r["IPv6"] == [""] and r["properties"] == {}
        vlan = r["VLAN_master_of"]
        assert x.VLAN.get_untagged_PIF(vlan) == p and x.VLAN.get_tag(vlan) == "20"
        tagged = x.VLAN.get_tagged_PIF(vlan)
        assert vlan in x.PIF.get_VLAN_slave_of(tagged)
        assert r["metrics"] == x.PIF.get_metrics(tagged)
    assert sorted(x.network.get_PIFs(net)) == sorted(pifs)
    other = lab.net("other")
    assert _err(x.VLAN.create, eth1, "20", other) == ["PIF_VLAN_EXISTS", "eth1"]
    assert _err(x.VLAN.create, eth1, "4095", other) == ["VLAN_TAG_INVALID", "4095"]
    assert _err(x.VLAN.create, eth1, "-1", other) == ["VLAN_TAG_INVALID", "-1"]
    assert _err(x.VLAN.create, eth1, "21", net)[0] == "NETWORK_ALREADY_CONNECTED"
    assert _err(x.VLAN.create, pifs[0], "21", other) == ["PIF_IS_VLAN", pifs[0]]
    assert _err(x.pool.create_VLAN_from_PIF, eth1, other, "5000") == ["VLAN_TAG_INVALID", "5000"]
    assert x.network.get_PIFs(other) == []  # a failed call changed nothing
    assert _err(x.PIF.destroy, eth1) == ["PIF_IS_PHYSICAL"]
    vlan0 = x.PIF.get_VLAN_master_of(pifs[0])
    x.VLAN.destroy(vlan0)
    assert pifs[0] not in x.PIF.get_all() and vlan0 not in x.VLAN.get_all()
    x.PIF.destroy(pifs[1])
    assert x.VLAN.get_all() == []
    lab.ok()


def test_pool_create_vlan_and_pif_create_vlan(lab):
    x = lab.x
    net = lab.net()
    pifs = x.pool.create_VLAN("eth2", net, "7")
    assert [x.PIF.get_host(p) for p in pifs] == x.host.get_all()
    assert _err(x.PIF.create_VLAN, "eth9", lab.net("m"), lab.w.host("h1").ref, "8") == [
        "INVALID_VALUE",
        "device",
        "eth9",
    ]
    # a member that is not live fails the pool-wide call, which then changes nothing
    h2 = lab.w.host("h2")
    pool = lab.w.world.pools[0]
    with pool.db.lock:
        pool.db.set("host_metrics", x.host.get_metrics(h2.ref), "live", False)
    n3 = lab.net("n3")
    assert _err(x.pool.create_VLAN, "eth3", n3, "9") == ["HOST_OFFLINE", h2.ref]
    assert x.network.get_PIFs(n3) == []
    # create_VLAN_from_PIF skips the dead host
    assert len(x.pool.create_VLAN_from_PIF(lab.pif("h1", "eth3"), n3, "9")) == 1
    lab.ok()


def test_bond_with_the_management_interface(lab):
    x = lab.x
    w = lab.w
    h1 = w.host("h1")
    eth0, eth1 = lab.pif("h1", "eth0"), lab.pif("h1", "eth1")
    bnet = lab.net("bond")
    bond = x.Bond.create(bnet, [eth0, eth1, eth0], "", "lacp", {"lacp-time": "fast"})
    rec = x.Bond.get_record(bond)
    assert sorted(rec["slaves"]) == sorted([eth0, eth1]) and rec["primary_slave"] == eth0
    assert rec["properties"] == {
        "lacp-fallback-ab": "true",
        "hashing_algorithm": "tcpudp_ports",
        "lacp-time": "fast",
    }
    assert list(rec["properties"]) == ["lacp-fallback-ab", "hashing_algorithm", "lacp-time"]
    master = rec["master"]
    m = x.PIF.get_record(master)
    assert m["device"] == "bond0" and m["management"] and m["currently_attached"]
    assert m["MAC"] == x.PIF.get_MAC(eth0) and m["MTU"] == "1500"
    assert m["ip_configuration_mode"] == "Static" and m["IP"] == h1.address_for_url
    assert m["bond_master_of"] == [bond] and m["properties"] == {"gro": "on"}
    for s in (eth0, eth1):
        r = x.PIF.get_record(s)
        assert r["bond_slave_of"] == bond and not r["currently_attached"]
        assert not r["management"]
    assert x.PIF.get_ip_configuration_mode(eth0) == "None"
    assert x.host.get_management_interface(h1.ref) == master
    assert x.host.get_address(h1.ref) == h1.address
    assert _err(x.Bond.create, lab.net("b2"), [eth1], "", "active-backup", {}) == [
        "PIF_ALREADY_BONDED",
        eth1,
    ]
    assert _err(x.PIF.plug, eth1) == ["CANNOT_PLUG_BOND_SLAVE", eth1]
    assert _err(x.host.management_reconfigure, eth1) == ["CANNOT_PLUG_BOND_SLAVE", eth1]
    x.Bond.set_mode(bond, "balance-slb")
    assert x.Bond.get_properties(bond) == {}
    assert _err(x.Bond.set_property, bond, "lacp-time", "fast") == [
        "INVALID_VALUE",
        "properties",
        "lacp-time = fast",
    ]
    x.Bond.destroy(bond)
    assert master not in x.PIF.get_all() and x.Bond.get_all() == []
    for s in (eth0, eth1):
        r = x.PIF.get_record(s)
        assert r["bond_slave_of"] == NULL and r["currently_attached"]
    assert x.host.get_management_interface(h1.ref) == eth0
    assert x.PIF.get_IP(eth0) == h1.address_for_url
    lab.ok()


def test_bond_errors(lab):
    x = lab.x
    a, b = lab.pif("h1", "eth2"), lab.pif("h1", "eth3")
    c = lab.pif("h2", "eth2")
    assert _err(x.Bond.create, lab.net(), [], "", "balance-slb", {}) == [
        "PIF_BOND_NEEDS_MORE_MEMBERS"
    ]
    assert _err(x.Bond.create, lab.net(), [a, c], "", "balance-slb", {}) == [
        "PIF_CANNOT_BOND_CROSS_HOST"
    ]
    assert _err(x.Bond.create, lab.net(), [a, b], "xx", "balance-slb", {}) == ["MAC_INVALID", "xx"]
    assert _err(x.Bond.create, lab.net(), [a, b], "", "balance-slb", {"k": "v"}) == [
        "INVALID_VALUE",
        "properties",
        "k = v",
    ]
    assert _err(x.Bond.create, lab.net(), [a, b], "", "lacp", {"lacp-aggregation-key": "x"}) == [
        "INVALID_VALUE",
        "properties",
        "lacp-aggregation-key = x",
    ]
    xenbr2 = x.PIF.get_network(a)
    assert (
        _err(x.Bond.create, xenbr2, [a, b], "", "balance-slb", {})[0] == "NETWORK_ALREADY_CONNECTED"
    )
    x.PIF.reconfigure_ip(a, "DHCP", "", "", "", "")
    x.PIF.reconfigure_ip(b, "DHCP", "", "", "", "")
    assert _err(x.Bond.create, lab.net(), [a, b], "", "balance-slb", {}) == [
        "PIF_BOND_MORE_THAN_ONE_IP"
    ]
    x.PIF.set_property(a, "gro", "off")
    x.PIF.reconfigure_ip(b, "None", "", "", "", "")
    assert _err(x.Bond.create, lab.net(), [a, b], "", "balance-slb", {}) == [
        "INCOMPATIBLE_PIF_PROPERTIES"
    ]
    assert x.Bond.get_all() == []
    lab.ok()


def test_bond_moves_vlans_and_vifs(lab):
    x = lab.x
    a, b = lab.pif("h1", "eth2"), lab.pif("h1", "eth3")
    vnet = lab.net("v")
    vlan = x.VLAN.create(a, "30", vnet)
    vm = [r for r, v in x.VM.get_all_records().items() if v["name_label"] == "pv"][0]
    x.VM.remove_from_other_config(vm, "mac_seed")  # scenario VMs have one
    x.VM.add_to_other_config(vm, "mac_seed", "seed")
    eth2net = x.PIF.get_network(a)
    vif = x.VIF.create(
        {
            "device": "0",
            "network": eth2net,
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    bnet = lab.net("bond")
    bond = x.Bond.create(bnet, [a, b], "", "active-backup", {})
    master = x.Bond.get_master(bond)
    assert x.VIF.get_network(vif) == bnet  # the running VM's VIF moved
    assert vlan not in x.VLAN.get_all()
    [moved] = x.PIF.get_VLAN_slave_of(master)
    untagged = x.VLAN.get_untagged_PIF(moved)
    assert x.PIF.get_device(untagged) == "bond0" and x.PIF.get_network(untagged) == vnet
    assert x.PIF.get_currently_attached(untagged)
    x.Bond.destroy(bond)
    assert x.VIF.get_network(vif) == eth2net
    [back] = x.PIF.get_VLAN_slave_of(a)
    assert x.PIF.get_device(x.VLAN.get_untagged_PIF(back)) == "eth2"
    lab.ok()


def test_reconfigure_ip_and_management(lab):
    x = lab.x
    h1 = lab.w.host("h1")
    eth0, eth1 = lab.pif("h1", "eth0"), lab.pif("h1", "eth1")
    assert _err(x.PIF.reconfigure_ip, eth1, "Static", "10.0.0.300", "255.0.0.0", "", "") == [
        "INVALID_IP_ADDRESS_SPECIFIED",
        "IP",
    ]
    assert _err(x.PIF.reconfigure_ip, eth1, "Static", "10.0.0.3", "", "", "") == [
        "INVALID_IP_ADDRESS_SPECIFIED",
        "netmask",
    ]
    assert _err(x.PIF.reconfigure_ip, eth1, "DHCP", "", "", "gw", "") == [
        "INVALID_IP_ADDRESS_SPECIFIED",
        "gateway",
    ]
    assert _err(x.PIF.reconfigure_ip, eth1, "Static", "fd00::1", "255.0.0.0", "", "") == [
        "INVALID_IP_ADDRESS_SPECIFIED",
        "IP",
    ]
    assert _err(x.PIF.reconfigure_ip, eth0, "None", "", "", "", "") == [
        "PIF_IS_MANAGEMENT_INTERFACE",
        eth0,
    ]
    assert _err(x.host.management_reconfigure, eth1) == ["PIF_HAS_NO_NETWORK_CONFIGURATION"]
    x.PIF.reconfigure_ip(eth1, "Static", "10.1.2.3", "255.255.255.0", "10.1.2.1", "10.1.2.1")
    r = x.PIF.get_record(eth1)
    assert (r["IP"], r["netmask"], r["gateway"], r["DNS"]) == (
        "10.1.2.3",
        "255.255.255.0",
        "10.1.2.1",
        "10.1.2.1",
    )
    assert _err(x.PIF.unplug, eth0) == ["PIF_IS_MANAGEMENT_INTERFACE", eth0]
    x.host.management_reconfigure(eth1)
    assert x.PIF.get_management(eth1) and not x.PIF.get_management(eth0)
    # the host's address is the new interface's; the endpoint stays where it is
    assert x.host.get_address(h1.ref) == "10.1.2.3"
    assert x.pool.get_all()  # still answering at the endpoint
    x.PIF.reconfigure_ip(eth1, "DHCP", "", "", "", "")  # the simulated DHCP: the endpoint
    assert x.PIF.get_IP(eth1) == h1.address_for_url
    assert x.host.get_address(h1.ref) == h1.address
    x.host.management_reconfigure(eth0)
    assert x.host.get_management_interface(h1.ref) == eth0
    x.host.management_disable()
    assert not any(r["management"] for r in x.PIF.get_all_records().values() if r["host"] == h1.ref)
    assert _err(x.host.get_management_interface, h1.ref) == ["INTERNAL_ERROR", "Not_found"]
    assert x.host.get_address(h1.ref) == h1.address
    x.host.management_reconfigure(eth0)
    assert x.PIF.get_management(eth0)
    assert _err(x.host.local_management_reconfigure, "xenbr0") == ["NOT_IN_EMERGENCY_MODE"]
    lab.ok()


def test_member_management_and_address_after_rebind(lab):
    x = lab.x
    w = lab.w
    h2 = w.host("h2")
    eth1 = lab.pif("h2", "eth1")
    x.PIF.reconfigure_ip(eth1, "Static", "192.168.7.7", "255.255.255.0", "", "")
    x.host.management_reconfigure(eth1)
    assert x.host.get_address(h2.ref) == "192.168.7.7"
    w.world.set_host_address(h2, h2.address)  # a re-bind keeps the moved address
    assert x.host.get_address(h2.ref) == "192.168.7.7"
    assert x.PIF.get_IP(eth1) == "192.168.7.7"


def test_pif_unplug_plug_forget_scan_introduce(lab):
    x = lab.x
    h1 = lab.w.host("h1")
    eth3 = lab.pif("h1", "eth3")
    vm = [r for r, v in x.VM.get_all_records().items() if v["name_label"] == "pv"][0]
    x.VM.remove_from_other_config(vm, "mac_seed")  # scenario VMs have one
    x.VM.add_to_other_config(vm, "mac_seed", "s")
    vif = x.VIF.create(
        {
            "device": "0",
            "network": x.PIF.get_network(eth3),
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    x.VIF.plug(vif)
    assert _err(x.PIF.unplug, eth3) == ["VIF_IN_USE", x.PIF.get_network(eth3), vif]
    x.VIF.unplug(vif)
    x.PIF.set_disallow_unplug(eth3, True)
    assert _err(x.PIF.unplug, eth3) == ["PIF_DOES_NOT_ALLOW_UNPLUG", eth3]
    x.PIF.set_disallow_unplug(eth3, False)
    x.PIF.unplug(eth3)
    assert not x.PIF.get_currently_attached(eth3)
    x.VIF.plug(vif)  # attaching the VIF brings the PIF up
    assert x.PIF.get_currently_attached(eth3)
    x.PIF.unplug(lab.pif("h1", "eth2"))
    x.PIF.plug(lab.pif("h1", "eth2"))
    mac = x.PIF.get_MAC(eth3)
    metrics = x.PIF.get_metrics(eth3)
    x.PIF.forget(eth3)
    assert eth3 not in x.PIF.get_all() and metrics not in x.PIF_metrics.get_all()
    assert _err(x.PIF.forget, lab.pif("h1", "eth0")) == [
        "PIF_IS_MANAGEMENT_INTERFACE",
        lab.pif("h1", "eth0"),
    ]
    x.PIF.scan(h1.ref)  # the NIC is found again
    again = lab.pif("h1", "eth3")
    r = x.PIF.get_record(again)
    assert r["MAC"] == mac and not r["currently_attached"] and r["ip_configuration_mode"] == "None"
    x.PIF.scan(h1.ref)  # nothing new
    assert len(x.host.get_PIFs(h1.ref)) == 4
    x.PIF.forget(again)
    assert _err(x.PIF.introduce, h1.ref, "00:11:22:33:44:55", "eth3", True) == [
        "COULD_NOT_FIND_NETWORK_INTERFACE_WITH_SPECIFIED_DEVICE_NAME_AND_MAC_ADDRESS",
        "eth3",
        "00:11:22:33:44:55",
    ]
    assert _err(x.PIF.introduce, h1.ref, "", "eth2", True) == ["DUPLICATE_PIF_DEVICE_NAME", "eth2"]
    assert _err(x.PIF.introduce, h1.ref, "zz", "eth3", True) == ["MAC_INVALID", "zz"]
    p = x.PIF.introduce(h1.ref, mac.upper(), "eth3", False)
    assert x.PIF.get_MAC(p) == mac and x.PIF.get_managed(p) is False
    assert _err(x.PIF.plug, p) == ["PIF_UNMANAGED", p]
    dbp = x.PIF.db_introduce(
        "eth9",
        lab.net("z"),
        h1.ref,
        "00:11:22:33:44:55",
        "1500",
        "-1",
        True,
        "None",
        "",
        "",
        "",
        "",
        NULL,
        NULL,
        False,
        {},
        False,
        "None",
        [],
        "",
        "IPv4",
        True,
        {},
    )
    assert not x.PIF.get_currently_attached(dbp)
    x.PIF.db_forget(dbp)
    assert dbp not in x.PIF.get_all()
    lab.ok()


def test_set_property_and_primary_address_type(lab):
    x = lab.x
    eth2 = lab.pif("h1", "eth2")
    assert _err(x.PIF.set_property, eth2, "gro", "maybe") == [
        "INVALID_VALUE",
        "properties",
        "gro = maybe",
    ]
    x.PIF.set_property(eth2, "gro", "off")
    assert x.PIF.get_properties(eth2) == {"gro": "off"}
    x.PIF.set_primary_address_type(eth2, "IPv6")
    eth0 = lab.pif("h1", "eth0")
    assert _err(x.PIF.set_primary_address_type, eth0, "IPv6") == [
        "PIF_IS_MANAGEMENT_INTERFACE",
        eth0,
    ]
    assert _err(x.PIF.reconfigure_ipv6, eth2, "Static", "fd00::1", "", "") == [
        "INVALID_CIDR_ADDRESS_SPECIFIED",
        "IPv6",
    ]
    assert _err(x.PIF.reconfigure_ipv6, eth2, "Static", "fd00::1/64", "10.0.0.1", "") == [
        "INVALID_IP_ADDRESS_SPECIFIED",
        "gateway",
    ]
    x.PIF.reconfigure_ipv6(eth2, "Static", "fd00::1/64", "fd00::ff", "")
    assert x.PIF.get_IPv6(eth2) == ["fd00::1/64"]


def test_tunnel(lab):
    x = lab.x
    eth1 = lab.pif("h1", "eth1")
    net = lab.net("t")
    x.PIF.reconfigure_ip(eth1, "Static", "10.9.9.9", "255.0.0.0", "", "")
    tunnel = x.tunnel.create(eth1, net, "gre")
    access = x.tunnel.get_access_PIF(tunnel)
    r = x.PIF.get_record(access)
    assert r["device"] == "tunnel0" and r["currently_attached"] and r["network"] == net
    assert r["metrics"] == x.PIF.get_metrics(eth1)
    assert _err(x.tunnel.create, access, lab.net("u"), "gre") == ["IS_TUNNEL_ACCESS_PIF", access]
    assert _err(x.PIF.forget, eth1) == ["PIF_TUNNEL_STILL_EXISTS", eth1]
    x.tunnel.destroy(tunnel)
    assert access not in x.PIF.get_all()
    lab.ok()


def test_cream_reconfigure_checks():
    with running_world(CREAM) as w:
        x = _session(w.master_url()).xenapi
        eth1 = [p for p, r in x.PIF.get_all_records().items() if r["device"] == "eth1"][0]
        # 6.5 SP1 accepts an address of either family
        x.PIF.reconfigure_ip(eth1, "Static", "fd00::7", "255.255.255.0", "", "")
        assert x.PIF.get_IP(eth1) == "fd00::7"
        assert _err(x.PIF.reconfigure_ipv6, eth1, "Static", "fd00::1", "", "") == [
            "INVALID_IP_ADDRESS_SPECIFIED",
            "Prefix length must be specified (format: <ipv6>/<prefix>",
        ]
        assert _err(x.PIF.reconfigure_ipv6, eth1, "Static", "fd00::1/x", "", "") == [
            "INVALID_IP_ADDRESS_SPECIFIED",
            "Cannot parse prefix length 'x'",
        ]
        assert _err(x.PIF.reconfigure_ipv6, eth1, "Static", "fd00::1/200", "", "") == [
            "INVALID_IP_ADDRESS_SPECIFIED",
            "Prefix length must be between 0 and 128",
        ]
        a, b = [p for p, r in x.PIF.get_all_records().items() if r["device"] in ("eth2", "eth3")]
        x.PIF.reconfigure_ip(a, "DHCP", "", "", "", "")
        x.PIF.reconfigure_ip(b, "DHCP", "", "", "", "")
        # no PIF_BOND_MORE_THAN_ONE_IP before 7.0
        bond = x.Bond.create(
            x.network.create({"name_label": "b", "other_config": {}}), [a, b], "", "balance-slb", {}
        )
        assert x.PIF.get_ip_configuration_mode(x.Bond.get_master(bond)) == "DHCP"
        for p in w.world.pools:
            assert p.db.check_relations() == []


def test_start_of_day_after_a_reboot_and_an_agent_restart(lab):
    x = lab.x
    h2 = lab.w.host("h2")
    eth2 = lab.pif("h2", "eth2")
    x.PIF.unplug(eth2)
    vnet = lab.net("v")
    vlan_pif = x.VLAN.get_untagged_PIF(x.VLAN.create(lab.pif("h2", "eth3"), "40", vnet))
    eth1 = lab.pif("h2", "eth1")
    x.PIF.reconfigure_ip(eth1, "Static", "192.168.9.9", "255.255.255.0", "", "")
    x.host.management_reconfigure(eth1)
    x.host.disable(h2.ref)
    x.host.reboot(h2.ref)  # synchronous in the simulator
    # physical PIFs are brought up at start of day; a VLAN without IP waits for a VM
    assert x.PIF.get_currently_attached(eth2)
    assert not x.PIF.get_currently_attached(vlan_pif)
    assert x.host.get_address(h2.ref) == "192.168.9.9"
    x.host.restart_agent(h2.ref)
    assert x.host.get_address(h2.ref) == "192.168.9.9"
    vm = [r for r, v in x.VM.get_all_records().items() if v["name_label"] == "pv"][0]
    x.VM.remove_from_other_config(vm, "mac_seed")  # scenario VMs have one
    x.VM.add_to_other_config(vm, "mac_seed", "s")
    x.VIF.create(
        {
            "device": "0",
            "network": vnet,
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    x.VM.hard_shutdown(vm)
    x.VM.start_on(vm, h2.ref, False, False)
    assert x.PIF.get_currently_attached(vlan_pif)  # attached for the VM's VIF
    lab.ok()
