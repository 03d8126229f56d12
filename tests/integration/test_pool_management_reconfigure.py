"""``pool.management_reconfigure`` (7.2 on) and ``host.management_reconfigure``'s 8.2 checks
(``Xapi_pif.assert_usable_for_management``: the errors name the PIF) -- over the XenAPI
package (``classes/network_management.py``)."""

from __future__ import annotations

from session_kit import failure, logged_in

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{v}"
[[host]]
name_label = "h2"
cpu = "Haswell"
version = "{v}"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
"""


def _pifs(x, device):
    """{host ref: PIF ref} of the physical PIFs named ``device``."""
    return {
        r["host"]: p
        for p, r in x.PIF.get_all_records().items()
        if r["device"] == device and r["VLAN"] == "-1"
    }


def test_pool_management_reconfigure_moves_every_host():
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        h1, h2 = x.host.get_by_name_label("h1")[0], x.host.get_by_name_label("h2")[0]
        eth1 = _pifs(x, "eth1")
        net = x.PIF.get_network(eth1[h1])
        # 8.2: no IP configuration, named
        assert failure(x.pool.management_reconfigure, net)[0:1] == [
            "PIF_HAS_NO_NETWORK_CONFIGURATION"
        ]
        assert failure(x.host.management_reconfigure, eth1[h2]) == [
            "PIF_HAS_NO_NETWORK_CONFIGURATION",
            eth1[h2],
        ]
        for i, pif in enumerate(sorted(eth1.values())):
            x.PIF.reconfigure_ip(pif, "Static", f"10.9.0.{i + 10}", "255.255.255.0", "", "")
        # a network without a PIF on every host
        internal = x.network.create(
            {"name_label": "inside", "name_description": "", "MTU": "1500", "other_config": {}}
        )
        got = failure(x.pool.management_reconfigure, internal)
        assert got[0] == "PIF_NOT_PRESENT" and got[2] == internal and got[1] in (h1, h2)
        x.pool.management_reconfigure(net)
        for host, pif in eth1.items():
            assert x.PIF.get_management(pif)
            assert x.PIF.get_management(_pifs(x, "eth0")[host]) is False
            assert x.host.get_address(host) == x.PIF.get_IP(pif)
        x.pool.management_reconfigure(net)  # already there: nothing to do
        assert all(x.PIF.get_management(p) for p in eth1.values())


def test_a_dead_member_stops_it_before_the_master():
    with logged_in(WORLD.format(v="xcp-ng-8.3")) as (w, s):
        x = s.xenapi
        h1, h2 = x.host.get_by_name_label("h1")[0], x.host.get_by_name_label("h2")[0]
        eth1 = _pifs(x, "eth1")
        for pif in eth1.values():
            x.PIF.reconfigure_ip(pif, "DHCP", "", "", "", "")
        x.sim.host_crash(h2)
        assert failure(x.pool.management_reconfigure, x.PIF.get_network(eth1[h1])) == [
            "HOST_OFFLINE",
            h2,
        ]
        assert x.PIF.get_management(eth1[h1]) is False  # the failed call changed nothing


def test_dundee_keeps_its_parameterless_errors_and_has_no_pool_call():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        h1 = x.host.get_by_name_label("h1")[0]
        eth1 = _pifs(x, "eth1")
        assert failure(x.host.management_reconfigure, eth1[h1]) == [
            "PIF_HAS_NO_NETWORK_CONFIGURATION"
        ]
        assert failure(x.pool.management_reconfigure, x.PIF.get_network(eth1[h1]))[0] == (
            "MESSAGE_METHOD_UNKNOWN"
        )
