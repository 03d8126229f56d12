"""VDI behaviour, Dundee semantics.

Mirrors xen-api ``dundee-lcm`` ``ocaml/xapi/xapi_vdi.ml`` (create, destroy, snapshot, clone,
copy, resize, introduce, forget, update, set_*) and ``message_forwarding.ml`` ``module VDI``
(``with_sr_andor_vdi``: the SR's operation check -- ``vdi_create``, ``vdi_destroy``,
``vdi_snapshot``... -- then the VDI's, ``checks/storage.py``; ``forward_vdi_op`` /
``Sm.assert_pbd_is_plugged``: ``SR_NO_PBDS [sr]``; ``Xapi_vdi_helpers.assert_managed``:
``VDI_NOT_MANAGED [vdi]``). A dangling ``SR`` is ``HANDLE_INVALID ["SR", ref]`` (the SR's
check reads its record). Sizes and space follow the SR's backend (``install_storage``):
LVHD is thick and refuses what does not fit (``SR_BACKEND_FAILURE_44``, "There is
insufficient space"); file SRs are thin.
"""

from __future__ import annotations

import contextlib
import uuid as uuid_mod

from .. import install_storage as store
from ..allowed import since
from ..cbt_log import CbtLogs
from ..checks.operations import power_to_string
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from ..vdi_store import VdiStore
from . import common as c
from .storage_sr import assert_pbd_is_plugged, choose_pbd, ctor_fields, sm_features

VDI_TYPES_FOR_VBD = ("system", "user", "ephemeral", "suspend", "crashdump", "metadata", "rrd")


@contextlib.contextmanager
def sr_andor_vdi(call, sr=None, vdi=None):
    """``with_sr_andor_vdi``: the SR's check, then the VDI's (each waiting out other
    operations), both marked once the caller's own checks pass (``mark()``)."""
    with contextlib.ExitStack() as stack:
        tokens = []
        if sr is not None:
            tokens.append(stack.enter_context(c.with_operation(call, "SR", sr[0], sr[1])))
        if vdi is not None:
            tokens.append(stack.enter_context(c.with_operation(call, "VDI", vdi[0], vdi[1])))

        def mark():
            for t in tokens:
                t.mark()

        yield mark


def refresh_vdi(call, vdi) -> None:
    """The VDI's allowed operations, its VBDs' and its SR's space."""
    db = call.db
    row = db.tables["VDI"].get(vdi)
    if row is None:
        return
    c.refresh_allowed(call.world, db, "VDI", vdi)
    for vbd in row["VBDs"]:
        c.refresh_allowed(call.world, db, "VBD", vbd)


# -- contents (vdi_store.py) ----------------------------------------------------------------


def after_commit(call, fn) -> None:
    """Run ``fn`` once the call's transaction has ended (no file I/O under a database
    lock); ``fn`` checks the database itself, as it also runs after a rollback."""
    txn = call.world.txm.current()
    if txn is None:
        fn()
    else:
        txn.after.append(fn)


def content_utilisation(world, sr_type: str, vdi: str, virtual_size: int, current: int) -> int:
    """The space a VDI takes given what was written to it: a thick (LVHD) VDI keeps its
    LV; a file VHD is its metadata plus each 2 MiB block that holds data with its sector
    bitmap (``vhdutil``); other backends take what the data takes."""
    if store.is_thick(sr_type):
        return current
    contents = VdiStore.of(world)
    if sr_type in store.VHD_TYPES:
        blocks = contents.data_blocks(vdi, store.VHD_BLOCK_SIZE)
        return store.vhd_overhead_empty(virtual_size) + blocks * (store.VHD_BLOCK_SIZE + 512)
    return contents.allocated(vdi)


def refresh_utilisation(world, db, vdi: str) -> None:
    """``physical_utilisation`` of ``vdi`` (and its SR's) from its contents (a short
    transaction of its own: call with no lock held, after the data is written)."""
    row = db.tables["VDI"].get(vdi)
    if row is None:
        return
    srow = db.tables["SR"].get(row["SR"])
    if srow is None:
        return
    util = content_utilisation(
        world, srow["type"], vdi, row["virtual_size"], row["physical_utilisation"]
    )
    with db.lock:
        row = db.tables["VDI"].get(vdi)
        if row is not None and row["physical_utilisation"] != util:
            db.update("VDI", vdi, physical_utilisation=util)
            store.recompute_sr(db, row["SR"])


def _copy_contents(call, src: str, dst: str, refresh: bool) -> None:
    db, world = call.db, call.world

    def copy():
        if db.exists("VDI", dst) and db.exists("VDI", src):
            VdiStore.of(world).copy(src, dst, db.tables["VDI"][dst]["virtual_size"])
            if refresh:
                refresh_utilisation(world, db, dst)

    after_commit(call, copy)


def assert_managed(db, vdi) -> None:
    if not db.get("VDI", vdi)["managed"]:
        raise Failure("VDI_NOT_MANAGED", vdi)


def _location(sr_type, uuid) -> str:
    return uuid


def make_vdi(
    call,
    sr,
    *,
    name_label,
    name_description,
    virtual_size,
    type,
    sharable=False,
    read_only=False,
    other_config=None,
    xenstore_data=None,
    sm_config=None,
    tags=None,
    physical_utilisation=None,
    **extra,
) -> str:
    """The backend's ``VDI.create`` and ``update_vdi_db``: the size as the backend rounds
    it, the space it takes (thick SRs refuse what does not fit), the record."""
    db = call.db
    srow = db.get("SR", sr)
    size, util = store.new_vdi_size(srow["type"], virtual_size)
    if physical_utilisation is not None:
        util = physical_utilisation
    store.ensure_space(db, sr, util)
    uid = extra.pop("uuid", None) or call.world.ids.uuid()
    smc = dict(sm_config or {})
    if srow["type"] in store.VHD_TYPES:
        smc.setdefault("vdi_type", "vhd")
    ref = store.new_row(
        call.world,
        db,
        "VDI",
        uuid=uid,
        name_label=name_label,
        name_description=name_description,
        SR=sr,
        virtual_size=size,
        physical_utilisation=util,
        type=type,
        sharable=sharable,
        read_only=read_only,
        other_config=dict(other_config or {}),
        xenstore_data=dict(xenstore_data or {}),
        sm_config=smc,
        tags=list(tags or []),
        location=extra.pop("location", None) or _location(srow["type"], uid),
        managed=True,
        missing=False,
        on_boot="persist",
        allow_caching=False,
        **extra,
    )
    store.recompute_sr(db, sr)
    c.refresh_allowed(call.world, db, "VDI", ref)
    return ref


def create_vdi_like(call, sr, src: dict, **changes) -> str:
    """A new VDI on ``sr`` with the user-visible settings of ``src`` (``VDI.copy`` and
    storage motion's ``vdi_copy``: name, size, type, flags, other_config, xenstore_data,
    tags, then on_boot and allow_caching), ``changes`` overriding them."""
    fields = {
        k: src[k]
        for k in (
            "name_label",
            "name_description",
            "virtual_size",
            "type",
            "sharable",
            "read_only",
            "other_config",
            "xenstore_data",
            "tags",
        )
    }
    later = {k: changes.pop(k, src[k]) for k in ("on_boot", "allow_caching")}
    fields.update(changes)
    ref = create_vdi(call, sr, **fields)
    call.db.update("VDI", ref, **later)
    return ref


def create_vdi(call, sr, **fields) -> str:
    """``VDI.create`` as a call makes it: the SR's ``vdi_create`` check, a plugged PBD."""
    with sr_andor_vdi(call, sr=(sr, "vdi_create")) as mark:
        choose_pbd(call, sr)
        assert_pbd_is_plugged(call, sr)
        mark()
        return make_vdi(call, sr, **fields)


@api("VDI.create")
def vdi_create(call, record):
    with call.db.lock:
        f = ctor_fields(call, "VDI", record)
        return create_vdi(
            call,
            f["SR"],
            name_label=f["name_label"],
            name_description=f["name_description"],
            virtual_size=f["virtual_size"],
            type=f["type"],
            sharable=f["sharable"],
            read_only=f["read_only"],
            other_config=f["other_config"],
            xenstore_data=f["xenstore_data"],
            sm_config=f["sm_config"],
            tags=f["tags"],
        )


def remove_vdi(call, vdi) -> None:
    """The record goes, and the VBDs using it with it (``Xapi_vdi.destroy``)."""
    db = call.db
    row = db.get("VDI", vdi)
    for vbd in list(row["VBDs"]):
        if db.exists("VBD", vbd):
            db.remove("VBD", vbd)
    db.remove("VDI", vdi)
    store.recompute_sr(db, row["SR"])
    c.refresh_allowed(call.world, db, "SR", row["SR"])

    def free():  # its contents (and CBT log, relinking its chain) go once committed
        if not db.exists("VDI", vdi):
            VdiStore.of(call.world).remove(vdi)
            CbtLogs.of(call.world).remove(vdi)

    after_commit(call, free)


def destroy_vdi(call, vdi) -> None:
    db = call.db
    sr = db.get("VDI", vdi)["SR"]
    with sr_andor_vdi(call, sr=(sr, "vdi_destroy"), vdi=(vdi, "destroy")) as mark:
        choose_pbd(call, sr)
        assert_managed(db, vdi)
        row = db.get("VDI", vdi)
        if any(db.tables["VBD"][v]["currently_attached"] for v in row["VBDs"]):
            raise Failure("VDI_IN_USE", vdi, "destroy")
        mark()
        remove_vdi(call, vdi)


@api("VDI.destroy")
def vdi_destroy(call, self):
    with call.db.lock:
        destroy_vdi(call, self)


_COPIED = (
    "name_label",
    "name_description",
    "type",
    "sharable",
    "other_config",
    "xenstore_data",
    "on_boot",
    "allow_caching",
)


def snapshot_vdi(call, vdi, *, is_snapshot, driver_params=None) -> str:
    """``Xapi_vdi.snapshot`` / ``clone`` (``snapshot_and_clone``): the SR's and the VDI's
    checks, a plugged PBD, a managed VDI; a new leaf with the metadata xapi copies; a
    snapshot records ``is_a_snapshot``, ``snapshot_of``, ``snapshot_time``."""
    db = call.db
    sr = db.get("VDI", vdi)["SR"]
    op = "snapshot" if is_snapshot else "clone"
    with sr_andor_vdi(call, sr=(sr, "vdi_" + op), vdi=(vdi, op)) as mark:
        choose_pbd(call, sr)
        assert_managed(db, vdi)
        mark()
        src = db.get("VDI", vdi)
        srow = db.get("SR", sr)
        util = store.snapshot_utilisation(srow["type"], src["virtual_size"])
        store.ensure_space(db, sr, util)
        uid = call.world.ids.uuid()
        extra = {}
        if is_snapshot:
            extra = dict(
                is_a_snapshot=True, snapshot_of=vdi, snapshot_time=call.world.clock.now_ts()
            )
        # the SM's snapshot of a CBT-enabled VDI is CBT-enabled too and takes over its log
        # (sm FileSR/LVHDSR ``_snapshot`` with ``cbtlog``); a clone is not (``clone`` passes
        # no log)
        cbt = is_snapshot and bool(src.get("cbt_enabled"))
        if cbt:
            extra["cbt_enabled"] = True
        ref = store.new_row(
            call.world,
            db,
            "VDI",
            uuid=uid,
            SR=sr,
            virtual_size=src["virtual_size"],
            physical_utilisation=util,
            read_only=src["read_only"],
            location=_location(srow["type"], uid),
            managed=True,
            missing=False,
            sm_config=dict(src["sm_config"]),
            tags=[],
            **{k: src[k] for k in _COPIED if k in src},
            **extra,
        )
        store.recompute_sr(db, sr)
        refresh_vdi(call, ref)
        _copy_contents(call, vdi, ref, refresh=False)
        if cbt:
            size = src["virtual_size"]

            def log():
                if db.exists("VDI", ref):
                    CbtLogs.of(call.world).snapshot(vdi, ref, size)

            after_commit(call, log)
        return ref


@api("VDI.snapshot")
def vdi_snapshot(call, vdi, driver_params):
    with call.db.lock:
        return snapshot_vdi(call, vdi, is_snapshot=True, driver_params=driver_params)


@api("VDI.clone")
def vdi_clone(call, vdi, driver_params):
    with call.db.lock:
        return snapshot_vdi(call, vdi, is_snapshot=False, driver_params=driver_params)


def copy_vdi(call, vdi, sr, into_vdi=NULL_REF) -> str:
    """``Xapi_vdi.copy``: ``copy`` on the VDI; a new VDI on ``sr`` (``VDI.create``, RW,
    no sm_config, ``on_boot``/``allow_caching`` kept) unless ``into_vdi`` is valid;
    ``VDI_READONLY`` / ``VDI_TOO_SMALL [dst, size]`` for an unfit destination."""
    db = call.db
    db.get("VDI", vdi)
    with sr_andor_vdi(call, vdi=(vdi, "copy")) as mark:
        assert_managed(db, vdi)
        mark()
        src = db.get("VDI", vdi)
        if db.exists("VDI", into_vdi):
            dst = into_vdi
        else:
            dst = create_vdi_like(call, sr, src, read_only=False)
        drow = db.get("VDI", dst)
        if drow["read_only"]:
            raise Failure("VDI_READONLY", dst)
        if drow["virtual_size"] < src["virtual_size"]:
            raise Failure("VDI_TOO_SMALL", dst, src["virtual_size"])
        refresh_vdi(call, dst)
        _copy_contents(call, vdi, dst, refresh=True)
        return dst


@api("VDI.copy")
def vdi_copy(call, vdi, sr, base_vdi=NULL_REF, into_vdi=NULL_REF):
    with call.db.lock:
        return copy_vdi(call, vdi, sr, into_vdi)


def _resize(call, vdi, size, op):
    db = call.db
    sr = db.get("VDI", vdi)["SR"]
    with call.db.lock, sr_andor_vdi(call, sr=(sr, "vdi_resize"), vdi=(vdi, op)) as mark:
        choose_pbd(call, sr)
        assert_managed(db, vdi)
        mark()
        row = db.get("VDI", vdi)
        srow = db.get("SR", sr)
        new, util = store.resized_vdi(srow["type"], row["virtual_size"], size)
        if util > row["physical_utilisation"]:
            store.ensure_space(db, sr, util - row["physical_utilisation"])
        db.update(
            "VDI",
            vdi,
            virtual_size=new,
            physical_utilisation=max(util, row["physical_utilisation"])
            if not store.is_thick(srow["type"])
            else util,
        )
        store.recompute_sr(db, sr)
        refresh_vdi(call, vdi)

    def grow():  # the data is kept
        row = db.tables["VDI"].get(vdi)
        if row is not None:
            VdiStore.of(call.world).resize(vdi, row["virtual_size"])

    after_commit(call, grow)


@api("VDI.resize")
def vdi_resize(call, vdi, size):
    _resize(call, vdi, size, "resize")


@api("VDI.resize_online")
def vdi_resize_online(call, vdi, size):
    _resize(call, vdi, size, "resize_online")


@api("VDI.forget")
def vdi_forget(call, vdi):
    """``forget`` on the VDI, then the record goes (its VBDs as ``Db_gc`` takes them)."""
    db = call.db
    with db.lock, sr_andor_vdi(call, vdi=(vdi, "forget")) as mark:
        mark()
        sr = db.get("VDI", vdi)["SR"]
        db.remove("VDI", vdi)
        store.collect_garbage(db)
        if db.exists("SR", sr):
            store.recompute_sr(db, sr)
            c.refresh_allowed(call.world, db, "SR", sr)


@api("VDI.introduce")
def vdi_introduce(
    call,
    uuid,
    name_label,
    name_description,
    SR,
    type,
    sharable,
    read_only,
    other_config,
    location,
    xenstore_data,
    sm_config,
    managed=True,
    virtual_size=0,
    physical_utilisation=0,
    metadata_of_pool=NULL_REF,
    is_a_snapshot=False,
    snapshot_time=None,
    snapshot_of=NULL_REF,
):
    """``Xapi_vdi.introduce``: ``vdi_introduce`` on the SR, a plugged PBD,
    ``LOCATION_NOT_UNIQUE [sr, location]`` (unless the same uuid), the backend's record
    with the higher-level fields set."""
    db = call.db
    with db.lock, sr_andor_vdi(call, sr=(SR, "vdi_introduce")) as mark:
        choose_pbd(call, SR)
        for v in db.get("SR", SR)["VDIs"]:
            row = db.tables["VDI"][v]
            if row["location"] == location and row["uuid"] != uuid:
                raise Failure("LOCATION_NOT_UNIQUE", SR, location)
        if uuid:
            try:
                uuid = str(uuid_mod.UUID(uuid))
            except ValueError:
                raise Failure("UUID_INVALID", "VDI", uuid) from None
            if uuid in db.uuids["VDI"]:
                raise Failure(
                    "INTERNAL_ERROR",
                    f'Db_exn.Uniqueness_constraint_violation("VDI", "uuid", "{uuid}")',
                )
        mark()
        extra = {}
        if is_a_snapshot:
            extra = dict(is_a_snapshot=True, snapshot_of=snapshot_of)
            if snapshot_time is not None:
                extra["snapshot_time"] = snapshot_time
        ref = make_vdi(
            call,
            SR,
            uuid=uuid or None,
            name_label=name_label,
            name_description=name_description,
            virtual_size=virtual_size,
            physical_utilisation=physical_utilisation,
            type=type,
            sharable=sharable,
            read_only=read_only,
            other_config=other_config,
            xenstore_data=xenstore_data,
            sm_config=sm_config,
            location=location or None,
            **extra,
        )
        return ref


@api("VDI.update")
def vdi_update(call, vdi):
    db = call.db
    sr = db.get("VDI", vdi)["SR"]
    with db.lock, sr_andor_vdi(call, vdi=(vdi, "update")) as mark:
        choose_pbd(call, sr)
        mark()
        store.recompute_sr(db, sr)


def _forwarded_vdi_set(call, vdi, field, value):
    db = call.db
    with db.lock:
        sr = db.get("VDI", vdi)["SR"]
        choose_pbd(call, sr)
        db.set("VDI", vdi, field, value)


@api("VDI.set_name_label")
def vdi_set_name_label(call, self, value):
    """Forwarded to the SR's plugged PBD (``SR_NO_PBDS``), then the backend."""
    _forwarded_vdi_set(call, self, "name_label", value)


@api("VDI.set_name_description")
def vdi_set_name_description(call, self, value):
    _forwarded_vdi_set(call, self, "name_description", value)


def ensure_not_on_running_vm(call, vdi) -> None:
    """``ensure_vdi_not_on_running_vm``: every VM using it Halted, else
    ``VM_BAD_POWER_STATE [vm, "halted", actual]``."""
    db = call.db
    for vbd in db.get("VDI", vdi)["VBDs"]:
        vm = db.tables["VBD"][vbd]["VM"]
        state = db.get("VM", vm)["power_state"]
        if state != "Halted":
            raise Failure(
                "VM_BAD_POWER_STATE", vm, power_to_string("Halted"), power_to_string(state)
            )


@api("VDI.set_on_boot")
def vdi_set_on_boot(call, self, value):
    """Not on a running VM; then up to 7.1 forwarded (``SR_NO_PBDS``) with the SM's
    ``VDI_RESET_ON_BOOT`` (``SR_OPERATION_NOT_SUPPORTED [sr]``); from 8.2
    ``with_sr_andor_vdi`` of the SR's ``vdi_set_on_boot`` and the VDI's ``set_on_boot``
    (the capability, and no CBT on the VDI: 1.249-lcm ``message_forwarding.ml``), then
    forwarded."""
    db = call.db
    with db.lock:
        ensure_not_on_running_vm(call, self)
        sr = db.get("VDI", self)["SR"]
        if since(db, "stockholm"):
            with sr_andor_vdi(call, (sr, "vdi_set_on_boot"), (self, "set_on_boot")) as mark:
                choose_pbd(call, sr)
                mark()
                db.set("VDI", self, "on_boot", value)
        else:
            choose_pbd(call, sr)
            if "VDI_RESET_ON_BOOT" not in sm_features(db, db.get("SR", sr)["type"]):
                raise Failure("SR_OPERATION_NOT_SUPPORTED", sr)
            db.set("VDI", self, "on_boot", value)
        refresh_vdi(call, self)


@api("VDI.set_allow_caching")
def vdi_set_allow_caching(call, self, value):
    with call.db.lock:
        ensure_not_on_running_vm(call, self)
        call.db.set("VDI", self, "allow_caching", value)


@api("VDI.set_sharable", "VDI.set_read_only")
def vdi_internal_setter(call, self, value):
    """``Sm.assert_session_has_internal_sr_access``: only the SM backend's session."""
    call.db.get("VDI", self)
    raise Failure("PERMISSION_DENIED", "")
