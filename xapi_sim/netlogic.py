"""Pure network facts xapi checks and derives (xen-api Dundee, ``dundee-lcm``).

* ``xapi_pif.ml`` ``bridge_naming_convention``; ``helpers.ml``
  ``choose_network_name_for_pif``, ``is_valid_MAC``, ``is_valid_ip``, ``parse_cidr``;
  6.5 SP1's ``Xapi_pif.is_valid_ip`` (either family).
* ``xapi_vif_helpers.ml`` ``gen_mac`` with ``Record_util.mac_from_int_array``.
* OCaml's ``int_of_string`` on a 64-bit runtime, as the PIF and VLAN handlers parse numbers.
"""

from __future__ import annotations

import hashlib
import re
import socket

from .checks.operations import ocaml_int_of_string

_SCANF_INT = re.compile(r"[+-]?[0-9][0-9_]*")


def bridge_naming_convention(device: str) -> str:
    """``Xapi_pif.bridge_naming_convention``: ``ethN`` -> ``xenbrN``, else ``br<device>``."""
    return "xenbr" + device[3:] if device.startswith("eth") else "br" + device


def pool_network_name(device: str) -> str:
    """``Helpers.choose_network_name_for_pif``."""
    return f"Pool-wide network associated with {device}"


def mac_from_int_array(octets) -> str:
    """``Record_util.mac_from_int_array``: the local bit set, the multicast bit cleared."""
    octets = list(octets)
    octets[0] = (octets[0] | 0x2) & ~0x1
    return ":".join(f"{o & 0xFF:02x}" for o in octets)


def gen_mac(dev: int, seed: str) -> str:
    """``Xapi_vif_helpers.gen_mac (dev, seed)``: MD5 applied ``2 * dev + 1`` times to the
    seed gives ``h1``; ``h2 = MD5(h1)``; the MAC is ``h1[0..3] @ h2[1..2]`` through
    :func:`mac_from_int_array`. ``dev`` must be >= 0 (xapi loops forever otherwise)."""
    if dev < 0:
        raise ValueError("negative device")
    acc = seed.encode()
    for _ in range(2 * dev + 1):
        acc = hashlib.md5(acc).digest()
    h2 = hashlib.md5(acc).digest()
    return mac_from_int_array([acc[0], acc[1], acc[2], acc[3], h2[1], h2[2]])


_HEX = set("0123456789abcdefABCDEF")


def is_valid_mac(mac: str) -> bool:
    """``Helpers.is_valid_MAC``: six ``:``-separated groups of exactly two hex digits."""
    parts = mac.split(":")
    return len(parts) == 6 and all(len(p) == 2 and p[0] in _HEX and p[1] in _HEX for p in parts)


def is_valid_ip(kind: str, address: str) -> bool:
    """``Helpers.is_valid_ip``: ``Unix.inet_addr_of_string`` (``inet_pton``) gives an
    address of the family ``kind`` (``"ipv4"``/``"ipv6"``)."""
    if not isinstance(address, str) or "\x00" in address:
        return False
    family = socket.AF_INET if kind == "ipv4" else socket.AF_INET6
    try:
        socket.inet_pton(family, address)
    except (OSError, ValueError):
        return False
    return True


def is_ip_any(address: str) -> bool:
    """6.5 SP1's ``Xapi_pif.is_valid_ip``: either family."""
    return is_valid_ip("ipv4", address) or is_valid_ip("ipv6", address)


def parse_cidr(kind: str, cidr: str):
    """``Helpers.parse_cidr``: ``Scanf.sscanf cidr "%s@/%d"`` -- everything before the first
    ``/`` is the address, then a decimal integer (sign, digits and ``_``; trailing text is
    ignored); the address must be of family ``kind`` and the prefix 0..32 / 0..128.
    Returns (address, prefix) or None."""
    address, slash, rest = cidr.partition("/")
    if not slash:
        return None
    m = _SCANF_INT.match(rest)
    if m is None:
        return None
    try:
        prefix = int(m.group().replace("_", ""))
    except ValueError:
        return None
    if not is_valid_ip(kind, address):
        return None
    if prefix < 0 or (kind == "ipv4" and prefix > 32) or (kind == "ipv6" and prefix > 128):
        return None
    return address, prefix


def ocaml_int(s: str) -> int:
    """OCaml's ``int_of_string`` on a 64-bit runtime (63-bit ints), ValueError on failure."""
    n = ocaml_int_of_string(s)
    body = s.lstrip("+-")
    if len(body) > 1 and body[0] == "0" and body[1] in "xXoObB":
        if abs(n) >= 1 << 63:
            raise ValueError(s)
        return n
    if not -(1 << 62) <= n <= (1 << 62) - 1:
        raise ValueError(s)
    return n
