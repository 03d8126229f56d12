"""The CLI records of storage: SR, PBD, VDI, VBD (``sr-``, ``pbd-``, ``vdi-``, ``vbd-list``
and ``-param-*``).

Mirrors xen-api Dundee ``ocaml/client_records/records.ml`` ``sr_record``, ``pbd_record``,
``vdi_record``, ``vbd_record`` (field names, order, rendering, setters) and
``record_util.ml`` (``vdi_type_to_string``, ``sr_operation_to_string``...).
"""

from __future__ import annotations

from ...checks.storage import VDI_TYPE_STRINGS
from ...datamodel import NULL_REF
from ...wire.ocaml import bool_of_string
from .. import render as R
from ..errors import CliFailure, printexc
from ..values import safe_bool
from .record import Builder, Record

_SR_OPS = {
    "vdi_create": "VDI.create",
    "vdi_introduce": "VDI.introduce",
    "vdi_destroy": "VDI.destroy",
    "vdi_resize": "VDI.resize",
    "vdi_clone": "VDI.clone",
    "vdi_snapshot": "VDI.snapshot",
    "pbd_create": "PBD.create",
    "pbd_destroy": "PBD.destroy",
}


def name_of(ctx, ref) -> str:
    """``Records.get_name_from_ref``: the referenced object's name, or ``<not in
    database>``."""
    found = ctx.lookup(ref) if ref and ref != NULL_REF else None
    if not found or found[1] is None:
        return R.NID
    return found[1]


def _ops(B, f, conv=str):
    B.add_set(f.replace("_", "-"), B.listed(f, conv))


def sr_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "SR", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add

    def host():
        pbds = x().get("PBDs", [])
        if len(pbds) > 1:
            return "<shared>"
        if len(pbds) == 1:
            return name_of(ctx, ctx.call("PBD.get_host", pbds[0]))
        return R.NID

    add("uuid", B.s("uuid"))
    B.str_rw("name-label", "name_label")
    B.str_rw("name-description", "name_description")
    add("host", host)
    _ops(B, "allowed_operations", lambda o: _SR_OPS.get(o, o))
    _ops(B, "current_operations", lambda o: _SR_OPS.get(o, o))
    B.add_set("VDIs", lambda: [ctx.uuid_of(v) for v in x().get("VDIs", [])])
    B.add_set("PBDs", lambda: [ctx.uuid_of(p) for p in x().get("PBDs", [])])
    add("virtual-allocation", B.i("virtual_allocation"))
    add("physical-utilisation", B.i("physical_utilisation"))
    add("physical-size", B.i("physical_size"))
    add("type", B.s("type"))
    add("content-type", B.s("content_type"))
    add(
        "shared",
        B.b("shared"),
        set=B.setter("set_shared", lambda v: safe_bool("shared", v)),
    )
    add("introduced-by", B.r("introduced_by"))
    add("is-tools-sr", B.b("is_tools_sr"))
    B.add_map("other-config", "other_config", writable=True)
    B.add_map("sm-config", "sm_config")
    add("blobs", B.blobs("blobs"))
    add("local-cache-enabled", B.b("local_cache_enabled"))
    B.add_tags()
    add("clustered", B.b("clustered"))
    return rec


def pbd_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "PBD", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add
    add("uuid", B.s("uuid"))
    add("host", B.r("host"), deprecated=True)
    add("host-uuid", B.r("host"))
    add("host-name-label", lambda: name_of(ctx, x().get("host")))
    add("sr-uuid", B.r("SR"))
    add("sr-name-label", lambda: name_of(ctx, x().get("SR")))
    B.add_map("device-config", "device_config")
    add("currently-attached", B.b("currently_attached"))
    B.add_map("other-config", "other_config", writable=True)
    return rec


def vdi_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "VDI", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add

    def metadata_of_pool():
        pools = ctx.call("pool.get_all")
        mine = x().get("metadata_of_pool", NULL_REF)
        if pools and mine == pools[0]:
            return ctx.uuid_of(mine)
        return R.NID

    add("uuid", B.s("uuid"))
    B.str_rw("name-label", "name_label")
    B.str_rw("name-description", "name_description")
    add("is-a-snapshot", B.b("is_a_snapshot"))
    add("snapshot-of", B.r("snapshot_of"))
    add("snapshots", B.rs("snapshots"))
    add("snapshot-time", B.s("snapshot_time"))
    _ops(B, "allowed_operations")
    _ops(B, "current_operations")
    add("sr-uuid", B.r("SR"))
    add("sr-name-label", lambda: name_of(ctx, x().get("SR")))
    B.add_set("vbd-uuids", lambda: [ctx.uuid_of(v) for v in x().get("VBDs", [])])
    B.add_set("crashdump-uuids", lambda: [ctx.uuid_of(v) for v in x().get("crash_dumps", [])])
    add("virtual-size", B.i("virtual_size"))
    add("physical-utilisation", B.i("physical_utilisation"))
    add("location", B.s("location"))
    add("type", lambda: VDI_TYPE_STRINGS.get(x().get("type", ""), x().get("type", "")))
    add("sharable", B.b("sharable"))
    add("read-only", B.b("read_only"))
    add("storage-lock", B.b("storage_lock"))
    add("managed", B.b("managed"))
    add("parent", B.r("parent"))
    add("missing", B.b("missing"))
    add("is-tools-iso", B.b("is_tools_iso"))
    B.add_map("other-config", "other_config", writable=True)
    B.add_map("xenstore-data", "xenstore_data")
    B.add_map("sm-config", "sm_config")
    add("on-boot", B.s("on_boot"), set=B.setter("set_on_boot", _on_boot))
    add("allow-caching", B.b("allow_caching"), set=B.setter("set_allow_caching", bool_of_string))
    add("metadata-latest", B.b("metadata_latest"))
    add("metadata-of-pool", metadata_of_pool)
    B.add_tags()
    return rec


def _on_boot(v):
    """``Record_util.string_to_vdi_onboot``."""
    low = v.lower()
    if low in ("reset", "persist"):
        return low
    raise CliFailure(f"Expected 'persist' or 'reset', got {v}")


def vbd_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "VBD", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add

    def attachable():
        try:
            ctx.call("VBD.assert_attachable", ref)
            return "true"
        except Exception as e:  # noqa: BLE001 -- records.ml prints any exception
            return f"false (error: {printexc(e)})"

    add("uuid", B.s("uuid"))
    add("vm-uuid", B.r("VM"))
    add("vm-name-label", lambda: name_of(ctx, x().get("VM")))
    add("vdi-uuid", B.r("VDI"))
    add(
        "vdi-name-label",
        lambda: "<EMPTY>" if x().get("empty") else name_of(ctx, x().get("VDI")),
    )
    _ops(B, "allowed_operations")
    _ops(B, "current_operations")
    add("empty", B.b("empty"))
    add("device", B.s("device"))
    B.str_rw("userdevice", "userdevice")
    add(
        "bootable",
        B.b("bootable"),
        set=B.setter("set_bootable", lambda v: safe_bool("bootable", v)),
    )
    add("mode", B.s("mode"), set=B.setter("set_mode", _vbd_mode))
    add("type", B.s("type"), set=B.setter("set_type", _vbd_type))
    add(
        "unpluggable",
        B.b("unpluggable"),
        set=B.setter("set_unpluggable", lambda v: safe_bool("unpluggable", v)),
    )
    add("currently-attached", B.b("currently_attached"))
    add("attachable", attachable, expensive=True)
    add("storage-lock", B.b("storage_lock"))
    add("status-code", B.i("status_code"))
    add("status-detail", B.s("status_detail"))
    B.str_rw("qos_algorithm_type", "qos_algorithm_type")
    B.add_map("qos_algorithm_params", "qos_algorithm_params", writable=True)
    B.add_set("qos_supported_algorithms", B.listed("qos_supported_algorithms"))
    B.add_map("other-config", "other_config", writable=True)
    add("io_read_kbs", lambda: "<unknown>", expensive=True)
    add("io_write_kbs", lambda: "<unknown>", expensive=True)
    return rec


def _vbd_mode(v):
    """``Record_util.string_to_vbd_mode``."""
    low = v.lower()
    if low in ("ro", "rw"):
        return low.upper()
    raise CliFailure(f"Expected 'RO' or 'RW', got {v}")


def _vbd_type(v):
    """``Record_util.string_to_vbd_type``."""
    for t in ("CD", "Disk", "Floppy"):
        if v.lower() == t.lower():
            return t
    raise CliFailure(f"Expected 'CD' or 'Disk', got {v}")
