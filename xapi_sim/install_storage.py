"""Storage as a fresh install leaves it, and the storage bookkeeping every layer shares.

World layer (imports no ``classes/``). What it builds, and where each fact comes from:

* **SM records** per pool, from ``catalogue.sm_types(release)`` -- what xapi's start registers
  (xen-api ``storage_access.ml`` ``on_xapi_start`` -> ``xapi_sm.ml``).
* **Per host**, what the installer's first-boot storage script creates (host-installer
  ``backend.py`` writes ``default-storage.conf``; the first-boot ``storage-init`` script
  turns it into ``xe sr-create`` calls):

  - "Local storage", content_type ``user``, of the type chosen at install: ``lvm`` unless
    "Enable thin provisioning" was ticked, then ``ext`` (host-installer at XenServer 7.0,
    commit 04c2363: ``tui/installer/screens.py`` defaults ``srtype`` to ``SR_TYPE_LVM``;
    ``answerfile.py`` ``sr-type`` defaults to ``lvm``). ``other_config`` carries
    ``i18n-key=local-storage`` and ``i18n-original-value-name_label``;
  - the udev SRs "Removable storage" (content_type ``disk``, ``sm_config:type=block``,
    ``device_config:location=/dev/xapi/block``, ``i18n-key=local-hotplug-disk``) and
    "DVD drives" (content_type ``iso``, ``sm_config:type=cd``, ``/dev/xapi/cd``,
    description "Physical DVD drives", ``i18n-key=local-hotplug-cd``);
  - ``pool.default_SR`` and the host's ``crash_dump_sr`` / ``suspend_image_sr`` set to the
    local SR (the script's ``pool-param-set default-SR`` and ``host-param-set``). The pool's
    ``suspend_image_SR`` and ``crash_dump_SR`` are set to the master's local SR too, as a
    fresh XenServer reports them;
  - a PBD per SR (``currently_attached`` true once xapi has plugged it: ``create_storage.ml``
    ``plug_all_pbds``).
* **Per pool**, the shared "XenServer Tools" ISO SR (type/content_type ``iso``, shared,
  ``is_tools_sr``) with a PBD per host (``device_config`` path/location =
  ``/opt/xensource/packages/iso``, ``legacy_mode``) and its ``xs-tools.iso`` VDI
  (``dbsync_master.ml`` ``create_tools_sr``, ``xapi_globs.ml`` ``tools_sr_*``).

Shared bookkeeping: VHD space arithmetic (sm ``vhdutil.py``, ``lvhdutil.py`` at v1.14.0),
SM errors as xapi reports them (``sm_exec.ml``: ``SR_BACKEND_FAILURE_<code>``,
``["", text, stderr]``), SR space accounting, the garbage collection xapi's ``db_gc.ml``
does (PBDs of a gone host, VDIs of a gone SR, VBDs of a gone VM or VDI), and what a pool
join copies to the master (``xapi_pool.ml`` ``update_non_vm_metadata``).
"""

from __future__ import annotations

import logging

from . import catalogue, db_gc
from .datamodel import NULL_REF
from .errors import Failure

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB

# -- what the simulated hardware holds --------------------------------------------------
LOCAL_DISK = 500_107_862_016  # a 500 GB disk
DOM0_PARTITIONS = 46 * GiB  # 7.0's root, backup, log, swap and boot partitions
LOCAL_SR_SIZE = (LOCAL_DISK - DOM0_PARTITIONS) // (4 * MiB) * (4 * MiB)
TOOLS_ISO_SIZE = 57_671_680
TOOLS_FS_SIZE = 18 * GiB  # dom0's root file system, where the ISOs live
CREATE_SIZES = {"nfs": 2 * 1024 * GiB, "lvmoiscsi": 500 * GiB, "iso": 1024 * GiB}
DEFAULT_CREATE_SIZE = LOCAL_SR_SIZE  # ext/lvm/others on a simulated local disk

TOOLS_SR_DIR = "/opt/xensource/packages/iso"
THICK_TYPES = frozenset({"lvm", "lvmoiscsi", "lvmohba", "lvmofcoe"})
VHD_TYPES = frozenset({"ext", "nfs", "file", "smb"}) | THICK_TYPES

# -- sm vhdutil / lvhdutil arithmetic (v1.14.0) ------------------------------------------
VHD_BLOCK_SIZE = 2 * MiB
LVM_SIZE_INCREMENT = 4 * MiB
LVHD_MAX_VDI_SIZE_MB = 2093051  # LVHDVDI.MAX_VDI_SIZE_MB
FILE_MAX_DISK_MB = 2 * 1024 * 1024  # FileSR.MAX_DISK_MB
FILE_MAX_DISK_METADATA = 4092
MAX_VHD_SIZE_MB = 2093051  # FileSR.MAX_VHD_SIZE (resize)
LVHD_MSIZE = 2 * 1024 * 1024 * MiB  # lvhdutil.MSIZE


def roundup(divisor: int, value: int) -> int:
    """``util.roundup``."""
    if value == 0:
        return divisor
    return (value + divisor - 1) // divisor * divisor


def vhd_overhead_empty(size: int) -> int:
    """``vhdutil.calcOverheadEmpty``: footer, header and BAT of an empty VHD."""
    size_mb = size // MiB
    overhead = 3 * 1024 + (size_mb // 2) * 4
    overhead = roundup(512, overhead)
    overhead += (size_mb // 2) // 8
    return roundup(4096, overhead)


def vhd_overhead_bitmap(size: int) -> int:
    """``vhdutil.calcOverheadBitmap``."""
    blocks = -(-size // VHD_BLOCK_SIZE)
    return blocks * 4096


def lvhd_lv_size(size: int) -> int:
    """``lvhdutil.calcSizeVHDLV``: the LV a fully inflated VHD of ``size`` takes."""
    return roundup(
        LVM_SIZE_INCREMENT, size + vhd_overhead_empty(LVHD_MSIZE) + vhd_overhead_bitmap(size)
    )


def sm_failure(name: str, opterr: str | None = None, stderr: str = "") -> Failure:
    """An SM error as xapi reports it (``sm_exec.ml``): ``SR_BACKEND_FAILURE_<code>`` with
    ``["", text, stderr]``, text as ``xs_errors.XenError`` builds it."""
    code, text = catalogue.sm_error(name)
    if opterr is not None:
        text += f" [opterr={opterr}]"
    return Failure(f"SR_BACKEND_FAILURE_{code}", "", text, stderr)


def is_thick(sr_type: str) -> bool:
    return sr_type in THICK_TYPES


def new_vdi_size(sr_type: str, size: int) -> tuple[int, int]:
    """(virtual_size, physical_utilisation) of a VDI the SR's backend creates for a
    requested ``size``, or its SM error: LVHD (``LVHDVDI.create``) refuses more than
    2093051 MiB, takes at least 2 MiB, rounds to 2 MiB and allocates the whole LV (thick);
    a file VHD (``FileVDI.create``) rounds to 2 MiB, must stay under 2 TiB with its
    metadata and takes only its empty metadata (thin). Other types keep the size."""
    if size < 0:
        raise sm_failure(
            "VDISize",
            f"VDI size must be between 1 MB and {FILE_MAX_DISK_MB - FILE_MAX_DISK_METADATA - 1} MB",
        )
    if is_thick(sr_type):
        if size // MiB > LVHD_MAX_VDI_SIZE_MB:
            raise sm_failure("VDISize", f"VDI size cannot exceed {LVHD_MAX_VDI_SIZE_MB} MB")
        size = roundup(VHD_BLOCK_SIZE, max(size, VHD_BLOCK_SIZE))
        return size, lvhd_lv_size(size)
    if sr_type in VHD_TYPES:
        size_mb = roundup(VHD_BLOCK_SIZE, size) // MiB
        full = vhd_overhead_empty(size) + vhd_overhead_bitmap(size)
        if size_mb < 1 or size_mb + full // MiB >= FILE_MAX_DISK_MB:
            raise sm_failure(
                "VDISize",
                "VDI size must be between 1 MB and "
                f"{FILE_MAX_DISK_MB - FILE_MAX_DISK_METADATA - 1} MB",
            )
        size = size_mb * MiB
        return size, vhd_overhead_empty(size)
    return size, size


def resized_vdi(sr_type: str, old: int, size: int) -> tuple[int, int]:
    """(virtual_size, physical_utilisation) after ``VDI.resize`` to ``size``: shrinking is
    refused by both VHD backends (``VDISize`` "shrinking not allowed")."""
    if sr_type in VHD_TYPES and size < old:
        raise sm_failure("VDISize", "shrinking not allowed")
    if is_thick(sr_type):
        if size // MiB > LVHD_MAX_VDI_SIZE_MB:
            raise sm_failure("VDISize", f"VDI size cannot exceed {LVHD_MAX_VDI_SIZE_MB} MB")
        size = roundup(VHD_BLOCK_SIZE, size)
        return size, lvhd_lv_size(size)
    if sr_type in VHD_TYPES:
        size = roundup(VHD_BLOCK_SIZE, size)
        if size < MiB or size // MiB >= MAX_VHD_SIZE_MB:
            raise sm_failure("VDISize", f"VDI size must be between 1 MB and {MAX_VHD_SIZE_MB} MB")
        return size, vhd_overhead_empty(size)
    return size, size


def snapshot_utilisation(sr_type: str, size: int) -> int:
    """What a new snapshot/clone leaf takes: an empty VHD (a deflated LV on LVHD)."""
    if is_thick(sr_type):
        return roundup(LVM_SIZE_INCREMENT, vhd_overhead_empty(size))
    if sr_type in VHD_TYPES:
        return vhd_overhead_empty(size)
    return size


# -- SR space accounting ----------------------------------------------------------------


def sr_usage(sr_type: str, vdis) -> tuple[int, int]:
    """(physical_utilisation, virtual_allocation) of an SR from its VDI rows: LVHD counts
    each VDI's LV for both (``LVHDSR._loadvdis``); a file SR allocates the virtual sizes
    and uses what the files take; ISO and udev SRs use what their images hold."""
    util = sum(v["physical_utilisation"] for v in vdis)
    if is_thick(sr_type):
        return util, util
    return util, sum(v["virtual_size"] for v in vdis)


def recompute_sr(db, sr: str) -> None:
    """Write an SR's ``physical_utilisation`` / ``virtual_allocation`` from its VDIs (what
    ``SR.scan`` / ``SR.update`` report). An SR whose size is unknown (-1, never attached)
    is left alone."""
    row = db.get("SR", sr)
    if row["physical_size"] < 0:
        return
    vdis = [db.tables["VDI"][v] for v in row["VDIs"] if v in db.tables["VDI"]]
    util, alloc = sr_usage(row["type"], vdis)
    if (row["physical_utilisation"], row["virtual_allocation"]) != (util, alloc):
        db.update("SR", sr, physical_utilisation=util, virtual_allocation=alloc)


def free_space(db, sr: str) -> int:
    row = db.get("SR", sr)
    return row["physical_size"] - row["physical_utilisation"]


def ensure_space(db, sr: str, amount: int) -> None:
    """``LVHDSR._ensureSpaceAvailable``: thick SRs refuse what their free space cannot hold
    (``SRNoSpace``); thin SRs do not check (``FileSR.ENFORCE_VIRT_ALLOC`` is False)."""
    row = db.get("SR", sr)
    if is_thick(row["type"]) and row["physical_size"] >= 0 and amount > free_space(db, sr):
        raise sm_failure("SRNoSpace")


# -- rows -----------------------------------------------------------------------------


def _known(db, cls: str, fields: dict) -> dict:
    """The fields the pool's release has (``is_tools_sr`` and friends are Dundee's)."""
    have = db.schema.classes[cls].fields
    return {k: v for k, v in fields.items() if k in have}


def new_row(world, db, cls: str, **fields) -> str:
    return world.new_row(db, cls, **_known(db, cls, fields))


def sm_of_type(db, sr_type: str):
    """The SM row registered for ``sr_type`` (``features_of_sr``), or None."""
    for _, row in db.tables["SM"].items():
        if row["type"] == sr_type:
            return row
    return None


def install_pool(world, pool) -> None:
    """What a new pool's first xapi start adds: the SM records of its release and the
    shared tools SR (``dbsync_master.ml``); PBDs come with each host."""
    db = pool.db
    for rec in catalogue.sm_types(db.schema.release):
        new_row(world, db, "SM", **rec)
    brand = "XenServer"
    label, desc = f"{brand} Tools", f"{brand} Tools ISOs"
    sr = new_row(
        world,
        db,
        "SR",
        name_label=label,
        name_description=desc,
        type="iso",
        content_type="iso",
        shared=True,
        is_tools_sr=True,
        sm_config={},
        physical_size=TOOLS_FS_SIZE,
        other_config={
            "xensource_internal": "true",
            "xenserver_tools_sr": "true",
            "i18n-key": "xenserver-tools",
            "i18n-original-value-name_label": label,
            "i18n-original-value-name_description": desc,
        },
    )
    new_row(
        world,
        db,
        "VDI",
        name_label="xs-tools.iso",
        SR=sr,
        virtual_size=TOOLS_ISO_SIZE,
        physical_utilisation=TOOLS_ISO_SIZE,
        type="user",
        read_only=True,
        location="xs-tools.iso",
        managed=True,
        is_tools_iso=True,
        sm_config={"xs-tools": "true"},
        on_boot="persist",
    )
    recompute_sr(db, sr)


def tools_sr(db) -> str:
    for ref, row in db.tables["SR"].items():
        if row.get("is_tools_sr") or row["other_config"].get("xenserver_tools_sr") == "true":
            return ref
    return NULL_REF


def _pbd(world, db, host_ref, sr, device_config) -> str:
    return new_row(
        world,
        db,
        "PBD",
        host=host_ref,
        SR=sr,
        device_config=device_config,
        currently_attached=True,
        other_config={},
    )


def install_host(world, pool, h) -> None:
    """The first-boot storage of host ``h`` in ``pool`` (see the module docstring)."""
    db = pool.db
    sr_type = getattr(h, "local_sr_type", None) or "lvm"
    serial = f"scsi-SATA_xapi-sim_{h.uuid[:8]}"
    sm_config = (
        {"allocation": "thick", "use_vhd": "true", "devserial": serial}
        if sr_type == "lvm"
        else {"devserial": serial}
    )
    local = new_row(
        world,
        db,
        "SR",
        name_label="Local storage",
        name_description="",
        type=sr_type,
        content_type="user",
        shared=False,
        sm_config=sm_config,
        physical_size=getattr(h, "local_sr_size", None) or LOCAL_SR_SIZE,
        other_config={
            "i18n-key": "local-storage",
            "i18n-original-value-name_label": "Local storage",
        },
    )
    _pbd(world, db, h.ref, local, {"device": f"/dev/disk/by-id/{serial}-part3"})
    removable = new_row(
        world,
        db,
        "SR",
        name_label="Removable storage",
        name_description="",
        type="udev",
        content_type="disk",
        shared=False,
        sm_config={"type": "block"},
        physical_size=0,
        other_config={
            "i18n-key": "local-hotplug-disk",
            "i18n-original-value-name_label": "Removable storage",
        },
    )
    _pbd(world, db, h.ref, removable, {"location": "/dev/xapi/block"})
    dvd = new_row(
        world,
        db,
        "SR",
        name_label="DVD drives",
        name_description="Physical DVD drives",
        type="udev",
        content_type="iso",
        shared=False,
        sm_config={"type": "cd"},
        physical_size=0,
        other_config={
            "i18n-key": "local-hotplug-cd",
            "i18n-original-value-name_label": "DVD drives",
            "i18n-original-value-name_description": "Physical DVD drives",
        },
    )
    _pbd(world, db, h.ref, dvd, {"location": "/dev/xapi/cd"})
    new_row(
        world,
        db,
        "VDI",
        name_label="SCSI 0:0:0:0",
        name_description="",
        SR=dvd,
        virtual_size=0,
        physical_utilisation=0,
        type="user",
        read_only=True,
        location="/dev/xapi/cd/sr0",
        managed=True,
        on_boot="persist",
        sm_config={"type": "cd", "hotplugged_at": world.clock.now_ts()},
    )
    tools = tools_sr(db)
    if tools != NULL_REF:
        _pbd(
            world,
            db,
            h.ref,
            tools,
            {"path": TOOLS_SR_DIR, "location": TOOLS_SR_DIR, "legacy_mode": "true"},
        )
    for sr in (local, removable, dvd):
        recompute_sr(db, sr)
    db.update("host", h.ref, crash_dump_sr=local, suspend_image_sr=local)
    pool_ref = pool.ref
    if (
        db.exists("pool", pool_ref)
        and pool.master is h
        and db.get("pool", pool_ref)["default_SR"] == NULL_REF
    ):
        db.update("pool", pool_ref, default_SR=local, suspend_image_SR=local, crash_dump_SR=local)


# -- garbage collection (db_gc.ml) ----------------------------------------------------------


def collect_garbage(db) -> None:
    """``Db_gc.single_pass`` (``db_gc.py``) on the pool's database, then the host records'
    ``crash_dump_sr``/``suspend_image_sr`` that name an SR no longer there are cleared."""
    with db.lock:
        db_gc.single_pass(db)
        for ref, row in db.rows("host"):
            bad = {
                k: NULL_REF
                for k in ("crash_dump_sr", "suspend_image_sr")
                if row[k] != NULL_REF and not db.exists("SR", row[k])
            }
            if bad:
                db.update("host", ref, **bad)


# -- pool join (xapi_pool.ml update_non_vm_metadata) ----------------------------------------


def on_join(world, jdb, mdb, joiner) -> None:
    """Copy the joiner's storage into the master's database, as ``update_non_vm_metadata``
    and the VM metadata import do: each SR the master lacks (by uuid) is introduced
    unshared with its ``other_config`` -- except a shared ISO SR whose PBD
    ``device_config`` the master already has (the tools SR), which maps to the master's
    SR; every PBD; every VDI (``VDI.pool_introduce``; an ISO already on the mapped SR at
    the same location is the master's); the VBDs of the VMs that moved. The host record's
    ``crash_dump_sr``/``suspend_image_sr`` follow their SRs. Call after the host and VM
    rows are in ``mdb``."""
    sr_map: dict[str, str] = {}
    master_pbds = [r for _, r in mdb.rows("PBD")]
    for sr, row in jdb.rows("SR"):
        if row["uuid"] in mdb.uuids["SR"]:
            sr_map[sr] = mdb.uuids["SR"][row["uuid"]]
            continue
        mine = [jdb.tables["PBD"][p] for p in row["PBDs"] if p in jdb.tables["PBD"]]
        if row["shared"] and row["content_type"] == "iso" and mine:
            same = [p for p in master_pbds if p["device_config"] == mine[0]["device_config"]]
            if same:
                sr_map[sr] = same[0]["SR"]
                continue
        mdb.carry("SR", sr, row, shared=False, current_operations={}, allowed_operations=[])
        sr_map[sr] = sr
    for pbd, row in jdb.rows("PBD"):
        if row["uuid"] in mdb.uuids["PBD"] or row["SR"] not in sr_map:
            continue
        mdb.carry("PBD", pbd, row, SR=sr_map[row["SR"]])
    vdi_map: dict[str, str] = {}
    for vdi, row in jdb.rows("VDI"):
        if row["SR"] not in sr_map:
            continue
        target = sr_map[row["SR"]]
        if row["uuid"] in mdb.uuids["VDI"]:
            vdi_map[vdi] = mdb.uuids["VDI"][row["uuid"]]
            continue
        if target != row["SR"]:
            same = [
                v
                for v in mdb.get("SR", target)["VDIs"]
                if mdb.tables["VDI"][v]["location"] == row["location"]
            ]
            if same:
                vdi_map[vdi] = same[0]
                continue
        mdb.carry(
            "VDI",
            vdi,
            row,
            SR=target,
            current_operations={},
            allowed_operations=[],
            snapshot_of=NULL_REF,
        )
        vdi_map[vdi] = vdi
    for vdi, row in jdb.rows("VDI"):
        snap_of = row["snapshot_of"]
        if vdi_map.get(vdi) == vdi and snap_of in vdi_map:
            mdb.update("VDI", vdi, snapshot_of=vdi_map[snap_of])
    for vbd, row in jdb.rows("VBD"):
        if not mdb.exists("VM", row["VM"]) or mdb.exists("VBD", vbd):
            continue
        vdi = vdi_map.get(row["VDI"], NULL_REF) if not row["empty"] else NULL_REF
        mdb.carry(
            "VBD",
            vbd,
            row,
            VDI=vdi,
            empty=row["empty"] or vdi == NULL_REF,
            current_operations={},
            allowed_operations=[],
        )
    for vm, row in jdb.rows("VM"):
        if mdb.exists("VM", vm) and row["suspend_VDI"] != NULL_REF:
            mdb.update("VM", vm, suspend_VDI=vdi_map.get(row["suspend_VDI"], NULL_REF))
    hrow = jdb.get("host", joiner.ref)
    if mdb.exists("host", joiner.ref):
        mdb.update(
            "host",
            joiner.ref,
            **{k: sr_map.get(hrow[k], NULL_REF) for k in ("crash_dump_sr", "suspend_image_sr")},
        )
    for sr in set(sr_map.values()):
        recompute_sr(mdb, sr)


# -- what a VM needs of a host's storage (xapi_vm_helpers.ml) ------------------------------


def required_srs(db, vm, vm_row=None) -> list:
    row = vm_row or db.get("VM", vm)
    vdis = []
    for vbd in row["VBDs"]:
        v = db.tables["VBD"].get(vbd)
        if v is not None and not v["empty"]:
            vdis.append(v["VDI"])
    if row["power_state"] == "Suspended":
        vdis.append(row["suspend_VDI"])
    srs = []
    for vdi in vdis:
        # a Suspended VM a scenario built has no image: nothing to see
        sr = db.tables["VDI"][vdi]["SR"] if vdi in db.tables["VDI"] else None
        if sr is not None and sr not in srs:
            srs.append(sr)
    return srs


def assert_can_see_srs(db, vm, vm_row, host) -> None:
    """``assert_can_see_SRs``: ``VM_REQUIRES_SR [vm, sr]`` for the first SR the host has
    no plugged PBD for."""
    seen = {
        db.tables["PBD"][p]["SR"]
        for p in db.get("host", host)["PBDs"]
        if p in db.tables["PBD"] and db.tables["PBD"][p]["currently_attached"]
    }
    for sr in required_srs(db, vm, vm_row):
        if sr not in seen:
            raise Failure("VM_REQUIRES_SR", vm, sr)
