"""``VM.assert_agile``: whether a VM could run on, and move to, any enabled host of its pool
-- what XenCenter's HA wizard asks of each VM before it offers to protect it.

Mirrors xen-api ``helpers.ml`` ``caching_vm_t_assert_agile`` (6.5 to 7.1) and ``agility.ml``
(8.2 on), run on the master with no operation check:

1. a VM with vGPUs: VM_HAS_VGPU [vm]; with VUSBs (8.2 on): VM_HAS_VUSBS [vm];
2. each non-empty VBD's SR must be *properly shared*: ``shared``, and a currently attached
   PBD on every enabled host -- else HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED [sr];
3. each VIF's network must be *properly shared*: a PIF that is not a bond member on every
   enabled host (a purely internal network has none, so it is not) -- else
   HA_CONSTRAINT_VIOLATION_NETWORK_NOT_SHARED [network]; from 8.2 a network of SR-IOV
   logical PIFs is VM_HAS_SRIOV_VIF [vm] (the simulator makes no SR-IOV networks; a played
   back database may hold them).

VBDs and VIFs are checked in the order of the VM's record, SRs before networks, and each SR
or network once.
"""

from __future__ import annotations

from ..allowed import since
from ..dispatch import api
from ..errors import Failure


def _enabled_hosts(db) -> set:
    return {h for h, row in db.rows("host") if row["enabled"]}


def sr_properly_shared(db, sr) -> bool:
    """``is_sr_properly_shared``."""
    row = db.get("SR", sr)
    if not row["shared"]:
        return False
    attached = set()
    for pbd in row["PBDs"]:
        p = db.get("PBD", pbd)
        if p["currently_attached"]:
            attached.add(p["host"])
    return _enabled_hosts(db) <= attached


def network_properly_shared(db, network) -> bool:
    """``is_network_properly_shared``: hosts with a non-bond-member PIF on it."""
    hosts = set()
    for pif in db.get("network", network)["PIFs"]:
        p = db.get("PIF", pif)
        if not db.exists("Bond", p["bond_slave_of"]):
            hosts.add(p["host"])
    return _enabled_hosts(db) <= hosts


def _sriov_network(db, network) -> bool:
    return any(
        db.get("PIF", p).get("sriov_logical_PIF_of") for p in db.get("network", network)["PIFs"]
    )


@api("VM.assert_agile")
def assert_agile(call, self):
    db = call.db
    with db.lock:
        row = db.get("VM", self)
        if row.get("VGPUs"):
            raise Failure("VM_HAS_VGPU", self)
        if row.get("VUSBs"):
            raise Failure("VM_HAS_VUSBS", self)
        ok: set = set()
        for vbd in row["VBDs"]:
            v = db.get("VBD", vbd)
            if v["empty"]:
                continue
            sr = db.get("VDI", v["VDI"])["SR"]
            if sr not in ok:
                if not sr_properly_shared(db, sr):
                    raise Failure("HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", sr)
                ok.add(sr)
        for vif in row["VIFs"]:
            net = db.get("VIF", vif)["network"]
            if net not in ok:
                if not network_properly_shared(db, net):
                    raise Failure("HA_CONSTRAINT_VIOLATION_NETWORK_NOT_SHARED", net)
                if since(db, "stockholm") and _sriov_network(db, net):
                    raise Failure("VM_HAS_SRIOV_VIF", self)
                ok.add(net)
