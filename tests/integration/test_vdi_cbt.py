"""VDI changed block tracking (``storage_cbt.py``, ``cbt_log.py``) over the XenAPI package:
enable/disable, snapshots carrying ``cbt_enabled``, ``data_destroy`` turning a snapshot into
``cbt_metadata``, ``list_changed_blocks`` between snapshots as Xen Orchestra's delta backup
calls it, the refusals of xen-api 1.249-lcm's ``check_operation_error``, and ``xe``."""

from __future__ import annotations

import base64
import time

from disk_kit import MiB, new_vdi, request
from session_kit import failure, logged_in

from xapi_sim.cbt_log import CBT_BLOCK_SIZE, bitmap_bytes, decode_bitmap

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{v}"
[[vm]]
name_label = "guest"
"""

SIZE = 4 * MiB


def _sr(s, kind=("lvm", "ext")):
    for r, rec in s.xenapi.SR.get_all_records().items():
        if rec["type"] in kind:
            return r
    raise AssertionError(kind)


def _put(w, s, vdi, data):
    """``PUT /import_raw_vdi`` of the whole disk, waited for through its task."""
    m = w.world.pools[0].master
    task = s.xenapi.task.create("upload", "")
    q = f"/import_raw_vdi?session_id={s._session}&vdi={vdi}&task_id={task}"
    assert request(m, "PUT", q, data)[0] == 200
    deadline = time.monotonic() + 10
    while s.xenapi.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.xenapi.task.get_status(task) == "success"


def _disk(*blocks):
    """A disk image of SIZE bytes with block i (64 KiB) holding byte value v for each (i, v)."""
    data = bytearray(SIZE)
    for i, v in blocks:
        data[i * CBT_BLOCK_SIZE : (i + 1) * CBT_BLOCK_SIZE] = bytes([v]) * CBT_BLOCK_SIZE
    return bytes(data)


def test_delta_backup_flow_as_xen_orchestra_does_it():
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        vdi = new_vdi(s, _sr(s), SIZE)
        _put(w, s, vdi, _disk((0, 1), (5, 2), (40, 3)))
        assert x.VDI.get_cbt_enabled(vdi) is False
        x.VDI.enable_cbt(vdi)
        assert x.VDI.get_cbt_enabled(vdi) is True
        x.VDI.enable_cbt(vdi)  # already enabled: nothing
        # CA-260245: the CBT operations never show in allowed_operations
        assert not {"enable_cbt", "disable_cbt", "data_destroy", "list_changed_blocks"} & set(
            x.VDI.get_allowed_operations(vdi)
        )
        # a snapshot carries CBT, a clone does not
        s1 = x.VDI.snapshot(vdi, {})
        assert x.VDI.get_cbt_enabled(s1) is True
        clone = x.VDI.clone(vdi, {})
        assert x.VDI.get_cbt_enabled(clone) is False
        # the first backup exported s1; its data goes, its CBT metadata stays
        size_before = x.VDI.get_virtual_size(s1)
        x.VDI.data_destroy(s1)
        rec = x.VDI.get_record(s1)
        assert rec["type"] == "cbt_metadata" and rec["cbt_enabled"] is True
        assert rec["virtual_size"] == size_before
        x.VDI.data_destroy(s1)  # already cbt_metadata: nothing
        # the guest writes: block 5 changes, block 7 appears, block 40 is rewritten the same
        _put(w, s, vdi, _disk((0, 1), (5, 9), (7, 4), (40, 3)))
        s2 = x.VDI.snapshot(vdi, {})
        bitmap = x.VDI.list_changed_blocks(s1, s2)
        raw = base64.b64decode(bitmap)
        assert len(raw) == bitmap_bytes(SIZE) == SIZE // CBT_BLOCK_SIZE // 8
        assert decode_bitmap(bitmap) == [5, 7]
        assert raw[0] == 0b00000101  # block 5 and 7: most significant bit first
        # Xen Orchestra's reading: 32 CBT blocks (4 bytes) per 2 MiB VHD block
        assert [i for i in range(len(raw) // 4) if int.from_bytes(raw[i * 4 : i * 4 + 4])] == [0]
        # the chain runs s1 -> s2 -> vdi; listing backwards or between unrelated VDIs fails
        assert decode_bitmap(x.VDI.list_changed_blocks(s1, vdi)) == [5, 7]
        assert decode_bitmap(x.VDI.list_changed_blocks(s2, vdi)) == []
        text = "Failed to calculate changed blocks for given VDIs. [opterr={}]"
        assert failure(x.VDI.list_changed_blocks, s2, s1) == [
            "SR_BACKEND_FAILURE_460",
            "",
            text.format("Source and target VDI are unrelated"),
            "",
        ]
        assert failure(x.VDI.list_changed_blocks, s2, s2)[2] == text.format(
            "Source and target VDI are same"
        )
        assert failure(x.VDI.list_changed_blocks, clone, s2)[2] == text.format(
            "Source and target VDI are unrelated"
        )
        # destroying the middle snapshot relinks the chain
        x.VDI.destroy(s2)
        assert decode_bitmap(x.VDI.list_changed_blocks(s1, vdi)) == [5, 7]
        # disabling CBT ends the chain
        x.VDI.disable_cbt(vdi)
        assert x.VDI.get_cbt_enabled(vdi) is False
        assert failure(x.VDI.list_changed_blocks, s1, vdi)[0] == "SR_BACKEND_FAILURE_460"
        assert x.VDI.get_current_operations(vdi) == {}


def test_operation_checks():
    with logged_in(WORLD.format(v="xcp-ng-8.3")) as (w, s):
        x = s.xenapi
        vdi = new_vdi(s, _sr(s), SIZE)
        # data_destroy: only a snapshot, only with CBT metadata
        assert failure(x.VDI.data_destroy, vdi) == [
            "OPERATION_NOT_ALLOWED",
            f"VDI is not a snapshot: {vdi}",
        ]
        plain = x.VDI.snapshot(vdi, {})
        assert failure(x.VDI.data_destroy, plain) == ["VDI_NO_CBT_METADATA", plain]
        # enable/disable: not on a snapshot, only user/system VDIs
        assert failure(x.VDI.enable_cbt, plain) == [
            "OPERATION_NOT_ALLOWED",
            f"VDI is a snapshot: {plain}",
        ]
        x.VDI.enable_cbt(vdi)
        snap = x.VDI.snapshot(vdi, {})
        x.VDI.data_destroy(snap)
        # a cbt_metadata VDI cannot be cloned, copied, snapshotted or resized
        for fn in (x.VDI.clone, x.VDI.snapshot):
            assert failure(fn, snap, {}) == ["VDI_INCOMPATIBLE_TYPE", snap, "CBT metadata"]
        assert failure(x.VDI.resize, snap, str(2 * SIZE)) == [
            "VDI_INCOMPATIBLE_TYPE",
            snap,
            "CBT metadata",
        ]
        assert "clone" not in x.VDI.get_allowed_operations(snap)
        # an ISO has no CBT on its SR
        isos = [r for r, rec in x.SR.get_all_records().items() if rec["type"] == "iso"]
        for sr in isos:
            for v in x.SR.get_VDIs(sr):
                assert failure(x.VDI.enable_cbt, v) == ["SR_OPERATION_NOT_SUPPORTED", sr]
        assert isos
        # list_changed_blocks is refused while the disk is attached to a running VM;
        # enable/disable run live
        vm = x.VM.get_by_name_label("guest")[0]
        x.VBD.create(
            {
                "VM": vm,
                "VDI": vdi,
                "userdevice": "0",
                "bootable": True,
                "mode": "RW",
                "type": "Disk",
                "unpluggable": True,
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
        x.VM.start(vm, False, False)
        assert failure(x.VDI.list_changed_blocks, snap, vdi) == [
            "VDI_IN_USE",
            vdi,
            "list_changed_blocks",
        ]
        x.VDI.disable_cbt(vdi)
        x.VDI.enable_cbt(vdi)
        x.VM.hard_shutdown(vm)


def test_data_destroy_waits_for_vbds():
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        vdi = new_vdi(s, _sr(s), SIZE)
        x.VDI.enable_cbt(vdi)
        snap = x.VDI.snapshot(vdi, {})
        vm = x.VM.get_by_name_label("guest")[0]
        x.VBD.create(
            {
                "VM": vm,
                "VDI": snap,
                "userdevice": "3",
                "bootable": False,
                "mode": "RO",
                "type": "Disk",
                "unpluggable": True,
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
        t0 = time.monotonic()
        assert failure(x.VDI.data_destroy, snap) == ["VDI_IN_USE", snap, "data_destroy"]
        assert time.monotonic() - t0 >= 3.5
        assert x.VDI.get_type(snap) == "user"


def test_older_releases_have_no_cbt():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        vdi = new_vdi(s, _sr(s), SIZE)
        assert failure(x.VDI.enable_cbt, vdi)[0] == "MESSAGE_METHOD_UNKNOWN"


def test_licence_restriction():
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        vdi = new_vdi(s, _sr(s), SIZE)
        pool = x.pool.get_all()[0]
        db = w.world.pools[0].db
        with db.lock:
            r = dict(db.tables["pool"][pool]["restrictions"], restrict_cbt="true")
            db.set("pool", pool, "restrictions", r)
        w.world.txm.checkpoint()
        assert failure(x.VDI.enable_cbt, vdi) == ["LICENCE_RESTRICTION", "CBT"]
        assert x.VDI.get_cbt_enabled(vdi) is False


def test_xe_commands(tmp_path):
    from test_xe import XE, xe

    assert XE is not None
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        vdi = new_vdi(s, _sr(s), SIZE)
        _put(w, s, vdi, _disk((1, 7)))
        uuid = x.VDI.get_uuid(vdi)
        host = x.host.get_name_label(x.host.get_all()[0])
        assert xe(w, tmp_path, f"vdi-enable-cbt uuid={uuid}", host=host).rc == 0
        assert x.VDI.get_cbt_enabled(vdi) is True
        s1 = x.VDI.snapshot(vdi, {})
        r = xe(w, tmp_path, f"vdi-data-destroy uuid={x.VDI.get_uuid(s1)}", host=host)
        assert (r.rc, r.out) == (0, "")
        assert x.VDI.get_type(s1) == "cbt_metadata"
        _put(w, s, vdi, _disk((1, 7), (3, 1)))
        s2 = x.VDI.snapshot(vdi, {})
        r = xe(
            w,
            tmp_path,
            f"vdi-list-changed-blocks vdi-from-uuid={x.VDI.get_uuid(s1)} "
            f"vdi-to-uuid={x.VDI.get_uuid(s2)}",
            host=host,
        )
        assert r.rc == 0 and decode_bitmap(r.out.strip()) == [3]
        r = xe(w, tmp_path, f"vdi-enable-cbt uuid={x.VDI.get_uuid(s2)}", host=host)
        assert r.rc == 1 and "VDI is a snapshot" in r.err + r.out
        assert xe(w, tmp_path, f"vdi-disable-cbt uuid={uuid}", host=host).rc == 0
        assert x.VDI.get_cbt_enabled(vdi) is False


def test_set_on_boot_runs_the_operation_checks_from_8_2():
    """1.249-lcm ``message_forwarding.ml`` ``VDI.set_on_boot``: ``with_sr_andor_vdi`` of
    ``vdi_set_on_boot`` / ``set_on_boot`` -- a CBT-enabled VDI is refused (``VDI_CBT_ENABLED``)."""
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        vdi = new_vdi(s, _sr(s), SIZE)
        x.VDI.set_on_boot(vdi, "reset")
        assert x.VDI.get_on_boot(vdi) == "reset"
        x.VDI.set_on_boot(vdi, "persist")
        x.VDI.enable_cbt(vdi)
        assert failure(x.VDI.set_on_boot, vdi, "reset") == ["VDI_CBT_ENABLED", vdi]
        assert x.VDI.get_on_boot(vdi) == "persist"
        assert x.VDI.get_current_operations(vdi) == {}
