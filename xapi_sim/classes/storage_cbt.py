"""VDI changed block tracking (Ely on; 8.2 CU1, XenServer 8, XCP-ng 8.3): ``VDI.enable_cbt``,
``disable_cbt``, ``data_destroy``, ``list_changed_blocks``.

Mirrors xen-api 1.249-lcm (v23.30.0 and v24.19.2 are the same here) ``xapi_vdi.ml``
(``change_cbt_status``, ``_data_destroy`` / ``destroy_and_data_destroy_common``,
``list_changed_blocks``), ``message_forwarding.ml`` ``module VDI`` (``with_sr_andor_vdi``
with the SR's ``vdi_enable_cbt``/... and the VDI's operation -- ``checks/storage.py`` --,
then ``forward_vdi_op``: ``SR_NO_PBDS [sr]``), ``pool_features.ml`` (``assert_enabled``
``CBT``: ``LICENCE_RESTRICTION ["CBT"]`` unless the pool's ``restrictions`` say
``restrict_cbt=false``) and the SM side, sm v2.30.7 ``drivers/VDI.py``
(``configure_blocktracking``, ``data_destroy``, ``list_changed_blocks``) and
``FileSR.py``/``LVHDSR.py``; the logs and the bitmap are ``cbt_log.py``.

The SM's part runs with no database lock held (the operation stays in
``current_operations`` meanwhile), as xapi calls the SM with the operation marked.
"""

from __future__ import annotations

import logging
import time

from ..cbt_log import CbtLogs, changed_blocks, encode_bitmap
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from ..vdi_store import VdiStore
from .storage_sr import assert_pbd_is_plugged, choose_pbd
from .storage_vdi import assert_managed, refresh_vdi, sr_andor_vdi

log = logging.getLogger(__name__)

# sm v2.30.7 drivers/XE_SR_ERRORCODES.xml CBTChangedBlocksError, as sm_exec reports it
_CHANGED_BLOCKS_ERROR = (460, "Failed to calculate changed blocks for given VDIs.")
# xapi_vdi.ml data_destroy: how long it waits for the VDI's VBDs to go
DATA_DESTROY_TIMEOUT = 4.0


def _sm_changed_blocks_error(opterr: str) -> Failure:
    code, text = _CHANGED_BLOCKS_ERROR
    return Failure(f"SR_BACKEND_FAILURE_{code}", "", f"{text} [opterr={opterr}]", "")


def assert_cbt_licensed(db) -> None:
    """``Pool_features.assert_enabled ~f:CBT``: ``Features.of_assoc_list`` takes a missing
    ``restrict_cbt`` as restricted."""
    for _, pool in db.tables["pool"].items():
        if pool["restrictions"].get("restrict_cbt") != "false":
            raise Failure("LICENCE_RESTRICTION", "CBT")


def _change_cbt_status(call, self, enable: bool) -> None:
    """``change_cbt_status``: nothing if the flag already says so; else the SM's
    ``configure_blocktracking`` (a log made or removed) and ``cbt_enabled`` set."""
    db, world = call.db, call.world
    op = "enable_cbt" if enable else "disable_cbt"
    with db.lock:
        sr = db.get("VDI", self)["SR"]
    with sr_andor_vdi(call, sr=(sr, "vdi_" + op), vdi=(self, op)) as mark:
        with db.lock:
            choose_pbd(call, sr)
            if enable:
                assert_cbt_licensed(db)
            row = db.get("VDI", self)
            if row["cbt_enabled"] == enable:
                log.debug("VDI.%s: Not doing anything, CBT is already %s", op, op[:-4] + "d")
                return
            mark()
            size = row["virtual_size"]
        world.txm.checkpoint()
        logs = CbtLogs.of(world)
        if enable:
            logs.enable(self, size)
        else:
            logs.disable(self)
        with db.lock:
            if db.exists("VDI", self):
                db.set("VDI", self, "cbt_enabled", enable)
                refresh_vdi(call, self)


@api("VDI.enable_cbt")
def vdi_enable_cbt(call, self):
    _change_cbt_status(call, self, True)


@api("VDI.disable_cbt")
def vdi_disable_cbt(call, self):
    _change_cbt_status(call, self, False)


def _wait_for_vbds_to_go(call, self) -> None:
    """``wait_for_vbds_to_be_unplugged_and_destroyed``: up to 4 s for the VDI's VBDs to be
    destroyed (the database lock released while waiting), else
    ``VDI_IN_USE [vdi, "data_destroy"]``."""
    db = call.db
    deadline = time.monotonic() + DATA_DESTROY_TIMEOUT
    while db.get("VDI", self)["VBDs"]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure("VDI_IN_USE", self, "data_destroy")
        db.cond.wait(min(left, 1.0))


@api("VDI.data_destroy")
def vdi_data_destroy(call, self):
    """``_data_destroy``: nothing for a ``cbt_metadata`` VDI; else (a plugged PBD, a managed
    VDI, its VBDs gone) the type becomes ``cbt_metadata``, the SM deletes the data keeping
    the CBT log (``delete(data_only=True)``), and VMs whose ``suspend_VDI`` it was lose it.
    ``virtual_size`` and ``physical_utilisation`` stay as they were: xapi does not touch
    them and the SM does not update the record (``FileVDI.delete`` skips ``_db_forget``)."""
    db, world = call.db, call.world
    with db.lock:
        row = db.get("VDI", self)
        sr = row["SR"]
    with sr_andor_vdi(call, sr=(sr, "vdi_data_destroy"), vdi=(self, "data_destroy")) as mark:
        with db.lock:
            choose_pbd(call, sr)
            if db.get("VDI", self)["type"] == "cbt_metadata":
                return
            assert_pbd_is_plugged(call, sr)
            assert_managed(db, self)
            _wait_for_vbds_to_go(call, self)
            mark()
            db.set("VDI", self, "type", "cbt_metadata")
            for vm, vrow in list(db.tables["VM"].items()):
                if vrow["suspend_VDI"] == self:
                    db.set("VM", vm, "suspend_VDI", NULL_REF)
            size = db.get("VDI", self)["virtual_size"]
            refresh_vdi(call, self)
        world.txm.checkpoint()
        CbtLogs.of(world).keep_digests(self, size)
        VdiStore.of(world).remove(self)


@api("VDI.list_changed_blocks")
def vdi_list_changed_blocks(call, vdi_from, vdi_to):
    """The SR of ``vdi_to`` and ``vdi_to`` checked and marked; the SM's
    ``list_changed_blocks``: the same VDI twice, or VDIs not both CBT-enabled on one chain
    with ``vdi_to`` after ``vdi_from``, answer ``SR_BACKEND_FAILURE_460``; else the base64
    bitmap of the blocks that differ, as long as ``vdi_to``'s size asks (``cbt_log.py``)."""
    db, world = call.db, call.world
    with db.lock:
        sr = db.get("VDI", vdi_to)["SR"]
    with sr_andor_vdi(
        call, sr=(sr, "vdi_list_changed_blocks"), vdi=(vdi_to, "list_changed_blocks")
    ) as mark:
        with db.lock:
            choose_pbd(call, sr)
            frm = db.get("VDI", vdi_from)
            to = db.get("VDI", vdi_to)
            mark()
        world.txm.checkpoint()
        answer = _sm_list_changed_blocks(world, vdi_from, frm, vdi_to, to)
    if isinstance(answer, Failure):
        # the SM failed after the operation was marked: its clean-up stands
        world.txm.checkpoint()
        raise answer
    return answer


def _sm_list_changed_blocks(world, vdi_from, frm, vdi_to, to) -> str | Failure:
    """sm ``VDI.list_changed_blocks``: the bitmap, or the backend's error."""
    if frm["location"] == to["location"]:
        return _sm_changed_blocks_error("Source and target VDI are same")
    logs = CbtLogs.of(world)
    if not logs.related(vdi_from, vdi_to):
        return _sm_changed_blocks_error("Source and target VDI are unrelated")
    size = to["virtual_size"]
    blocks = changed_blocks(
        logs.digests(vdi_from, frm["virtual_size"]), logs.digests(vdi_to, size), size
    )
    return encode_bitmap(blocks, size)
