"""Pure network logic (xapi_sim/install_network.py): MAC generation and validation, CIDR
and address parsing, bridge names, NIC identities -- hypothesis properties and pinned values
computed step by step from xen-api's definitions."""

from __future__ import annotations

import hashlib
import ipaddress
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim import install_network as inet
from xapi_sim import netlogic

HEX = "0123456789abcdef"


def _gen_mac_by_hand(dev, seed):
    """``Xapi_vif_helpers.gen_mac`` spelled out: ``chain (dev*2) hash seed`` is
    ``Digest.string`` applied dev*2 times then once more."""
    acc = seed.encode()
    for _ in range(dev * 2):
        acc = hashlib.md5(acc).digest()
    h1 = hashlib.md5(acc).digest()
    h2 = hashlib.md5(h1).digest()
    b = [h1[0], h1[1], h1[2], h1[3], h2[1], h2[2]]
    b[0] = (b[0] | 2) & ~1
    return ":".join(f"{x:02x}" for x in b)


def test_gen_mac_pinned():
    seed = "8f6d9c4e-3c7b-4d5e-a9f1-2b3c4d5e6f70"
    assert netlogic.gen_mac(0, seed) == _gen_mac_by_hand(0, seed)
    assert netlogic.gen_mac(3, seed) == _gen_mac_by_hand(3, seed)
    # one MD5 for device 0: bytes 0-3 of MD5(seed), bytes 1-2 of MD5(MD5(seed))
    h1 = hashlib.md5(seed.encode()).digest()
    h2 = hashlib.md5(h1).digest()
    first = (h1[0] | 2) & ~1
    assert netlogic.gen_mac(0, seed) == ":".join(
        f"{x:02x}" for x in (first, h1[1], h1[2], h1[3], h2[1], h2[2])
    )


@given(st.integers(0, 40), st.text(max_size=40))
def test_gen_mac_is_a_valid_local_unicast_mac(dev, seed):
    mac = netlogic.gen_mac(dev, seed)
    assert netlogic.is_valid_mac(mac)
    first = int(mac[:2], 16)
    assert first & 2 and not first & 1
    assert mac == mac.lower()


@given(st.text(max_size=12), st.integers(0, 20), st.integers(0, 20))
def test_gen_mac_differs_per_device(seed, a, b):
    if a != b:
        assert netlogic.gen_mac(a, seed) != netlogic.gen_mac(b, seed)


def test_gen_mac_refuses_negative_devices():
    with pytest.raises(ValueError):
        netlogic.gen_mac(-1, "seed")


@given(st.lists(st.text(alphabet=HEX + "ABCDEFgx:", min_size=0, max_size=3), max_size=8))
def test_is_valid_mac_matches_the_definition(parts):
    mac = ":".join(parts)
    want = (
        len(parts) == 6
        and all(len(p) == 2 and all(c in HEX + "ABCDEF" for c in p) for p in parts)
        and ":" not in "".join(parts)
    )
    assert netlogic.is_valid_mac(mac) == want


def test_is_valid_mac_examples():
    assert netlogic.is_valid_mac("00:16:3E:aa:bb:cc")
    for bad in (
        "",
        "00:16:3e:aa:bb",
        "00:16:3e:aa:bb:cc:dd",
        "0:16:3e:aa:bb:cc",
        "02:1a:a4:85:-2:0c",
        "00-16-3e-aa-bb-cc",
        "0g:16:3e:aa:bb:cc",
    ):
        assert not netlogic.is_valid_mac(bad), bad


@given(st.text(max_size=30))
def test_nic_macs_are_well_formed_and_consecutive(uuid):
    macs = [inet.nic_mac(uuid, i) for i in range(8)]
    assert all(netlogic.is_valid_mac(m) and m.startswith("a0:36:9f:") for m in macs)
    lows = [int(m.replace(":", "")[6:], 16) for m in macs]
    assert lows == [(lows[0] + i) & 0xFFFFFF for i in range(8)]


@given(st.ip_addresses(v=4), st.integers(-5, 40))
def test_parse_cidr_ipv4(addr, prefix):
    got = netlogic.parse_cidr("ipv4", f"{addr}/{prefix}")
    assert got == ((str(addr), prefix) if 0 <= prefix <= 32 else None)


@given(st.ip_addresses(v=6), st.integers(0, 200))
def test_parse_cidr_ipv6(addr, prefix):
    got = netlogic.parse_cidr("ipv6", f"{addr}/{prefix}")
    assert got == ((str(addr), prefix) if prefix <= 128 else None)


def test_parse_cidr_follows_scanf():
    # "%s@/%d": trailing text after the number is ignored, '_' is a digit separator, a
    # sign is allowed; the number must start right after the '/'
    assert netlogic.parse_cidr("ipv4", "10.0.0.1/24abc") == ("10.0.0.1", 24)
    assert netlogic.parse_cidr("ipv4", "10.0.0.1/2_4") == ("10.0.0.1", 24)
    assert netlogic.parse_cidr("ipv4", "10.0.0.1/+8") == ("10.0.0.1", 8)
    for bad in (
        "10.0.0.1",
        "10.0.0.1/",
        "10.0.0.1/ 24",
        "10.0.0.1/x",
        "fe80::1/64",
        "10.0.0.1/-1",
        "10.0.0.256/8",
        "/8",
    ):
        assert netlogic.parse_cidr("ipv4", bad) is None, bad
    assert netlogic.parse_cidr("ipv6", "fe80::1/64") == ("fe80::1", 64)


@given(st.text(max_size=20))
def test_is_valid_ip_agrees_with_ipaddress_on_canonical_forms(text):
    try:
        want4 = str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        want4 = False
    if want4:
        assert netlogic.is_valid_ip("ipv4", text)
    assert not (netlogic.is_valid_ip("ipv4", text) and netlogic.is_valid_ip("ipv6", text))


def test_ocaml_int():
    assert netlogic.ocaml_int("12") == 12
    assert netlogic.ocaml_int("0x10") == 16
    assert netlogic.ocaml_int("-3") == -3
    assert netlogic.ocaml_int("1_0") == 10
    for bad in ("", "a", "1.0", " 1", "_1", str(1 << 62)):
        with pytest.raises(ValueError):
            netlogic.ocaml_int(bad)


def test_bridge_naming_convention():
    assert netlogic.bridge_naming_convention("eth0") == "xenbr0"
    assert netlogic.bridge_naming_convention("eth12") == "xenbr12"
    assert netlogic.bridge_naming_convention("bond0") == "brbond0"


class _FakeDb:
    def __init__(self, order):
        self.order = order


class _FakeWorld:
    def __init__(self):
        self._s = {}

    def service(self, cls):
        return self._s.setdefault(cls, cls(self))


def test_bridge_names_counter_skips_used_names_and_never_repeats():
    names = inet.BridgeNames(None)
    db = _FakeDb(1)
    assert names.choose(db, ["xenbr0"]) == "xapi0"
    assert names.choose(db, ["xapi1"]) == "xapi2"  # xapi1 in use: skipped
    assert names.choose(db, []) == "xapi3"  # the counter never goes back
    assert names.choose(_FakeDb(2), []) == "xapi0"  # one counter per pool database


def test_bridge_names_many_threads():
    names = inet.BridgeNames.of(_FakeWorld())
    db = _FakeDb(3)
    out, lock = [], threading.Lock()

    def work():
        for _ in range(200):
            n = names.choose(db, [])
            with lock:
                out.append(n)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 1600 and len(set(out)) == 1600
    assert set(out) == {f"xapi{i}" for i in range(1600)}
