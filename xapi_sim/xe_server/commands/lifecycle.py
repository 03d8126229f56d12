"""VM, snapshot and template lifecycle commands: ``vm-snapshot``, ``vm-checkpoint``,
``vm-clone``, ``vm-copy``, ``vm-destroy``, ``vm-uninstall``, ``vm-pause``, ``vm-unpause``,
``snapshot-revert``, ``-clone``, ``-copy``, ``-destroy``, ``-uninstall``,
``-reset-powerstate`` and ``template-uninstall``.

Mirrors xen-api Dundee ``cli_operations.ml`` (``vm_clone_aux``, ``vm_copy``, ``vm_destroy``,
``vm_uninstall_common``, ``vm_uninstall``, ``template_uninstall``, ``vm_pause``,
``vm_unpause``, ``get_snapshot_uuid``, ``snapshot_revert``, ``snapshot_op``,
``snapshot_copy``, ``snapshot_destroy``, ``snapshot_uninstall``,
``snapshot_reset_powerstate``) and ``cli_frontend.ml`` (their specs and help texts). Every
``failwith`` there is ``Cli_util.Cli_failure`` (``Error: <text>``): ``cli_operations.ml``
redefines ``failwith`` so.
"""

from __future__ import annotations

from ...datamodel import NULL_REF
from ...wire import cliproto
from ..errors import CliFailure
from ..ops import do_vm_op, user_says_yes
from .spec import Cmd
from .vm import FORCE_NEEDED

_VM_OP = ["Standard", "Vm_selectors"]

OWNER_KEY = "owner"  # Xapi_globs.owner_key: VBD.other_config key marking a VDI the VM owns


# -- clone, snapshot, checkpoint, copy -------------------------------------------------------


def _print_uuids(ctx, new_vms, desc):
    """The end of ``vm_clone_aux`` / ``vm_copy``: the description on the first new VM, then
    the new VMs' uuids (one ``PList``)."""
    if desc is not None:
        ctx.call("VM.set_name_description", new_vms[0], desc)
    ctx.printer.lines([ctx.call("VM.get_uuid", vm) for vm in new_vms])


def _clone_aux(msg, include_template):
    """``vm_clone_aux``: ``msg`` (``VM.clone``/``snapshot``/``checkpoint``) on the one VM
    selected (``~multiple:false``)."""

    def run(ctx):
        new_name = ctx.get("new-name-label")
        desc = ctx.get("new-name-description")
        new_vms = do_vm_op(
            ctx,
            lambda rec: ctx.call(msg, rec.ref, new_name),
            ["new-name-label", "new-name-description"],
            include_template=include_template,
            multiple=False,
        )
        _print_uuids(ctx, new_vms, desc)

    return run


vm_clone = _clone_aux("VM.clone", True)
vm_snapshot = _clone_aux("VM.snapshot", False)
vm_checkpoint = _clone_aux("VM.checkpoint", False)


def _sr_or_null(ctx):
    """``sr-uuid`` as a reference, else the null reference (``VM.copy`` keeps each disk's
    SR)."""
    return ctx.call("SR.get_by_uuid", ctx.get("sr-uuid")) if ctx.has("sr-uuid") else NULL_REF


def vm_copy(ctx):
    new_name = ctx.get("new-name-label")
    desc = ctx.get("new-name-description")
    sr = _sr_or_null(ctx)
    new_vms = do_vm_op(
        ctx,
        lambda rec: ctx.call("VM.copy", rec.ref, new_name, sr),
        ["new-name-label", "sr-uuid", "new-name-description"],
        include_template=True,
        multiple=False,
    )
    _print_uuids(ctx, new_vms, desc)


# -- destroy and uninstall -------------------------------------------------------------------


def vm_destroy(ctx):
    ctx.call("VM.destroy", ctx.call("VM.get_by_uuid", ctx.get("uuid")))


def _exists(ctx, vdi) -> bool:
    """``ignore (Client.VDI.get_uuid ...)`` inside ``try ... with _``: the VDI is real."""
    try:
        ctx.call("VDI.get_uuid", vdi)
        return True
    except Exception:  # noqa: BLE001 -- "with _ ->": a null or vanished VDI
        return False


def _owned_vdis(ctx, vm) -> list:
    """The VDIs of ``vm``'s VBDs whose ``other_config`` has ``owner`` (empty CD drives and
    VBDs that fail to read are skipped)."""
    vdis = []
    for vbd in ctx.call("VM.get_VBDs", vm):
        try:
            other = ctx.call("VBD.get_other_config", vbd)
            vdi = ctx.call("VBD.get_VDI", vbd)
            ctx.call("VDI.get_uuid", vdi)
        except Exception:  # noqa: BLE001 -- "with _ -> []"
            continue
        if OWNER_KEY in other:
            vdis.append(vdi)
    return vdis


def _vdi_line(ctx, vdi) -> str:
    r = ctx.call("VDI.get_record", vdi)
    shared = "" if len(r["VBDs"]) <= 1 else " ** WARNING: disk is shared by other VMs"
    return f"VDI: {r['uuid']} ({r['name_label']}) {shared}"


def _vm_line(ctx, vm) -> str:
    r = ctx.call("VM.get_record", vm)
    return f"VM : {r['uuid']} ({r['name_label']})"


def _plan(ctx, vm):
    """``choose_objects_to_delete``: the lines to print and what destroying means for one VM
    (its owned VDIs and its suspend image)."""
    vdis = _owned_vdis(ctx, vm)
    try:
        suspend = ctx.call("VM.get_suspend_VDI", vm)
        ctx.call("VDI.get_uuid", suspend)
    except Exception:  # noqa: BLE001 -- "with _ -> Ref.null"
        suspend = NULL_REF
    # OCaml evaluates ``vm :: vdis @ suspend`` right to left: the suspend image's line is
    # read first, the VM's last
    tail = [] if suspend == NULL_REF else [_vdi_line(ctx, suspend)]
    middle = [_vdi_line(ctx, v) for v in vdis]
    lines = [_vm_line(ctx, vm), *middle, *tail]

    def destroy():
        if ctx.call("VM.get_power_state", vm) != "Halted":
            ctx.call("VM.hard_shutdown", vm)
        ctx.call("VM.destroy", vm)
        for v in vdis:
            ctx.call("VDI.destroy", v)
        if suspend != NULL_REF:
            try:
                ctx.call("VDI.destroy", suspend)
            except Exception:  # noqa: BLE001 -- "with _ -> ()"
                pass  # the suspend image may have gone with the VM

    return lines, destroy


def uninstall(ctx, vms):
    """``vm_uninstall_common``: list what is about to go (on the client directly, whatever
    ``--minimal``), then destroy it all if ``force`` is true or the user types ``yes``."""
    to_print: list[str] = []
    to_remove = []
    for vm in vms:
        lines, destroy = _plan(ctx, vm)
        to_print += lines
        to_remove.append(destroy)
    ctx.send(cliproto.Print("The following items are about to be destroyed"))
    for line in to_print:
        ctx.send(cliproto.Print(line))
    if ctx.bool_param("force") or user_says_yes(ctx):
        for destroy in to_remove:
            destroy()
        ctx.send(cliproto.Print("All objects destroyed"))


def vm_uninstall(ctx):
    vms = do_vm_op(ctx, lambda rec: rec.ref, [])
    snapshots = [s for vm in vms for s in ctx.call("VM.get_snapshots", vm)]
    uninstall(ctx, vms + snapshots)


def template_uninstall(ctx):
    uninstall(ctx, [ctx.call("VM.get_by_uuid", ctx.get("template-uuid"))])


# -- pause -----------------------------------------------------------------------------------


def vm_pause(ctx):
    do_vm_op(ctx, lambda rec: ctx.call("VM.pause", rec.ref), [])


def vm_unpause(ctx):
    do_vm_op(ctx, lambda rec: ctx.call("VM.unpause", rec.ref), [])


# -- snapshots -------------------------------------------------------------------------------


def snapshot_uuid(ctx) -> str:
    """``get_snapshot_uuid``: ``snapshot-uuid``, else ``uuid``."""
    if ctx.has("snapshot-uuid"):
        return ctx.get("snapshot-uuid")
    if ctx.has("uuid"):
        return ctx.get("uuid")
    raise CliFailure("Required parameter not found: snapshot-uuid or uuid.")


def _snapshot(ctx):
    return ctx.call("VM.get_by_uuid", snapshot_uuid(ctx))


def snapshot_revert(ctx):
    ctx.call("VM.revert", _snapshot(ctx))


def _snapshot_op(ctx, op):
    """``snapshot_op``: ``op(snapshot, new name)``, the description, the new uuid."""
    new_name = ctx.get("new-name-label")
    desc = ctx.get("new-name-description")
    new = op(_snapshot(ctx), new_name)
    if desc is not None:
        ctx.call("VM.set_name_description", new, desc)
    ctx.printer.lines([ctx.call("VM.get_uuid", new)])


def snapshot_clone(ctx):
    _snapshot_op(ctx, lambda snap, name: ctx.call("VM.clone", snap, name))


def snapshot_copy(ctx):
    sr = _sr_or_null(ctx)
    _snapshot_op(ctx, lambda snap, name: ctx.call("VM.copy", snap, name, sr))


def snapshot_destroy(ctx):
    snap = _snapshot(ctx)
    if ctx.call("VM.get_power_state", snap) != "Halted":
        ctx.call("VM.hard_shutdown", snap)
    ctx.call("VM.destroy", snap)


def snapshot_uninstall(ctx):
    uninstall(ctx, [_snapshot(ctx)])


def snapshot_reset_powerstate(ctx):
    """Refused unless ``force`` is there (whatever its value), then
    ``VM.power_state_reset`` on the snapshot."""
    if not ctx.has("force"):
        raise CliFailure(FORCE_NEEDED)
    ctx.call("VM.power_state_reset", _snapshot(ctx))


_CLONE = "Clone an existing VM, using storage-level fast disk clone operation where available."
_COPY_FULL = (
    "but without using storage-level fast disk clone operation (even if this is available). "
    "The disk images of the copied VM are guaranteed to be 'full images' - i.e. not part of "
    "a CoW chain."
)

COMMANDS = {
    "vm-clone": Cmd(["new-name-label"], ["new-name-description"], _CLONE, vm_clone, _VM_OP),
    "vm-snapshot": Cmd(
        ["new-name-label"],
        ["new-name-description"],
        "Snapshot an existing VM, using storage-level fast disk snapshot operation where "
        "available.",
        vm_snapshot,
        _VM_OP,
    ),
    "vm-checkpoint": Cmd(
        ["new-name-label"],
        ["new-name-description"],
        "Checkpoint an existing VM, using storage-level fast disk snapshot operation where "
        "available.",
        vm_checkpoint,
        _VM_OP,
    ),
    "vm-copy": Cmd(
        ["new-name-label"],
        ["new-name-description", "sr-uuid"],
        "Copy an existing VM, " + _COPY_FULL,
        vm_copy,
        _VM_OP,
    ),
    "vm-destroy": Cmd(
        ["uuid"],
        [],
        "Destroy a VM. This leaves the storage associated with the VM intact. To delete "
        "storage too, use vm-uninstall.",
        vm_destroy,
    ),
    "vm-uninstall": Cmd(
        [],
        ["force"],
        "Uninstall a VM. This operation will destroy those VDIs that are marked RW and "
        "connected to this VM only. To simply destroy the VM record, use vm-destroy.",
        vm_uninstall,
        _VM_OP,
        with_fd=True,
    ),
    "vm-pause": Cmd(
        [],
        [],
        "Pause a running VM. Note this operation does not free the associated memory (see "
        "'vm-suspend').",
        vm_pause,
        _VM_OP,
    ),
    "vm-unpause": Cmd([], [], "Unpause a paused VM.", vm_unpause, _VM_OP),
    "template-uninstall": Cmd(
        ["template-uuid"],
        ["force"],
        "Uninstall a custom template. This operation will destroy those VDIs that are marked "
        "as 'owned' by this template",
        template_uninstall,
        ["Standard"],
        with_fd=True,
    ),
    "snapshot-revert": Cmd(
        [],
        ["uuid", "snapshot-uuid"],
        "Revert an existing VM to a previous checkpointed or snapshotted state.",
        snapshot_revert,
        ["Standard"],
    ),
    "snapshot-clone": Cmd(
        ["new-name-label"],
        ["uuid", "new-name-description"],
        "Create a new template by cloning an existing snapshot, using storage-level fast disk "
        "clone operation where available.",
        snapshot_clone,
        ["Standard"],
    ),
    "snapshot-copy": Cmd(
        ["new-name-label"],
        ["uuid", "new-name-description", "sr-uuid"],
        "Create a new template by copying an existing VM, " + _COPY_FULL,
        snapshot_copy,
        ["Standard"],
    ),
    "snapshot-destroy": Cmd(
        [],
        ["uuid", "snapshot-uuid"],
        "Destroy a snapshot. This leaves the storage associated with the snapshot intact. To "
        "delete storage too, use snapshot-uninstall.",
        snapshot_destroy,
    ),
    "snapshot-uninstall": Cmd(
        [],
        ["uuid", "snapshot-uuid", "force"],
        "Uninstall a snapshot. This operation will destroy those VDIs that are marked RW and "
        "connected to this snapshot only. To simply destroy the VM record, use "
        "snapshot-destroy.",
        snapshot_uninstall,
        ["Standard"],
        with_fd=True,
    ),
    "snapshot-reset-powerstate": Cmd(
        [],
        ["uuid", "snapshot-uuid", "force"],
        "Force the VM powerstate to halted in the management toolstack database only. This "
        "command is used to recover a snapshot that is marked as 'suspended'. This is a "
        "potentially dangerous operation: you must ensure that you do not need the memory "
        "image anymore (ie. you will not be able to resume your snapshot anymore).",
        snapshot_reset_powerstate,
        _VM_OP,
    ),
}
