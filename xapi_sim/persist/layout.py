"""The world's layout: everything about a world that is not a database row."""

from __future__ import annotations

import logging

from ..install_network import DEFAULT_NICS
from ..rowcodec import dec, enc  # noqa: F401 -- also used by importers of persist
from ..runtime import Hardware

log = logging.getLogger(__name__)

# -- world layout -------------------------------------------------------------------------


def _hw(hw):
    if hw is None:
        return None
    return {
        "cpu": hw.cpu,
        "hidden_features": list(hw.hidden_features),
        "sockets": hw.sockets,
        "cpus_per_socket": hw.cpus_per_socket,
        "memory": hw.memory,
        "mask": list(hw.mask) if hw.mask is not None else None,
        "overrides": dict(hw.overrides),
        "nics": hw.nics,
    }


def _unhw(d):
    if d is None:
        return None
    # state written before hosts had a NIC count has none: the installer's default
    return Hardware(
        d["cpu"],
        tuple(d["hidden_features"]),
        d["sockets"],
        d["cpus_per_socket"],
        d["memory"],
        tuple(d["mask"]) if d["mask"] is not None else None,
        dict(d["overrides"]),
        d.get("nics", DEFAULT_NICS),
    )


def layout(world) -> dict:
    """Everything about the world that is not a database row."""
    with world.lock:
        pools = list(world.pools)
        hosts = list(world.hosts.values())
    return {
        "user": world.user,
        "password": world.password,
        "seed": world.ids.seed,
        "pools": [
            {
                "ref": p.ref,
                "master": p.master.ref,
                "release": p.db.schema.release,
                "password": p.password,
            }
            for p in pools
        ],
        "hosts": [
            {
                "ref": h.ref,
                "uuid": h.uuid,
                "name_label": h.name_label,
                "version": h.product.version,
                "build_number": h.product.software_version_map("")["build_number"],
                "hw": _hw(h.hw),
                "next_hw": _hw(h.next_hw),
                "pool": h.pool.ref if h.pool else None,
                "state": h.state,
                "address": h.address,
                "port": h.port,
                "started_once": h.started_once,
                "disabled_until_reboot": h.disabled_until_reboot,
            }
            for h in hosts
        ],
    }


def _fingerprint(world) -> tuple:
    """What ``layout`` reads, cheaply comparable (no dicts built): a read-only call checks
    it against the journaled layout to spot a change made outside any database lock."""
    with world.lock:
        pools = list(world.pools)
        hosts = list(world.hosts.values())
    return (
        tuple((p.ref, p.master.ref, p.db.schema.release, p.password) for p in pools),
        tuple(
            (
                h.ref,
                h.uuid,
                h.name_label,
                h.product,
                h.hw,
                h.next_hw,
                h.pool.ref if h.pool else None,
                h.state,
                h.address,
                h.port,
                h.started_once,
                h.disabled_until_reboot,
            )
            for h in hosts
        ),
    )


def _norm(lay):
    """A layout in a form whose equality ignores list order."""
    if lay is None:
        return None
    return (
        lay["user"],
        lay["password"],
        lay["seed"],
        {p["ref"]: p for p in lay["pools"]},
        {h["ref"]: h for h in lay["hosts"]},
    )
