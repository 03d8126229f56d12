"""The everyday lifecycle ``xe`` commands (docs/xe.md), run with the project's ``xe`` against
a served world and checked through the XenAPI package: ``vm-snapshot``, ``-checkpoint``,
``-clone``, ``-copy``, ``-destroy``, ``-uninstall`` (its confirmation and what it destroys),
``-pause``/``-unpause``, the ``snapshot-*`` commands, ``template-uninstall``,
``vif-plug``/``-unplug``, ``task-cancel``, ``pool-sync-database`` and
``vm-disk-add``/``-remove``, ``vm-cd-add``/``-remove`` -- their output, the state they leave
and Dundee's error texts."""

from __future__ import annotations

import contextlib
import os
import pathlib
import time

from session_kit import logged_in
from xe_kit import xe_runner

from xapi_sim.tasks import Tasks

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden" / "xe"
UPDATE = os.environ.get("XE_GOLDEN_UPDATE") == "1"

NEW_COMMANDS = (
    "vm-snapshot vm-checkpoint vm-clone vm-copy vm-destroy vm-uninstall vm-pause vm-unpause "
    "snapshot-revert snapshot-clone snapshot-copy snapshot-destroy snapshot-uninstall "
    "snapshot-reset-powerstate template-uninstall vif-plug vif-unplug task-cancel "
    "pool-sync-database vm-disk-add vm-disk-remove vm-cd-add vm-cd-remove"
).split()

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "dundee"
[[sr]]
name_label = "nfs1"
type = "nfs"
hosts = ["h1"]
default = true
[[sr]]
name_label = "nfs2"
type = "nfs"
hosts = ["h1"]
[[vm]]
name_label = "web"
power_state = "Running"
host = "h1"
disks = [{size = "1GiB", name_label = "root"}, {size = "2GiB", name_label = "data"}]
vifs = ["Pool-wide network associated with eth0"]
[[vm]]
name_label = "off"
disks = [{size = "1GiB", name_label = "offroot"}]
[[vm]]
name_label = "off-b"
"""

MULTIPLE_ONE = (
    "Error: Multiple matches VMs found. Operation can only be performed on one VM at a time\n"
)
FORCE_NEEDED = (
    "Error: This operation is extremely dangerous and may cause data loss. This operation "
    "must be forced (use --force).\n"
)


@contextlib.contextmanager
def xe_world(tmp_path):
    """The served world, a XenAPI session on it, and ``xe(*args, input=None)`` returning
    (exit status, stdout, stderr)."""
    with logged_in(WORLD) as (w, s):
        run = xe_runner(w.host("h1"), tmp_path)

        def xe(*args, input=None):
            r = run(*args, input=input)
            return r.returncode, r.stdout, r.stderr

        yield w, s.xenapi, xe


def _vm(x, name):
    return x.VM.get_by_name_label(name)[0]


def _vdis(x, vm):
    return [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm) if not x.VBD.get_empty(b)]


def _until(cond, timeout=20.0):
    """Poll ``cond`` until it holds (failing after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _one_uuid(out) -> str:
    assert out.endswith("\n") and out.count("\n") == 1, out
    return out.strip()


def test_help_of_the_new_commands_golden(tmp_path):
    """Their specs and help texts, Dundee's cli_frontend.ml verbatim
    (tests/golden/xe/help-lifecycle.txt; ``XE_GOLDEN_UPDATE=1`` rewrites it)."""
    with xe_world(tmp_path) as (w, x, xe):
        rc, out, err = xe("help", *NEW_COMMANDS)
    assert (rc, err) == (0, "")
    text = f"$ xe help {' '.join(NEW_COMMANDS)}\n{out}--- exit {rc} ---\n"
    path = GOLDEN / "help-lifecycle.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_snapshot_checkpoint_clone_copy(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        web, off = _vm(x, "web"), _vm(x, "off")
        rc, out, err = xe("vm-snapshot", "vm=web", "new-name-label=s1", "new-name-description=d")
        assert (rc, err) == (0, "")
        snap = x.VM.get_by_uuid(_one_uuid(out))
        rec = x.VM.get_record(snap)
        assert (rec["is_a_snapshot"], rec["snapshot_of"], rec["name_label"]) == (True, web, "s1")
        assert rec["name_description"] == "d"
        assert x.VM.get_power_state(web) == "Running"
        # a checkpoint keeps the memory image: a suspended snapshot
        rc, out, err = xe("vm-checkpoint", f"uuid={x.VM.get_uuid(web)}", "new-name-label=c1")
        assert (rc, err) == (0, "")
        cp = x.VM.get_by_uuid(_one_uuid(out))
        assert x.VM.get_power_state(cp) == "Suspended"
        assert sorted(x.VM.get_snapshots(web)) == sorted([snap, cp])
        # the printer's --minimal: the uuid alone, as without it
        rc, out, err = xe("vm-clone", "vm=off", "new-name-label=off2", "--minimal")
        assert (rc, err) == (0, "")
        clone = x.VM.get_by_uuid(_one_uuid(out))
        assert x.VM.get_name_label(clone) == "off2"
        assert x.VM.get_name_description(clone) == x.VM.get_name_description(off)
        # vm-clone and vm-copy select templates too; vm-snapshot does not
        tpl = next(r for r, v in x.VM.get_all_records().items() if v["is_a_template"])
        tpl_uuid = x.VM.get_uuid(tpl)
        rc, out, err = xe("vm-clone", f"uuid={tpl_uuid}", "new-name-label=tclone")
        assert (rc, err) == (0, "")
        assert x.VM.get_is_a_template(x.VM.get_by_uuid(_one_uuid(out)))
        assert xe("vm-snapshot", f"uuid={tpl_uuid}", "new-name-label=z") == (
            1,
            "",
            "Error: No matching VMs found\n",
        )
        # vm-copy: full copies on the SR given
        nfs2 = x.SR.get_by_name_label("nfs2")[0]
        rc, out, err = xe(
            "vm-copy", "vm=off", "new-name-label=off3", f"sr-uuid={x.SR.get_uuid(nfs2)}"
        )
        assert (rc, err) == (0, "")
        copy = x.VM.get_by_uuid(_one_uuid(out))
        assert [x.VDI.get_SR(v) for v in _vdis(x, copy)] == [nfs2]
        assert x.VM.get_name_description(copy) == x.VM.get_name_description(off)


def test_clone_errors(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        before = sorted(x.VM.get_all())
        assert xe("vm-clone", "vm=nonesuch", "new-name-label=z") == (
            1,
            "",
            "Error: No matching VMs found\n",
        )
        # one VM at a time, --multiple or not
        for extra in ([], ["--multiple"]):
            r = xe("vm-snapshot", "power-state=halted", "new-name-label=z", *extra)
            assert r == (1, "", MULTIPLE_ONE)
            r = xe("vm-copy", "power-state=halted", "new-name-label=z", *extra)
            assert r == (1, "", MULTIPLE_ONE)
        assert xe("vm-clone", "vm=off") == (
            1,
            "",
            "Required parameter not found: new-name-label\nFor usage run: 'xe help'\n",
        )
        assert xe("vm-copy", "vm=off", "new-name-label=z", "sr-uuid=nope") == (
            1,
            "",
            "The uuid you supplied was invalid.\ntype: SR\nuuid: nope\n",
        )
        assert xe("vm-clone", "vm=off", "new-name-label=z", "colour=blue") == (
            1,
            "",
            "Error: Unknown field 'colour'\n",
        )
        # a running VM cannot be cloned: the API's own error
        rc, out, err = xe("vm-clone", "vm=web", "new-name-label=z")
        assert (rc, out) == (1, "")
        assert err.startswith("You attempted an operation on a VM that was not in an ")
        assert sorted(x.VM.get_all()) == before


def _uninstall_listing(x, vm, vdis, suspend=None):
    lines = [f"VM : {x.VM.get_uuid(vm)} ({x.VM.get_name_label(vm)})"]
    lines += [f"VDI: {x.VDI.get_uuid(v)} ({x.VDI.get_name_label(v)}) " for v in vdis]
    if suspend is not None:
        lines.append(f"VDI: {x.VDI.get_uuid(suspend)} ({x.VDI.get_name_label(suspend)}) ")
    return lines


def test_vm_uninstall_asks_then_destroys_the_owned_disks(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        web = _vm(x, "web")
        root, data = _vdis(x, web)
        cp = x.VM.checkpoint(web, "c1")
        cp_vdis = _vdis(x, cp)
        suspend = x.VM.get_suspend_VDI(cp)
        # a disk the VM does not own (no other_config:owner) stays
        nfs1 = x.SR.get_by_name_label("nfs1")[0]
        loose = x.VDI.create(
            {
                "name_label": "loose",
                "name_description": "",
                "SR": nfs1,
                "virtual_size": str(1 << 20),
                "type": "user",
                "sharable": False,
                "read_only": False,
                "other_config": {},
                "xenstore_data": {},
                "sm_config": {},
                "tags": [],
            }
        )
        x.VBD.create(
            {
                "VM": web,
                "VDI": loose,
                "userdevice": "5",
                "bootable": False,
                "mode": "RW",
                "type": "Disk",
                "unpluggable": True,
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
        listing = _uninstall_listing(x, web, [root, data]) + _uninstall_listing(
            x, cp, cp_vdis, suspend
        )
        head = "The following items are about to be destroyed\n" + "".join(
            line + "\n" for line in listing
        )
        # anything but yes: nothing happens, and the command succeeds
        rc, out, err = xe("vm-uninstall", "vm=web", input="no\n")
        assert (rc, err) == (0, "")
        assert out == head + "Type 'yes' to continue\nAborted (you typed: 'no')\n"
        assert x.VM.get_power_state(web) == "Running"
        assert x.VM.get_snapshots(web) == [cp]
        rc, out, err = xe("vm-uninstall", "vm=web", input=" YES \n")
        assert (rc, err) == (0, "")
        assert out == head + "Type 'yes' to continue\nAll objects destroyed\n"
        alive = set(x.VM.get_all())
        assert web not in alive and cp not in alive
        vdis = set(x.VDI.get_all())
        assert not vdis & {root, data, suspend, *cp_vdis}
        assert loose in vdis


def test_uninstall_force_shared_disk_and_selection_errors(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        off, off_b = _vm(x, "off"), _vm(x, "off-b")
        (root,) = _vdis(x, off)
        # the disk is also off-b's: the listing warns
        x.VBD.create(
            {
                "VM": off_b,
                "VDI": root,
                "userdevice": "0",
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
        uuid, root_uuid = x.VM.get_uuid(off), x.VDI.get_uuid(root)
        assert xe("vm-uninstall", "power-state=halted") == (
            1,
            "",
            "Error: Multiple matches VMs found. --multiple required to complete the operation\n",
        )
        assert xe("vm-uninstall", "vm=nonesuch", "--force") == (
            1,
            "",
            "Error: No matching VMs found\n",
        )
        rc, out, err = xe("vm-uninstall", "vm=off", "--force", "--minimal")
        assert (rc, err) == (0, "")
        assert out == (
            "The following items are about to be destroyed\n"
            f"VM : {uuid} (off)\n"
            f"VDI: {root_uuid} (offroot)  ** WARNING: disk is shared by other VMs\n"
            "All objects destroyed\n"
            "\n"  # the --minimal printer's flush: an empty line (nothing went through it)
        )
        assert off not in x.VM.get_all() and root not in x.VDI.get_all()
        # force is parsed after the listing (its VBD does not own the disk: no VDI line)
        assert xe("vm-uninstall", "vm=off-b", "force=maybe") == (
            1,
            f"The following items are about to be destroyed\nVM : {x.VM.get_uuid(off_b)} (off-b)\n",
            "Error: Failed to parse parameter 'force': expecting 'true' or 'false'\n",
        )
        assert off_b in x.VM.get_all()


def test_vm_destroy_and_template_uninstall(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        off = _vm(x, "off")
        (root,) = _vdis(x, off)
        assert xe("vm-destroy", f"uuid={x.VM.get_uuid(off)}") == (0, "", "")
        assert off not in x.VM.get_all() and root in x.VDI.get_all()  # storage kept
        assert xe("vm-destroy", "uuid=nope") == (
            1,
            "",
            "The uuid you supplied was invalid.\ntype: VM\nuuid: nope\n",
        )
        web = _vm(x, "web")
        rc, out, err = xe("vm-destroy", f"uuid={x.VM.get_uuid(web)}")
        assert (rc, out) == (1, "") and err.startswith("You attempted an operation on a VM ")
        # a custom template: a halted VM's clone turned into a template
        tpl = x.VM.clone(_vm(x, "off-b"), "mytpl")
        x.VM.set_is_a_template(tpl, True)
        tuuid = x.VM.get_uuid(tpl)
        assert xe("template-uninstall") == (
            1,
            "",
            "Required parameter not found: template-uuid\nFor usage run: 'xe help'\n",
        )
        assert xe("template-uninstall", f"template-uuid={tuuid}", "--force") == (
            0,
            f"The following items are about to be destroyed\nVM : {tuuid} (mytpl)\n"
            "All objects destroyed\n",
            "",
        )
        assert tpl not in x.VM.get_all()


def test_snapshot_commands(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        web = _vm(x, "web")
        snap = x.VM.snapshot(web, "s1")
        suuid = x.VM.get_uuid(snap)
        for cmd in ("snapshot-revert", "snapshot-destroy", "snapshot-uninstall"):
            assert xe(cmd) == (
                1,
                "",
                "Error: Required parameter not found: snapshot-uuid or uuid.\n",
            )
        # revert: the VM goes back to the snapshot's (halted) state
        assert xe("snapshot-revert", f"snapshot-uuid={suuid}") == (0, "", "")
        assert x.VM.get_power_state(web) == "Halted"
        # clone and copy make templates
        rc, out, err = xe(
            "snapshot-clone", f"uuid={suuid}", "new-name-label=t1", "new-name-description=dd"
        )
        assert (rc, err) == (0, "")
        t1 = x.VM.get_by_uuid(_one_uuid(out))
        assert x.VM.get_record(t1)["is_a_template"] and not x.VM.get_is_a_snapshot(t1)
        assert (x.VM.get_name_label(t1), x.VM.get_name_description(t1)) == ("t1", "dd")
        nfs2 = x.SR.get_by_name_label("nfs2")[0]
        rc, out, err = xe(
            "snapshot-copy", f"uuid={suuid}", "new-name-label=t2", f"sr-uuid={x.SR.get_uuid(nfs2)}"
        )
        assert (rc, err) == (0, "")
        t2 = x.VM.get_by_uuid(_one_uuid(out))
        assert {x.VDI.get_SR(v) for v in _vdis(x, t2)} == {nfs2}
        # snapshot-destroy leaves the disks
        snap_vdis = _vdis(x, snap)
        assert xe("snapshot-destroy", f"uuid={suuid}") == (0, "", "")
        assert snap not in x.VM.get_all() and set(snap_vdis) <= set(x.VDI.get_all())
        assert xe("snapshot-destroy", "uuid=nope") == (
            1,
            "",
            "The uuid you supplied was invalid.\ntype: VM\nuuid: nope\n",
        )


def test_checkpoint_uninstall_and_reset_powerstate(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        web = _vm(x, "web")
        cp1 = x.VM.checkpoint(web, "c1")
        cp2 = x.VM.checkpoint(web, "c2")
        u1, u2 = x.VM.get_uuid(cp1), x.VM.get_uuid(cp2)
        assert xe("snapshot-reset-powerstate", f"uuid={u1}") == (1, "", FORCE_NEEDED)
        assert x.VM.get_power_state(cp1) == "Suspended"
        # force: the key alone counts, whatever its value
        assert xe("snapshot-reset-powerstate", f"snapshot-uuid={u1}", "force=false") == (
            0,
            "",
            "",
        )
        assert x.VM.get_power_state(cp1) == "Halted"
        # the suspended checkpoint: its owned disks and its memory image go
        vdis, suspend = _vdis(x, cp2), x.VM.get_suspend_VDI(cp2)
        listing = _uninstall_listing(x, cp2, vdis, suspend)
        rc, out, err = xe("snapshot-uninstall", f"uuid={u2}", input="yes\n")
        assert (rc, err) == (0, "")
        assert out == (
            "The following items are about to be destroyed\n"
            + "".join(line + "\n" for line in listing)
            + "Type 'yes' to continue\nAll objects destroyed\n"
        )
        assert cp2 not in x.VM.get_all()
        assert not set(x.VDI.get_all()) & {suspend, *vdis}
        assert x.VM.get_power_state(web) == "Running"
        # vm-reset-powerstate refuses in the same words
        assert xe("vm-reset-powerstate", "vm=web") == (1, "", FORCE_NEEDED)


def test_pause_unpause(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        web = _vm(x, "web")
        assert xe("vm-pause", "vm=web") == (0, "", "")
        assert x.VM.get_power_state(web) == "Paused"
        rc, out, err = xe("vm-pause", "vm=web")
        assert (rc, out) == (1, "")
        assert err.endswith("expected: running\nactual: paused\n")
        assert xe("vm-unpause", "vm=web") == (0, "", "")
        assert x.VM.get_power_state(web) == "Running"
        assert xe("vm-pause", "power-state=halted") == (
            1,
            "",
            "Error: Multiple matches VMs found. --multiple required to complete the operation\n",
        )
        # --multiple: every VM tried, each failure reported
        rc, out, err = xe("vm-unpause", "power-state=halted", "--multiple")
        assert (rc, err) == (1, "")
        failed = sorted(
            line.removeprefix("operation failed on ").split(":")[0]
            for line in out.splitlines()
            if line.startswith("operation failed on ")
        )
        assert failed == sorted(x.VM.get_uuid(_vm(x, n)) for n in ("off", "off-b"))


def test_vif_plug_unplug_task_cancel_sync_database(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        web = _vm(x, "web")
        (vif,) = x.VM.get_VIFs(web)
        vuuid = x.VIF.get_uuid(vif)
        assert xe("vif-unplug", f"uuid={vuuid}") == (0, "", "")
        assert not x.VIF.get_currently_attached(vif)
        assert xe("vif-plug", f"uuid={vuuid}") == (0, "", "")
        assert x.VIF.get_currently_attached(vif)
        assert xe("vif-unplug", f"uuid={vuuid}", "--force") == (0, "", "")
        assert not x.VIF.get_currently_attached(vif)
        assert xe("vif-plug") == (
            1,
            "",
            "Required parameter not found: uuid\nFor usage run: 'xe help'\n",
        )
        assert xe("vif-plug", "uuid=nope") == (
            1,
            "",
            "The uuid you supplied was invalid.\ntype: VIF\nuuid: nope\n",
        )
        assert xe("pool-sync-database") == (0, "", "")
        # task-cancel of a start that takes a while: the start ends cancelled
        Tasks.of(w.world).operation_seconds = 3.0
        off = _vm(x, "off")
        task = x.Async.VM.start(off, False, False)
        _until(lambda: "cancel" in x.task.get_allowed_operations(task))
        assert xe("task-cancel", f"uuid={x.task.get_uuid(task)}") == (0, "", "")
        _until(lambda: x.task.get_status(task) != "pending")
        assert x.task.get_status(task) == "cancelled"
        assert x.VM.get_power_state(off) == "Halted"
        assert xe("task-cancel", "uuid=nope") == (
            1,
            "",
            "The uuid you supplied was invalid.\ntype: task\nuuid: nope\n",
        )


def test_disk_and_cd_add_remove(tmp_path):
    with xe_world(tmp_path) as (w, x, xe):
        off, web = _vm(x, "off"), _vm(x, "web")
        nfs1, nfs2 = x.SR.get_by_name_label("nfs1")[0], x.SR.get_by_name_label("nfs2")[0]
        # on the default SR; a halted VM's VBD stays unplugged
        assert xe("vm-disk-add", "vm=off", "disk-size=10MiB", "device=3") == (0, "", "")
        vbd = next(b for b in x.VM.get_VBDs(off) if x.VBD.get_userdevice(b) == "3")
        vdi = x.VBD.get_VDI(vbd)
        rec = x.VDI.get_record(vdi)
        assert (rec["name_label"], rec["name_description"], rec["virtual_size"]) == (
            "Created by xe",
            "Created by xe",
            str(10 << 20),
        )
        assert (rec["SR"], rec["type"], rec["sm_config"]["vmhint"]) == (
            nfs1,
            "user",
            x.VM.get_uuid(off),
        )
        vrec = x.VBD.get_record(vbd)
        assert (vrec["other_config"], vrec["mode"], vrec["bootable"]) == (
            {"owner": ""},
            "RW",
            False,
        )
        assert not vrec["currently_attached"]
        # on the SR given; a running VM's is plugged
        sr2 = f"sr-uuid={x.SR.get_uuid(nfs2)}"
        assert xe("vm-disk-add", "vm=web", "disk-size=1", "device=4", sr2) == (0, "", "")
        vbd4 = next(b for b in x.VM.get_VBDs(web) if x.VBD.get_userdevice(b) == "4")
        assert x.VBD.get_currently_attached(vbd4)
        assert x.VDI.get_SR(x.VBD.get_VDI(vbd4)) == nfs2
        assert xe("vm-disk-add", "vm=off", "disk-size=10XB", "device=4") == (
            1,
            "",
            "Error: Failed to parse field 'disk-size': Unknown suffix: 'XB' (try KiB, MiB, GiB "
            "or TiB)\n",
        )
        # a device in use: VBD.create refuses and the new VDI is destroyed again
        n = len(x.VDI.get_all())
        rc, out, err = xe("vm-disk-add", "vm=off", "disk-size=1MiB", "device=3")
        assert (rc, out, err) == (
            1,
            "",
            "A device with the name given already exists on the selected VM\ndevice: 3\n",
        )
        assert len(x.VDI.get_all()) == n
        # remove: the VBD and its VDI
        assert xe("vm-disk-remove", "vm=off", "device=3") == (0, "", "")
        assert vbd not in x.VM.get_VBDs(off) and vdi not in x.VDI.get_all()
        assert xe("vm-disk-remove", "vm=off", "device=9") == (1, "", "Error: Disk not found\n")
        # CDs
        assert xe("vm-cd-add", "vm=off", "cd-name=nope", "device=3") == (
            1,
            "",
            "Error: CD nope not found!\n",
        )
        assert xe("vm-cd-add", "vm=off", "cd-name=xs-tools.iso", "device=3") == (0, "", "")
        cd = next(b for b in x.VM.get_VBDs(off) if x.VBD.get_type(b) == "CD")
        crec = x.VBD.get_record(cd)
        assert (crec["userdevice"], crec["mode"], crec["other_config"]) == ("3", "RO", {})
        assert x.VDI.get_name_label(crec["VDI"]) == "xs-tools.iso"
        assert xe("vm-cd-remove", "vm=off", "cd-name=other.iso") == (
            1,
            "",
            "Error: Disk not found\n",
        )
        assert xe("vm-cd-remove", "vm=off", "cd-name=xs-tools.iso") == (0, "", "")
        assert cd not in x.VBD.get_all()
        # an empty drive is named <EMPTY>
        assert xe("vm-cd-add", "vm=off", "cd-name=xs-tools.iso", "device=3") == (0, "", "")
        assert xe("vm-cd-eject", "vm=off") == (0, "", "")
        assert xe("vm-cd-remove", "vm=off", "cd-name=<EMPTY>") == (0, "", "")
        assert not [b for b in x.VM.get_VBDs(off) if x.VBD.get_type(b) == "CD"]
        assert xe("vm-cd-add", "vm=off", "device=3") == (
            1,
            "",
            "Required parameter not found: cd-name\nFor usage run: 'xe help'\n",
        )
