"""SR, PBD and SM behaviour, Dundee semantics.

Mirrors xen-api ``dundee-lcm`` ``ocaml/xapi/xapi_sr.ml`` (create, introduce, forget,
destroy, update, scan, probe, set_*), ``xapi_pbd.ml`` (create, plug, unplug, destroy),
``message_forwarding.ml`` ``module SR`` (``with_sr_marked``: the SR's operation check from
``xapi_sr_operations.ml`` -- ``checks/storage.py`` -- before the body; ``forward_sr_op``:
``SR_NO_PBDS`` when no suitable PBD is plugged) and the SM backends' device-config checks
(sm v1.14.0 drivers' ``load()``, recorded in ``data/sm_errors.json``), whose failures xapi
reports as ``SR_BACKEND_FAILURE_<code> ["", text, stderr]`` (``sm_exec.ml``).

Every call is one transaction: a refused call changes nothing. Space is accounted by
``install_storage`` (physical_size / physical_utilisation / virtual_allocation).
"""

from __future__ import annotations

import logging
import re

from .. import catalogue
from .. import install_storage as store
from ..dispatch import api
from ..errors import Failure, internal
from ..wire.values import convert
from . import common as c

log = logging.getLogger(__name__)


# -- shared helpers (used by storage_vdi / storage_vbd / storage_vm) -----------------------


def ctor_fields(call, cls, record) -> dict:
    """The constructor record as ``gen_server.ml`` ``from_ctor_record`` reads it: RW and
    RO/constructor fields, defaults for the ones omitted that have one,
    ``Dispatcher_FieldNotFound`` otherwise."""
    fields = {}
    for f in call.db.schema.classes[cls].fields.values():
        if f.qualifier not in ("RW", "RO/constructor"):
            continue
        if f.name in record:
            fields[f.name] = convert(f.type, record[f.name])
        elif not f.has_default:
            raise internal(f'Server_helpers.Dispatcher_FieldNotFound("{f.name}")')
        else:
            fields[f.name] = call.db.schema.classes[cls].defaults()[f.name]
    return fields


def master_ref(call) -> str:
    return call.pool.master.ref


def choose_pbd(call, sr, consider_unplugged=False) -> str:
    """``message_forwarding.ml`` ``choose_pbd_for_sr``: a shared SR's operations run on
    the master's PBD; otherwise any (plugged) PBD; ``SR_NO_PBDS [sr]`` if none."""
    db = call.db
    row = db.get("SR", sr)
    pbds = [p for p in row["PBDs"] if p in db.tables["PBD"]]
    if not consider_unplugged:
        pbds = [p for p in pbds if db.tables["PBD"][p]["currently_attached"]]
    if row["shared"]:
        pbds = [p for p in pbds if db.tables["PBD"][p]["host"] == master_ref(call)]
    if not pbds:
        raise Failure("SR_NO_PBDS", sr)
    return pbds[0]


def assert_pbd_is_plugged(call, sr) -> None:
    """``Sm.assert_pbd_is_plugged`` on the host the call was forwarded to."""
    choose_pbd(call, sr)


def refresh_sr(call, sr) -> None:
    """``Xapi_sr_operations.update_allowed_operations`` and its VDIs' (their ``resize``
    depends on a plugged PBD)."""
    db = call.db
    if not db.exists("SR", sr):
        return
    c.refresh_allowed(call.world, db, "SR", sr)
    for vdi in db.get("SR", sr)["VDIs"]:
        c.refresh_allowed(call.world, db, "VDI", vdi)


def sm_features(db, sr_type) -> set:
    sm = store.sm_of_type(db, sr_type)
    return set(sm["features"]) if sm is not None else set()


def sr_marked(call, sr, op):
    """``with_sr_marked``: the SR's operation check (waiting out other operations), the
    body, then ``current_operations``/``allowed_operations`` restored."""
    return c.with_operation(call, "SR", sr, op)


# -- device-config checks, as the SM backends run them ------------------------------------

_DEV = re.compile(r"/dev/\S+")


def _missing(dc, key) -> bool:
    return key not in dc


def _empty(dc, key) -> bool:
    return not dc.get(key)


def check_device_config(call, host, sr_type, dc, probe=False) -> None:
    """The device-config checks of ``sr_type``'s backend (``load()`` and what it calls),
    in their order; raises the SM error. Types without recorded checks accept anything.
    The keys and errors are ``catalogue.sm_config_checks(type)``'s."""
    checks = {ch["error"] for ch in catalogue.sm_config_checks(sr_type)}
    if sr_type in ("ext", "lvm"):
        if _empty(dc, "device"):
            raise store.sm_failure("ConfigDeviceMissing")
        if not all(_DEV.fullmatch(d) for d in dc["device"].split(",")):
            raise store.sm_failure("ConfigDeviceInvalid")
        if (
            sr_type == "lvm"
            and not probe
            and "allocation" in dc
            and dc["allocation"] not in ("thick", "thin")
        ):
            raise store.sm_failure("InvalidArg")
    elif sr_type == "nfs":
        if _missing(dc, "server"):
            raise store.sm_failure("ConfigServerMissing")
        if _missing(dc, "serverpath"):
            raise store.sm_failure("ConfigServerPathMissing")
        if not dc["serverpath"].startswith("/"):
            raise store.sm_failure("ConfigServerPathBad")
    elif sr_type == "iso":
        if _missing(dc, "location"):
            raise store.sm_failure("ConfigLocationMissing")
        loc = dc["location"]
        if dc.get("type") == "cifs":
            if not re.fullmatch(r"(//[^/]+/.+|\\\\[^\\]+\\.+)", loc):
                raise store.sm_failure("ISOLocationStringError")
        elif not loc.startswith("/") and ":" not in loc:
            raise store.sm_failure("ISOLocationStringError")
    elif sr_type == "lvmoiscsi":
        if _empty(dc, "target"):
            raise store.sm_failure("ConfigTargetMissing")
        hrow = call.db.get("host", host)
        if "localIQN" not in dc and not hrow["other_config"].get("iscsi_iqn"):
            raise store.sm_failure("ConfigISCSIIQNMissing")
        port = dc.get("port", "3260")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise store.sm_failure("ISCSIPort")
        if _empty(dc, "targetIQN"):
            raise store.sm_failure("ConfigTargetIQNMissing")
        if _missing(dc, "SCSIid"):
            raise store.sm_failure("ConfigSCSIid")
    if checks and sr_type not in ("ext", "lvm", "nfs", "iso", "lvmoiscsi"):
        log.warning("device-config checks of %s are not simulated", sr_type)


def _assert_known_driver(call, sr_type) -> None:
    if store.sm_of_type(call.db, sr_type) is None:
        raise Failure("SR_UNKNOWN_DRIVER", sr_type)


def _assert_no_srmaster_key(dc) -> None:
    """``Xapi_pbd.assert_no_srmaster_key``."""
    if "SRmaster" in dc:
        raise Failure(
            "VALUE_NOT_SUPPORTED", "SRmaster", dc["SRmaster"], "This key is for internal use only"
        )


def _assert_host_up(call, host) -> None:
    """``do_op_on``: the host must answer."""
    h = c.runtime_host(call, host)
    if h.state != "up" or not call.world.is_live(h):
        raise Failure("HOST_OFFLINE", host)


# -- PBD ---------------------------------------------------------------------------------


def create_pbd(call, host, sr, device_config, other_config=None, attached=False) -> str:
    """``Xapi_pbd.create_common``: ``PBD_EXISTS [sr, host, pbd]``, no ``SRmaster`` key."""
    db = call.db
    db.get("host", host)
    for p in db.get("SR", sr)["PBDs"]:
        if db.tables["PBD"][p]["host"] == host:
            raise Failure("PBD_EXISTS", sr, host, p)
    _assert_no_srmaster_key(device_config)
    return store.new_row(
        call.world,
        db,
        "PBD",
        host=host,
        SR=sr,
        device_config=dict(device_config),
        currently_attached=attached,
        other_config=dict(other_config or {}),
    )


@api("PBD.create")
def pbd_create(call, record):
    with call.db.lock:
        f = ctor_fields(call, "PBD", record)
        ref = create_pbd(call, f["host"], f["SR"], f["device_config"], f["other_config"])
        refresh_sr(call, f["SR"])
        return ref


def plug_pbd(call, pbd) -> None:
    """``Xapi_pbd.plug``: nothing if already attached; else the sharing constraint
    (``SR_NOT_SHARABLE [sr, host]``), the backend's attach (device-config checks), then
    ``currently_attached`` and the SR's allowed operations. An SR never attached before
    learns its size here."""
    db = call.db
    row = db.get("PBD", pbd)
    if row["currently_attached"]:
        return
    sr = row["SR"]
    srow = db.get("SR", sr)
    _assert_known_driver(call, srow["type"])
    if not srow["shared"]:
        for p in srow["PBDs"]:
            prow = db.tables["PBD"].get(p)
            if (
                p != pbd
                and prow is not None
                and prow["currently_attached"]
                and prow["host"] != row["host"]
            ):
                raise Failure("SR_NOT_SHARABLE", sr, prow["host"])
    check_device_config(call, row["host"], srow["type"], row["device_config"])
    db.set("PBD", pbd, "currently_attached", True)
    if srow["physical_size"] < 0:
        db.set(
            "SR",
            sr,
            "physical_size",
            store.CREATE_SIZES.get(srow["type"], store.DEFAULT_CREATE_SIZE),
        )
        store.recompute_sr(db, sr)
    refresh_sr(call, sr)


@api("PBD.plug")
def pbd_plug(call, self):
    with call.db.lock:
        row = call.db.get("PBD", self)
        _assert_host_up(call, row["host"])
        plug_pbd(call, self)


def active_vdis_of_pbd(db, pbd) -> list:
    """``Xapi_pbd.get_active_vdis_by_pbd``: VDIs of the PBD's SR behind an attached or
    reserved VBD of a VM resident on the PBD's host."""
    row = db.get("PBD", pbd)
    out = []
    for vm in db.get("host", row["host"])["resident_VMs"] if db.exists("host", row["host"]) else ():
        for vbd in db.tables["VM"][vm]["VBDs"]:
            v = db.tables["VBD"].get(vbd)
            if v is None or v["empty"] or not v["currently_attached"]:
                continue
            vdi = db.tables["VDI"].get(v["VDI"])
            if vdi is not None and vdi["SR"] == row["SR"]:
                out.append(v["VDI"])
    return out


@api("PBD.unplug")
def pbd_unplug(call, self):
    """``Xapi_pbd.unplug``: nothing if not attached; ``VDI_IN_USE [vdi...]`` while a VM on
    the host uses a (non-metadata) VDI of the SR."""
    db = call.db
    with db.lock:
        row = db.get("PBD", self)
        _assert_host_up(call, row["host"])
        if not row["currently_attached"]:
            return
        vdis = [
            v for v in active_vdis_of_pbd(db, self) if db.tables["VDI"][v]["type"] != "metadata"
        ]
        if vdis:
            raise Failure("VDI_IN_USE", *vdis)
        db.set("PBD", self, "currently_attached", False)
        refresh_sr(call, row["SR"])


@api("PBD.destroy")
def pbd_destroy(call, self):
    """``Xapi_pbd.destroy``: refused while attached."""
    db = call.db
    with db.lock:
        row = db.get("PBD", self)
        if row["currently_attached"]:
            raise Failure("OPERATION_NOT_ALLOWED", "PBD is currently attached")
        db.remove("PBD", self)
        refresh_sr(call, row["SR"])


@api("PBD.set_device_config")
def pbd_set_device_config(call, self, value):
    with call.db.lock:
        call.db.get("PBD", self)
        _assert_no_srmaster_key(value)
        call.db.set("PBD", self, "device_config", dict(value))


# -- SR ----------------------------------------------------------------------------------


def introduce_sr(
    call, uuid, name_label, name_description, sr_type, content_type, shared, sm_config
) -> str:
    """``Xapi_sr.introduce``: a database record only; ``SR_UUID_EXISTS [uuid]``."""
    db = call.db
    if uuid and uuid in db.uuids["SR"]:
        raise Failure("SR_UUID_EXISTS", uuid)
    return store.new_row(
        call.world,
        db,
        "SR",
        uuid=uuid or None,
        name_label=name_label,
        name_description=name_description,
        type=sr_type.lower(),
        content_type=content_type,
        shared=shared,
        sm_config=dict(sm_config),
        physical_size=-1,
        physical_utilisation=-1,
        virtual_allocation=0,
        other_config={},
        allowed_operations=[],
        current_operations={},
    )


@api("SR.introduce")
def sr_introduce(call, uuid, name_label, name_description, type, content_type, shared, sm_config):
    with call.db.lock:
        sr = introduce_sr(
            call, uuid, name_label, name_description, type, content_type, shared, sm_config
        )
        refresh_sr(call, sr)
        return sr


@api("SR.make")
def sr_make(call, *args):
    raise Failure("MESSAGE_DEPRECATED")


@api("SR.create")
def sr_create(
    call,
    host,
    device_config,
    physical_size,
    name_label,
    name_description,
    type,
    content_type,
    shared,
    sm_config,
):
    """``Xapi_sr.create``: no rolling upgrade; forwarded to ``host`` unless shared; the
    record and its PBDs (one per host, master first, if shared), the backend's create
    (device-config checks), then each PBD plugged (failures only logged)."""
    db = call.db
    with db.lock:
        if c.rpu(call):
            raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
        if not shared:
            _assert_host_up(call, host)
        sr_type = type.lower()
        sr = introduce_sr(
            call, "", name_label, name_description, sr_type, content_type, shared, sm_config
        )
        if shared:
            hosts = [master_ref(call)] + [h for h in db.refs("host") if h != master_ref(call)]
        else:
            hosts = [host]
        pbds = [create_pbd(call, h, sr, device_config) for h in hosts]
        on = master_ref(call) if shared else host
        _assert_known_driver(call, sr_type)
        check_device_config(call, on, sr_type, device_config)
        size = store.CREATE_SIZES.get(sr_type, store.DEFAULT_CREATE_SIZE)
        db.update("SR", sr, physical_size=size, physical_utilisation=0)
        for p in pbds:
            try:
                plug_pbd(call, p)
            except Failure as e:
                log.warning("could not plug PBD %s: %s", p, e.description)
        store.recompute_sr(db, sr)
        refresh_sr(call, sr)
        return sr


def _drop_vdis_and_vbds(call, sr) -> None:
    db = call.db
    for vdi in list(db.get("SR", sr)["VDIs"]):
        db.remove("VDI", vdi)
    store.collect_garbage(db)


@api("SR.forget")
def sr_forget(call, sr):
    """``with_sr_marked forget`` then ``Xapi_sr.forget``: the PBDs, VDIs and the record go
    (the VBDs of those VDIs as ``Db_gc`` takes them)."""
    db = call.db
    with db.lock, sr_marked(call, sr, "forget") as op:
        op.mark()
        for p in list(db.get("SR", sr)["PBDs"]):
            db.remove("PBD", p)
        _drop_vdis_and_vbds(call, sr)
        db.remove("SR", sr)


@api("SR.destroy")
def sr_destroy(call, sr):
    """``with_sr_marked destroy`` (``SR_HAS_PBD``, ``SR_HAS_NO_PBDS``, ``SR_NOT_EMPTY``...),
    ``SR_INDESTRUCTIBLE`` for ``other_config:indestructible=true``, ``SR_IS_CACHE_SR``
    for a host's local cache SR; then the backend removes it and the records go."""
    db = call.db
    with db.lock, sr_marked(call, sr, "destroy") as op:
        choose_pbd(call, sr, consider_unplugged=True)
        row = db.get("SR", sr)
        if row["other_config"].get("indestructible") == "true":
            raise Failure("SR_INDESTRUCTIBLE", sr)
        for h, hrow in db.rows("host"):
            if hrow["local_cache_sr"] == sr:
                raise Failure("SR_IS_CACHE_SR", h)
        op.mark()
        for p in list(row["PBDs"]):
            db.remove("PBD", p)
        _drop_vdis_and_vbds(call, sr)
        db.remove("SR", sr)


@api("SR.scan")
def sr_scan(call, sr):
    """``with_sr_marked scan``, forwarded to a plugged PBD: the SR's VDIs and space as the
    backend reports them (every VDI is known to the simulator)."""
    db = call.db
    with db.lock, sr_marked(call, sr, "scan") as op:
        choose_pbd(call, sr)
        op.mark()
        store.recompute_sr(db, sr)


@api("SR.update")
def sr_update(call, sr):
    """Lock-free (CA-27630): forwarded to a plugged PBD, the size and utilisation
    refreshed."""
    with call.db.lock:
        call.db.get("SR", sr)
        choose_pbd(call, sr)
        store.recompute_sr(call.db, sr)


@api("SR.get_supported_types")
def sr_get_supported_types(call):
    """``Sm.supported_drivers``: the SMAPIv1 plugins this host registered."""
    return [row["type"] for _, row in call.db.rows("SM")]


@api("SR.probe")
def sr_probe(call, host, device_config, type, sm_config):
    """``Xapi_sr.probe`` on ``host``: the backend's device-config checks, then the SRs it
    finds there as XML (``<SRlist>``). A type without ``SR_PROBE`` answers the backend's
    "not supported"."""
    db = call.db
    with db.lock:
        _assert_host_up(call, host)
        sr_type = type.lower()
        _assert_known_driver(call, sr_type)
        if "SR_PROBE" not in sm_features(db, sr_type):
            raise Failure(
                "SR_BACKEND_FAILURE", "Operation 'sr_probe' not supported by this SR type", "", ""
            )
        check_device_config(call, host, sr_type, device_config, probe=True)
        found = []
        for _sr, row in db.rows("SR"):
            if row["type"] != sr_type:
                continue
            for p in row["PBDs"]:
                dc = db.tables["PBD"][p]["device_config"]
                if all(dc.get(k) == v for k, v in device_config.items()):
                    found.append(row["uuid"])
                    break
        body = "".join(f"\t<SR>\n\t\t<UUID>{u}</UUID>\n\t</SR>\n" for u in found)
        return f'<?xml version="1.0" ?>\n<SRlist>\n{body}</SRlist>\n'


def _forwarded_set(call, sr, field, value):
    db = call.db
    with db.lock:
        db.get("SR", sr)
        choose_pbd(call, sr)
        db.set("SR", sr, field, value)
        store.recompute_sr(db, sr)


@api("SR.set_name_label")
def sr_set_name_label(call, sr, value):
    """Forwarded to a plugged PBD (``SR_NO_PBDS``), then the backend and ``update``."""
    _forwarded_set(call, sr, "name_label", value)


@api("SR.set_name_description")
def sr_set_name_description(call, sr, value):
    _forwarded_set(call, sr, "name_description", value)


@api("SR.set_shared")
def sr_set_shared(call, sr, value):
    """``Xapi_sr.set_shared``: unsharing an SR with several PBDs is
    ``SR_HAS_MULTIPLE_PBDS [pbd...]``."""
    db = call.db
    with db.lock:
        row = db.get("SR", sr)
        if not value and len(row["PBDs"]) > 1:
            raise Failure("SR_HAS_MULTIPLE_PBDS", *row["PBDs"])
        db.set("SR", sr, "shared", value)


@api("SR.set_physical_size", "SR.set_virtual_allocation", "SR.set_physical_utilisation")
def sr_internal_setter(call, self, value):
    """``Sm.assert_session_has_internal_sr_access``: only the SM backend's session."""
    call.db.get("SR", self)
    raise Failure("PERMISSION_DENIED", "")
