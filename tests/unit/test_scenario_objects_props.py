"""Properties of the scenario objects and the guest agent's addresses (hypothesis).

* Any scenario of SRs, networks and VMs with disks and VIFs that loads builds a world whose
  export loads back to a world with the same export (the round trip is a fixed point), and
  whose SRs account exactly for the disks put on them.
* The guest agent reports, for any VIF MAC, a 10.0.0.0/8 unicast address, the static one
  when a VIF has it, and one ``N/ip`` key per attached VIF, last device first.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapi_sim.classes import guest_agent
from xapi_sim.scenario import build, export_toml, loads

HOSTS = """
[[host]]
name_label = "h1"
[[host]]
name_label = "h2"
[[pool]]
master = "h1"
members = ["h2"]
"""

SR_TYPES = ["nfs", "ext", "lvm", "lvmoiscsi", "dummy"]
NETS = ["Pool-wide network associated with eth0", "Pool-wide network associated with eth1"]


@st.composite
def scenarios(draw):
    out = [HOSTS]
    srs = []
    for i in range(draw(st.integers(0, 3))):
        t = draw(st.sampled_from(SR_TYPES))
        shared = t in ("nfs", "lvmoiscsi")
        hosts = ["h1", "h2"] if shared else [draw(st.sampled_from(["h1", "h2"]))]
        hl = ", ".join(f'"{h}"' for h in hosts)
        # room for every disk the VMs below may put there (3 x 3 x 4 GiB) and LVM metadata:
        # the property is about the round trip, not about running out of space
        size = draw(st.integers(40, 64))
        out.append(
            f'[[sr]]\nname_label = "sr{i}"\ntype = "{t}"\nhosts = [{hl}]\nsize = "{size}GiB"\n'
        )
        srs.append((f"sr{i}", hosts))
    nets = list(NETS)
    for i in range(draw(st.integers(0, 2))):
        mtu = draw(st.sampled_from([1500, 9000]))
        out.append(f'[[network]]\nname_label = "net{i}"\nMTU = {mtu}\n')
        nets.append(f"net{i}")
    for v in range(draw(st.integers(0, 3))):
        running = draw(st.booleans())
        host = draw(st.sampled_from(["h1", "h2"]))
        disks = []
        for _ in range(draw(st.integers(0, 3))):
            usable = [n for n, hs in srs if host in hs] if running else [n for n, _ in srs]
            size = draw(st.integers(1, 4))
            sr = draw(st.sampled_from(usable)) if usable and draw(st.booleans()) else None
            disks.append(f'{{size = "{size}GiB"' + (f', sr = "{sr}"' if sr else "") + "}")
        if running and any("sr =" not in d for d in disks) and host != "h1":
            host = "h1"  # the default SR is the master's local storage
            disks = [d for d in disks if "sr =" not in d] + [
                d for d in disks if "sr =" in d and any(h == ["h1", "h2"] for n, h in srs if n in d)
            ]
        vifs = draw(st.lists(st.sampled_from(nets), max_size=3))
        lines = [
            "[[vm]]",
            f'name_label = "vm{v}"',
            f'power_state = "{"Running" if running else "Halted"}"',
            f'host = "{host}"',
            f"pv_drivers = {str(draw(st.booleans())).lower()}",
            f"disks = [{', '.join(disks)}]",
            "vifs = [" + ", ".join(f'"{n}"' for n in vifs) + "]",
        ]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_export_of_a_built_scenario_is_a_fixed_point(text):
    world = build(loads(text), seed=1)
    first = export_toml(world)
    again = export_toml(build(loads(first), seed=2))
    assert again == first
    for pool in world.pools:
        db = pool.db
        for _sr, row in db.rows("SR"):
            if row["type"] in ("nfs", "ext", "dummy"):  # thin: allocation = sum of sizes
                total = sum(db.get("VDI", v)["virtual_size"] for v in row["VDIs"])
                assert row["virtual_allocation"] == total, row["name_label"]


@given(st.lists(st.integers(0, 255), min_size=6, max_size=6))
def test_a_dhcp_address_is_a_unicast_10_address(octets):
    mac = ":".join(f"{b:02x}" for b in octets)
    ip = guest_agent._address(None, {"MAC": mac})
    parts = [int(p) for p in ip.split(".")]
    assert parts[0] == 10 and len(parts) == 4 and 1 <= parts[3] <= 254
    assert all(0 <= p <= 255 for p in parts)


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_a_static_address_is_reported_without_its_prefix(addr, prefix):
    row = {"MAC": "aa:bb:cc:dd:ee:ff", "ipv4_configuration_mode": "Static",
           "ipv4_addresses": [f"{addr}/{prefix}"]}  # fmt: skip
    assert guest_agent._address(None, row) == str(addr)


@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=7, unique_by=lambda t: t[0]))
def test_networks_has_one_key_per_attached_vif_last_device_first(vifs):
    table = {
        f"OpaqueRef:{d}": {
            "device": str(d),
            "currently_attached": a,
            "MAC": f"02:00:00:00:00:{d:02x}",
        }
        for d, a in vifs
    }

    class Db:
        tables = {"VIF": table}

    nets = guest_agent.networks(Db(), {"VIFs": list(table)})
    attached = sorted((d for d, a in vifs if a), reverse=True)
    assert list(nets) == [f"{d}/ip" for d in attached]
