"""The objects of an XVA's ``ova.xml``: chosen and blanked on export, created on import.

Export: xen-api ``dundee-lcm`` ``ocaml/xapi/export.ml`` ``update_table`` (the VM, its VIFs
and their networks, its VBDs and their VDIs and SRs, guest metrics, the hosts it runs on
or prefers, with ``with_snapshots`` its snapshots) and ``make_*`` (every reference outside
the table becomes ``OpaqueRef:NULL``, operations are cleared, and each class blanks what
another pool could not use). Ids are ``Ref:0``, ``Ref:1``, ... in the order the walk adds
them.

Import: ``ocaml/xapi/import.ml`` ``handle_all``, simplified to the objects a VM needs, each
created through the API as xapi's import does (so the constructors check what they check):
hosts are matched by UUID (else none), SRs map to the import's SR, VDIs are created there
(a VDI of an ISO SR is matched by UUID, else the VBD is empty), networks are matched by
UUID, name, then bridge, else created, then the VM, its VBDs and VIFs.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import xva
from ..datamodel import NULL_REF
from ..errors import Failure
from ..wire import routes
from ..wire.values import convert

log = logging.getLogger(__name__)

_BLANK: dict[str, dict[str, Any]] = {
    "VM": dict(
        suspend_VDI=NULL_REF,
        crash_dumps=[],
        VTPMs=[],
        consoles=[],
        metrics=NULL_REF,
        protection_policy=NULL_REF,
        blobs={},
    ),
    "VIF": dict(metrics=NULL_REF),
    "VBD": dict(metrics=NULL_REF),
    "VDI": dict(crash_dumps=[]),
    "network": dict(PIFs=[]),
    "SR": dict(PBDs=[]),
    "host": dict(
        PIFs=[],
        PBDs=[],
        PGPUs=[],
        PCIs=[],
        host_CPUs=[],
        license_params={},
        blobs={},
        external_auth_type="",
        external_auth_service_name="",
        external_auth_configuration={},
        metrics=NULL_REF,
        patches=[],
        crashdumps=[],
        logging={},
        supported_bootloaders=[],
        cpu_configuration={},
        other_config={},
        capabilities=[],
        software_version={},
        sched_policy="",
        ha_statefiles=[],
        ha_network_peers=[],
        tags=[],
    ),
}
_ORDER = ("host", "VM", "VM_guest_metrics", "VBD", "VIF", "network", "VDI", "SR")


def _walk(db, vm: str, table: dict, with_snapshots: bool, preserve: bool) -> None:
    def add(ref):
        if ref not in table:
            table[ref] = f"Ref:{len(table)}"

    row = db.tables["VM"].get(vm)
    if row is None or vm in table:
        return
    add(vm)
    for vif in row["VIFs"]:
        if vif in db.tables["VIF"]:
            add(vif)
            add(db.tables["VIF"][vif]["network"])
    for vbd in row["VBDs"]:
        if vbd in db.tables["VBD"]:
            add(vbd)
            vrow = db.tables["VBD"][vbd]
            if not vrow["empty"] and vrow["VDI"] in db.tables["VDI"]:
                add(vrow["VDI"])
                add(db.tables["VDI"][vrow["VDI"]]["SR"])
    if with_snapshots:
        for snap in row["snapshots"]:
            _walk(db, snap, table, False, preserve)
    if preserve and row["power_state"] == "Suspended" and row["suspend_VDI"] in db.tables["VDI"]:
        add(row["suspend_VDI"])
        add(db.tables["VDI"][row["suspend_VDI"]]["SR"])
    add(row["guest_metrics"])
    add(row["resident_on"])
    add(row["affinity"])
    if with_snapshots and row["parent"] in db.tables["VM"]:
        _walk(db, row["parent"], table, False, preserve)


def _externalise(db, cls: str, ref: str, table: dict, snapshots: bool, preserve: bool) -> dict:
    fields = db.schema.classes[cls].fields
    out = dict(db.get(cls, ref))
    for name, f in fields.items():
        if name not in out:
            continue
        kind = f.type.kind
        if kind == "ref":
            out[name] = table.get(out[name], NULL_REF)
        elif kind == "set" and f.type.elem is not None and f.type.elem.kind == "ref":
            out[name] = [table[r] for r in out[name] if r in table]
    for k in ("current_operations", "allowed_operations"):
        if k in out:
            out[k] = {} if k == "current_operations" else []
    out.update({k: v for k, v in _BLANK.get(cls, {}).items() if k in out})
    if cls == "VM":
        defaults = db.schema.classes["VM"].defaults()
        if not preserve:
            out["power_state"] = "Halted"
        if not snapshots:
            for k in ("is_a_snapshot", "snapshot_of", "snapshots", "snapshot_time", "parent"):
                out[k] = defaults[k]
            out["transportable_snapshot_id"] = ""
    if cls in ("VIF", "VBD") and not preserve:
        out["currently_attached"] = False
    return out


def vm_metadata(host, vms, *, with_snapshots: bool, preserve_power_state: bool):
    """``Export.vm_metadata``: (ref -> id table, ``ova.xml`` bytes)."""
    db = host.db
    table: dict[str, str] = {}
    for vm in vms:
        _walk(db, vm, table, with_snapshots, preserve_power_state)
    table.pop(NULL_REF, None)
    objects = []
    for cls in _ORDER:
        for ref in db.refs(cls):
            if ref in table:
                rec = _externalise(db, cls, ref, table, with_snapshots, preserve_power_state)
                objects.append((cls, table[ref], rec))
    sv = db.get("host", host.ref)["software_version"]
    major, _, minor = str(sv.get("xapi", "1.9")).partition(".")
    version = {
        "hostname": sv.get("hostname", host.name_label),
        "date": sv.get("date", ""),
        "product_version": sv.get("product_version", ""),
        "product_brand": sv.get("product_brand", ""),
        "build_number": sv.get("build_number", ""),
        "xapi_major": major,
        "xapi_minor": minor or "0",
        "export_vsn": str(xva.EXPORT_VSN),
    }
    return table, xva.ova_xml(version, objects)


# -- import ------------------------------------------------------------------------------------


def _api(req: routes.Request, session: str, method: str, *args):
    master = req.host.pool.master
    return req.server.dispatcher.dispatch(master, method, [session, *args])


def _session(req: routes.Request) -> tuple[str, bool]:
    """The caller's session (``with_context``): its ``session_id``, else a login with its
    Basic credentials (logged out after)."""
    sid = req.param("session_id")
    if sid is not None:
        return sid, False
    user, pwd = routes.basic(req.headers.get("authorization", ""))
    master = req.host.pool.master
    ref = req.server.dispatcher.dispatch(
        master, "session.login_with_password", [user, pwd, "1.0", "xapi-sim HTTP handler"]
    )
    return ref, True


def _remap(rec: dict, table: dict, fields) -> dict:
    out = {}
    for k, v in rec.items():
        f = fields.get(k)
        if f is None:
            continue
        kind = f.type.kind
        if kind == "ref" and isinstance(v, str):
            v = table.get(v, NULL_REF)
        elif kind == "set" and f.type.elem is not None and f.type.elem.kind == "ref":
            v = [table[r] for r in v if r in table] if isinstance(v, list) else []
        out[k] = v
    return out


def create_objects(req, call, objects, sr, *, restore, force, created, vdi_map=None, dry_run=False):
    """Create the objects of ``ova.xml``; returns (id -> ref table, [(id, vdi, size)] of
    the disks to receive, [new VMs]). ``created`` collects (class, ref) for cleanup.
    ``vdi_map`` set: a metadata import -- every VDI is the pool's own, found by UUID (mapped
    through ``vdi_map``), none is created; ``dry_run``: only that check."""
    db = call.db
    schema = db.schema.classes
    session, logout = _session(req)
    try:
        table: dict[str, str] = {}
        by_cls: dict[str, list] = {}
        for cls, oid, rec in objects:
            by_cls.setdefault(cls, []).append((oid, rec))
        iso = {oid for oid, rec in by_cls.get("SR", []) if rec.get("content_type") == "iso"}
        for oid, rec in by_cls.get("host", []):
            ref = db.uuids["host"].get(str(rec.get("uuid", "")))
            if ref is not None:
                table[oid] = ref
        for oid, _ in by_cls.get("SR", []):
            if oid not in iso:
                table[oid] = sr
        disks = []
        for oid, rec in by_cls.get("VDI", []):
            if vdi_map is not None:
                uuid = str(rec.get("uuid", ""))
                ref = db.uuids["VDI"].get(vdi_map.get(uuid, uuid))
                if ref is None:
                    raise Failure("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", oid)
                table[oid] = ref
                continue
            if rec.get("SR") in iso:
                ref = db.uuids["VDI"].get(str(rec.get("uuid", "")))
                if ref is not None:
                    table[oid] = ref
                continue
            fields = _remap(rec, table, schema["VDI"].fields)
            fields.update(SR=sr, sm_config={})
            ref = _api(req, session, "VDI.create", fields)
            created.append(("VDI", ref))
            table[oid] = ref
            disks.append((oid, ref, int(rec.get("virtual_size", 0))))
        if dry_run:
            return table, disks, []
        for oid, rec in by_cls.get("network", []):
            table[oid] = _network(req, session, db, rec, created)
        vms = []
        for oid, rec in by_cls.get("VM", []):
            ref = _vm(req, call, session, rec, table, restore, force, created)
            if ref is not None:
                table[oid] = ref
                vms.append(ref)
        for oid, rec in by_cls.get("VBD", []):
            if rec.get("VM") not in table:
                continue
            fields = _remap(rec, table, schema["VBD"].fields)
            if fields.get("VDI", NULL_REF) == NULL_REF:
                if fields.get("type") != "CD":
                    continue
                fields["empty"] = True
            table[oid] = _api(req, session, "VBD.create", fields)
        for oid, rec in by_cls.get("VIF", []):
            if rec.get("VM") not in table or rec.get("network") not in table:
                continue
            fields = _remap(rec, table, schema["VIF"].fields)
            table[oid] = _api(req, session, "VIF.create", fields)
        return table, disks, vms
    finally:
        if logout:
            try:
                _api(req, session, "session.logout")
            except Failure:
                log.info("could not log out the import's session")


def _network(req, session, db, rec, created) -> str:
    uuid, name, bridge = rec.get("uuid"), rec.get("name_label"), rec.get("bridge")
    ref = db.uuids["network"].get(str(uuid))
    if ref is not None:
        return ref
    for r, row in db.rows("network"):
        if row["name_label"] == name:
            return r
    for r, row in db.rows("network"):
        if bridge and row["bridge"] == bridge:
            return r
    fields = {
        k: rec[k]
        for k in ("name_label", "name_description", "MTU", "other_config", "tags")
        if k in rec
    }
    ref = _api(req, session, "network.create", fields)
    created.append(("network", ref))
    return ref


def _vm(req, call, session, rec, table, restore, force, created) -> str | None:
    db = call.db
    uuid = str(rec.get("uuid", ""))
    if restore and uuid in db.uuids["VM"]:
        old = db.uuids["VM"][uuid]
        state = db.get("VM", old)["power_state"]
        if state != "Halted":
            if force:
                return None
            raise Failure("VM_BAD_POWER_STATE", old, "halted", state.lower())
        _api(req, session, "VM.destroy", old)
    fields = _remap(rec, table, db.schema.classes["VM"].fields)
    other = dict(fields.get("other_config") or {})
    other.pop("grant_api_access", None)
    if not restore:
        other.pop("mac_seed", None)
    fields["other_config"] = other
    fields["power_state"] = "Halted"
    ref = _api(req, session, "VM.create", fields)
    created.append(("VM", ref))
    with db.lock:
        row = db.get("VM", ref)
        extra: dict[str, Any] = {
            "current_operations": {**row["current_operations"], call.task: "import"}
        }
        if restore:
            extra["uuid"] = uuid
        for k in ("is_a_snapshot", "snapshot_time", "transportable_snapshot_id"):
            if k in fields:
                extra[k] = convert(db.schema.classes["VM"].fields[k].type, fields[k])
        db.update("VM", ref, **extra)
    return ref


def cleanup(req, call, created) -> None:
    """``Importexport.cleanup``: destroy what the import created, newest first."""
    db = call.db
    try:
        session, logout = _session(req)
    except Failure:
        log.exception("cannot clean up after a failed import")
        return
    for cls, ref in reversed(created):
        try:
            if cls == "VM" and db.exists("VM", ref):
                with db.lock:
                    db.update("VM", ref, current_operations={})
                _api(req, session, "VM.destroy", ref)
            elif cls in ("VDI", "network") and db.exists(cls, ref):
                _api(req, session, f"{cls}.destroy", ref)
        except Failure:
            log.exception("cleanup after a failed import: %s %s", cls, ref)
    if logout:
        try:
            _api(req, session, "session.logout")
        except Failure:
            log.info("could not log out the cleanup's session")
