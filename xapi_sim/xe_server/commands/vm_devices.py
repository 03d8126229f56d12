"""VM commands about a VM's devices and installation: ``vm-install``, ``vm-disk-list``,
``vm-cd-list``, ``vm-vif-list``, ``vm-cd-insert``, ``vm-cd-eject``, ``vm-disk-add``,
``vm-disk-remove``, ``vm-cd-add``, ``vm-cd-remove``.

Mirrors xen-api Dundee ``cli_operations.ml`` (``vm_install``, ``vm_install_real``,
``is_recommended``, ``vm_disk_list_aux``, ``vm_vif_list``, ``vm_cd_insert``,
``vm_cd_eject``, ``vm_disk_add``, ``vm_disk_remove``, ``vm_cd_add``, ``vm_cd_remove``,
``create_vbd_and_plug``), ``cli_util.ml`` (``rewrite_provisioning_xml``, ``get_default_sr_uuid``)
and ``cli_frontend.ml`` (specs and help texts). ``vm-install`` is ``VM.clone`` (or
``VM.copy`` to the SR given) of the template, the provisioning spec rewritten to that SR (or
the pool's default SR), then ``VM.provision``; a failure destroys the new VM.
"""

from __future__ import annotations

import logging
from xml.sax.saxutils import quoteattr

from defusedxml import ElementTree

from ...datamodel import NULL_REF
from ...errors import Failure
from ..context import Context
from ..errors import CliFailure
from ..ops import do_vm_op
from ..records import make_record
from ..selectors import all_records, filter_by, select_fields
from ..values import bytes_of_string
from .spec import Cmd

log = logging.getLogger(__name__)

_VM_OP = ["Standard", "Vm_selectors"]


def _find_template(ctx):
    if ctx.has("template-uuid"):
        try:
            return ctx.call("VM.get_by_uuid", ctx.get("template-uuid"))
        except Failure:
            raise CliFailure("Cannot find template") from None

    def by_name(name):
        found = filter_by(
            all_records(ctx, "VM"),
            [("name-label", name), ("is-a-template", "true"), ("is-control-domain", "false")],
        )
        if not found:
            raise CliFailure("No templates matched")
        if len(found) > 1:
            raise CliFailure("More than one matching template found")
        return found[0].ref

    if ctx.has("template-name-label") or ctx.has("template-name"):
        return by_name(ctx.get("template-name-label", ctx.get("template-name")))
    if ctx.has("template"):
        try:
            return ctx.call("VM.get_by_uuid", ctx.get("template"))
        except Failure:
            return by_name(ctx.get("template"))
    raise CliFailure(
        "Template must be specified by parameter 'template-uuid', 'template-name', "
        "'template-name-label' or 'template'"
    )


def is_recommended(xml: str, field: str) -> bool:
    """``is_recommended``: a ``<restriction field=... value="true"/>`` in the XML."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return False
    for el in root.iter("restriction"):
        if el.get("field") == field:
            return el.get("value") == "true"
    return False


def _disks_spec(other_config) -> list | None:
    """The ``<disk>`` attribute lists of ``other_config:disks`` (None: unparsable)."""
    if "disks" not in other_config:
        return []
    try:
        root = ElementTree.fromstring(other_config["disks"])
    except ElementTree.ParseError:
        return None
    if root.tag != "provision":
        return None
    return [list(d.attrib.items()) for d in root if d.tag == "disk"]


def rewrite_provisioning_xml(ctx, vm, sr_uuid) -> None:
    """``Cli_util.rewrite_provisioning_xml``: every disk's ``sr`` set to ``sr_uuid``."""
    other = ctx.call("VM.get_other_config", vm)
    disks = _disks_spec(other)
    if "disks" not in other or disks is None:
        return
    parts = []
    for attrs in disks:
        text = " ".join(f"{k}={quoteattr(sr_uuid if k == 'sr' else v)}" for k, v in attrs)
        parts.append(f"<disk {text}/>")
    ctx.call("VM.remove_from_other_config", vm, "disks")
    ctx.call("VM.add_to_other_config", vm, "disks", "<provision>" + "".join(parts) + "</provision>")


def _default_sr_uuid(ctx):
    """``Cli_util.get_default_sr_uuid``."""
    pool = ctx.call("pool.get_all")[0]
    try:
        return ctx.call("SR.get_uuid", ctx.call("pool.get_default_SR", pool))
    except Failure:
        return None


def _sr_choice(ctx, template):
    if ctx.call("VM.get_is_a_snapshot", template):
        if ctx.has("sr-name-label") or ctx.has("sr-uuid"):
            raise CliFailure(
                "Do not use the sr-name-label or sr-uuid argument when installing from a "
                "snapshot. By default, it will install each new disk on the same SR as the "
                "corresponding snapshot disks."
            )
        sr: str | None = NULL_REF
    else:
        sr = ctx.call("SR.get_by_uuid", ctx.get("sr-uuid")) if ctx.has("sr-uuid") else None
    if ctx.has("sr-name-label"):
        found = ctx.call("SR.get_by_name_label", ctx.get("sr-name-label"))
        if not found:
            raise CliFailure("No SR with that name-label found")
        if sr is not None:
            if sr not in found:
                raise CliFailure(
                    "SR specified via sr-uuid doesn't have the name specified via sr-name-label"
                )
        elif len(found) > 1:
            raise CliFailure("Multiple SRs with that name-label found")
        else:
            sr = found[0]
    return sr


def vm_install(ctx):
    template = _find_template(ctx)
    if not ctx.call("VM.get_is_a_template", template):
        raise CliFailure("Can only install from templates")
    name = ctx.get("new-name-label")
    sr = _sr_choice(ctx, template)
    if sr is not None and sr != NULL_REF:
        suspend_sr = sr
    else:
        suspend_sr = ctx.call("VM.get_suspend_SR", template)
    if sr is not None and sr != NULL_REF:
        sr_uuid = ctx.call("SR.get_uuid", sr)
    else:
        sr_uuid = _default_sr_uuid(ctx)
        if sr_uuid is None:
            if _disks_spec(ctx.call("VM.get_other_config", template)):
                raise CliFailure(
                    "Failed to find a valid default SR for the Pool. Please provide an "
                    "sr-name-label or sr-uuid parameter."
                )
            sr_uuid = NULL_REF
    if sr is not None and sr != NULL_REF:
        new_vm = ctx.call("VM.copy", template, name, sr)
    else:
        new_vm = ctx.call("VM.clone", template, name)
    try:
        ctx.call("VM.set_name_description", new_vm, "Installed via xe CLI")
        ctx.call("VM.set_suspend_SR", new_vm, suspend_sr)
        rewrite_provisioning_xml(ctx, new_vm, sr_uuid)
        recommendations = ctx.call("VM.get_recommendations", template)
        pool = ctx.call("pool.get_all")[0]
        vendor_ok = not ctx.call("pool.get_policy_no_vendor_device", pool)
        want = is_recommended(recommendations, "has-vendor-device") and vendor_ok
        try:
            ctx.call("VM.set_has_vendor_device", new_vm, want)
        except Failure as e:
            if e.code != "LICENCE_RESTRICTION":
                raise
            ctx.printer.stderr(
                "Note: the VM template recommends setting has-vendor-device=true (to provide "
                "the option of obtaining PV drivers through Windows Update), but a suitable "
                "licence has not been deployed for this host. Ignoring this recommendation "
                "and continuing with installation of VM "
                f'"{ctx.call("VM.get_name_label", new_vm)}"...'
            )
        ctx.call("VM.provision", new_vm)
        if ctx.has("copy-bios-strings-from"):
            host = ctx.call("host.get_by_uuid", ctx.get("copy-bios-strings-from"))
            ctx.call("VM.copy_bios_strings", new_vm, host)
        ctx.printer.lines([ctx.call("VM.get_uuid", new_vm)])
    except BaseException:
        try:
            ctx.call("VM.destroy", new_vm)
        except Failure:
            pass  # "with _ -> ()": the original error is the one to report
        raise


def _with_params(ctx, params) -> Context:
    """The command's context with other parameters (``Context`` copy)."""
    return Context(ctx.dispatcher, ctx.host, ctx.session, params, ctx.printer, ctx.conn)


def _renamed(ctx, name) -> Context:
    """``name`` (vbd-params, vdi-params) read as ``params`` (the record selector)."""
    return _with_params(ctx, [("params", v) if k == name else (k, v) for k, v in ctx.params])


def _disk_list(ctx, is_cd):
    def op(rec):
        vbds = [
            b
            for b in rec.row()["VBDs"]
            if ctx.call("VBD.get_type", b) == ("CD" if is_cd else "Disk")
        ]
        vbd_recs = [make_record(ctx, "VBD", b) for b in vbds]
        vdi_recs = [
            None
            if ctx.call("VBD.get_empty", b)
            else make_record(ctx, "VDI", ctx.call("VBD.get_VDI", b))
            for b in vbds
        ]
        defaults = ["uuid", "vm-name-label", "userdevice"] + (["empty"] if is_cd else [])
        chosen = select_fields(_renamed(ctx, "vbd-params"), vbd_recs, defaults)
        vdi_view = _renamed(ctx, "vdi-params")
        for n, (fields, vdi) in enumerate(zip(chosen, vdi_recs, strict=True)):
            disk = f"{'CD' if is_cd else 'Disk'} {n}"
            ctx.printer.msg(f"{disk} VBD:")
            ctx.printer.table([[f.printed() for f in fields]])
            if vdi is not None:
                sel = select_fields(
                    vdi_view, [vdi], ["uuid", "name-label", "virtual-size", "sr-name-label"]
                )[0]
                ctx.printer.msg(f"{disk} VDI:")
                ctx.printer.table([[f.printed() for f in sel]])

    do_vm_op(ctx, op, ["vbd-params", "vdi-params"])


def vm_disk_list(ctx):
    _disk_list(ctx, False)


def vm_cd_list(ctx):
    _disk_list(ctx, True)


def vm_vif_list(ctx):
    def op(rec):
        tables = []
        for vif in rec.row()["VIFs"]:
            r = make_record(ctx, "VIF", vif)
            chosen = select_fields(
                ctx,
                [r],
                ["uuid", "device", "MAC", "network-uuid", "network-name-label", "vm-name-label"],
            )[0]
            tables.append([f.printed() for f in chosen])
        ctx.printer.table(tables)

    # ("multiple","true")::params: always lists every VM it matches
    do_vm_op(_with_params(ctx, [("multiple", "true"), *ctx.params]), op, ["params"])


def vm_cd_insert(ctx):
    name = ctx.get("cd-name")
    vdis = [
        v
        for v in ctx.call("VDI.get_by_name_label", name)
        if ctx.call("SR.get_content_type", ctx.call("VDI.get_SR", v)) == "iso"
    ]
    if not vdis:
        raise CliFailure(f"CD {name} not found")
    if len(vdis) > 1:
        raise CliFailure(
            f"Multiple CDs named {name} found. Please use vbd-insert and specify uuids"
        )

    def op(rec):
        cds = [
            b
            for b in rec.row()["VBDs"]
            if ctx.call("VBD.get_type", b) == "CD" and ctx.call("VBD.get_empty", b)
        ]
        if not cds:
            raise Failure("VM_NO_EMPTY_CD_VBD", rec.ref)
        if len(cds) > 1:
            raise CliFailure("Two or more empty CD devices found. Please use vbd-insert")
        ctx.call("VBD.insert", cds[0], vdis[0])

    do_vm_op(ctx, op, ["cd-name"])


def vm_cd_eject(ctx):
    def op(rec):
        cds = [b for b in rec.row()["VBDs"] if ctx.call("VBD.get_type", b) == "CD"]
        if not cds:
            raise CliFailure("No CDs found")
        if len(cds) > 1:
            raise CliFailure("Two or more CDs found. Please use vbd-eject")
        ctx.call("VBD.eject", cds[0])

    do_vm_op(ctx, op, [])


# -- adding and removing disks and CDs -------------------------------------------------------

OWNER_KEY = "owner"  # Xapi_globs.owner_key
SM_VM_HINT = "vmhint"  # Xapi_globs._sm_vm_hint
CREATED_BY_XE = "Created by xe"


def create_vbd_and_plug(ctx, vm, vdi, device, mode, vtype, other_config) -> None:
    """``create_vbd_and_plug_with_other_config``: ``VBD.create`` (not bootable, unpluggable,
    no QoS), then ``VBD.plug``, whose API error is only logged (the VBD stays, unplugged:
    e.g. a halted VM's)."""
    record = {
        "VM": vm,
        "VDI": vdi,
        "userdevice": device,
        "bootable": False,
        "mode": mode,
        "type": vtype,
        "unpluggable": True,
        "empty": False,
        "other_config": other_config,
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    vbd = ctx.call("VBD.create", record)
    try:
        ctx.call("VBD.plug", vbd)
    except Failure as e:
        log.debug("VBD created but not hotplugged: %s %s", e.code, e.params)


def vm_disk_add(ctx):
    size = bytes_of_string("disk-size", ctx.get("disk-size"))
    device = ctx.get("device")
    if ctx.has("sr-uuid"):
        sr = ctx.call("SR.get_by_uuid", ctx.get("sr-uuid"))
    else:
        default = _default_sr_uuid(ctx)
        if default is None:
            raise CliFailure("No default Pool SR set; you must specify an SR on the commandline")
        sr = ctx.call("SR.get_by_uuid", default)

    def op(rec):
        vm_uuid = ctx.call("VM.get_uuid", rec.ref)
        vdi = ctx.call(
            "VDI.create",
            {
                "name_label": CREATED_BY_XE,
                "name_description": CREATED_BY_XE,
                "SR": sr,
                "virtual_size": str(size),
                "type": "user",
                "sharable": False,
                "read_only": False,
                "other_config": {},
                "xenstore_data": {},
                "sm_config": {SM_VM_HINT: vm_uuid},
                "tags": [],
            },
        )
        try:
            create_vbd_and_plug(ctx, rec.ref, vdi, device, "RW", "Disk", {OWNER_KEY: ""})
        except BaseException:
            ctx.call("VDI.destroy", vdi)
            raise

    do_vm_op(ctx, op, ["sr-uuid", "device", "disk-size"])


def vm_disk_remove(ctx):
    device = ctx.get("device")

    def op(rec):
        vbds = ctx.call("VM.get_record", rec.ref)["VBDs"]
        found = [b for b in vbds if ctx.call("VBD.get_userdevice", b) == device]
        if not found:
            raise CliFailure("Disk not found")
        vdi = ctx.call("VBD.get_VDI", found[0])
        ctx.call("VBD.destroy", found[0])
        ctx.call("VDI.destroy", vdi)

    do_vm_op(ctx, op, ["device"])


def _is_iso(ctx, vdi) -> bool:
    return ctx.call("SR.get_content_type", ctx.call("VDI.get_SR", vdi)) == "iso"


def vm_cd_remove(ctx):
    name = ctx.get("cd-name")

    def named(vbd) -> bool:
        try:
            vdi = ctx.call("VBD.get_VDI", vbd)
            return _is_iso(ctx, vdi) and ctx.call("VDI.get_name_label", vdi) == name
        except Failure:  # the VDI handle is invalid: an empty drive
            return name == "<EMPTY>"

    def op(rec):
        found = [b for b in rec.row()["VBDs"] if named(b)]
        if not found:
            raise CliFailure("Disk not found")
        ctx.call("VBD.destroy", found[0])

    do_vm_op(ctx, op, ["cd-name"])


def vm_cd_add(ctx):
    name = ctx.get("cd-name")
    vdis = [v for v in ctx.call("VDI.get_by_name_label", name) if _is_iso(ctx, v)]
    if not vdis:
        raise CliFailure(f"CD {name} not found!")
    device = ctx.get("device")
    do_vm_op(
        ctx,
        lambda rec: create_vbd_and_plug(ctx, rec.ref, vdis[0], device, "RO", "CD", {}),
        ["cd-name", "device", "cd-location"],
    )


COMMANDS = {
    "vm-install": Cmd(
        ["new-name-label"],
        ["sr-name-label", "sr-uuid", "template", "copy-bios-strings-from"],
        "Install a new VM from a template. The template parameter can match either the "
        "template name or the uuid.",
        vm_install,
        ["Standard"],
    ),
    "vm-disk-list": Cmd(
        [],
        ["vbd-params", "vdi-params"],
        "List the disks on the selected VM(s).",
        vm_disk_list,
        _VM_OP,
    ),
    "vm-cd-list": Cmd(
        [],
        ["vbd-params", "vdi-params"],
        "List the CDs currently attached to the VM(s).",
        vm_cd_list,
        _VM_OP,
    ),
    "vm-vif-list": Cmd([], [], "List the VIFs present on selected VM.", vm_vif_list, _VM_OP),
    "vm-cd-insert": Cmd(
        ["cd-name"],
        [],
        "Insert a CD into the virtual CD drive. This command will only work if there is one "
        "and only one empty CD device attached to the VM. When there are two or more empty "
        "CD devices, please use the command 'vbd-insert' and specify the uuids of the VBD "
        "and of the VDI to insert.",
        vm_cd_insert,
        _VM_OP,
    ),
    "vm-cd-eject": Cmd(
        [],
        [],
        "Eject a CD from the virtual CD drive. This command will only work if there is one "
        "and only one CD attached to the VM. When there are two or more CDs, please use the "
        "command 'vbd-eject' and specify the uuid of the VBD.",
        vm_cd_eject,
        _VM_OP,
    ),
    "vm-disk-add": Cmd(
        ["disk-size", "device"],
        ["sr-uuid"],
        "Add a new disk to the selected VM(s). The device field should be selected from the "
        "field 'allowed-VBD-devices' of the VM.",
        vm_disk_add,
        _VM_OP,
    ),
    "vm-disk-remove": Cmd(
        ["device"],
        [],
        "Remove a disk from the selected VM and destroy it.",
        vm_disk_remove,
        _VM_OP,
    ),
    "vm-cd-add": Cmd(
        ["cd-name", "device"],
        [],
        "Add a CD to the VM(s). The device field should be selected from the parameter "
        "'allowed-VBD-devices' of the VM.",
        vm_cd_add,
        _VM_OP,
    ),
    "vm-cd-remove": Cmd(
        ["cd-name"], [], "Remove the selected CDs from the VM(s).", vm_cd_remove, _VM_OP
    ),
}
