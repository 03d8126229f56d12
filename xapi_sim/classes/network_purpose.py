"""A network's ``purpose`` set (7.3 "inverness" on): xen-api ``v24.16.0`` / ``1.249-lcm``
``xapi_network.ml`` (``assert_can_add_purpose``, ``add_purpose``, ``remove_purpose``) and
``message_forwarding.ml`` (``Network.add_purpose`` / ``remove_purpose`` run on the master,
not forwarded).

* ``add_purpose``: a purpose the network already has changes nothing; otherwise no network
  of the pool -- this one included -- may have the incompatible one (``nbd`` excludes
  ``insecure_nbd`` and the reverse): ``NETWORK_INCOMPATIBLE_PURPOSES [new, conflicting]``;
  the new purpose goes first (``value :: current``).
* ``remove_purpose``: removed if present, nothing otherwise.

No NBD server is simulated: the purposes are recorded, nothing serves them.
"""

from __future__ import annotations

from ..dispatch import api
from ..errors import Failure

# Xapi_network.assert_can_add_purpose: each purpose and the purposes it cannot share a pool with
INCOMPATIBLE = {"nbd": ("insecure_nbd",), "insecure_nbd": ("nbd",)}


def conflicting_purpose(networks, new: str) -> str | None:
    """The first purpose, network by network in pool order, that ``new`` cannot coexist
    with, or None. ``networks``: the purpose lists of the pool's networks."""
    bads = INCOMPATIBLE.get(new, ())
    for purposes in networks:
        for p in purposes:
            if p in bads:
                return p
    return None


@api("network.add_purpose")
def add_purpose(call, self, value):
    db = call.db
    with db.lock:
        current = db.get("network", self)["purpose"]
        if value in current:
            return
        bad = conflicting_purpose((row["purpose"] for _, row in db.rows("network")), value)
        if bad is not None:
            raise Failure("NETWORK_INCOMPATIBLE_PURPOSES", value, bad)
        db.set("network", self, "purpose", [value, *current])


@api("network.remove_purpose")
def remove_purpose(call, self, value):
    db = call.db
    with db.lock:
        current = db.get("network", self)["purpose"]
        if value in current:
            db.set("network", self, "purpose", [p for p in current if p != value])
