"""Operation checks against a pool database: the facts each class's ``check_operation_error``
needs (``checks/``), ``allowed_operations`` kept up to date (``update_allowed_operations``),
and the start-time clean-up of ``current_operations`` (``Cancel_tasks``).

At the world layer so that the xapi start routine (``xapi_start.py``) and the API handlers
(``classes/``) share it; it reads rows and writes ``allowed_operations`` /
``current_operations`` only.
"""

from __future__ import annotations

from .checks import host as host_checks
from .checks import network as network_checks
from .checks import pool as pool_checks
from .checks import storage as storage_checks
from .checks import vm as vm_checks
from .checks import vm_appliance as appliance_checks
from .checks.operations import setify
from .datamodel import NULL_REF, RELEASE_INDEX


class OperationPolicy:
    """How one world runs operation checks (``World.service``; tests change it live).

    * ``max_wait``: how long an operation refused with ``OTHER_OPERATION_IN_PROGRESS``
      waits for the others to finish before that error is returned. xapi retries under
      ``Helpers.Policy.standard``: up to 2 hours (``max_total_wait = 3600 * 2``), waking
      every 1-20 s; the simulator wakes on every database change instead.
    """

    def __init__(self, world):
        self.max_wait = 7200.0
        # (db, class, ref, key) of the operations this process has marked and not yet
        # ended, never taken for stale ones (guarded by that database's lock)
        self.live: set = set()

    @classmethod
    def of(cls, world) -> OperationPolicy:
        return world.service(cls)


def _pool_row(db):
    for ref, row in db.tables["pool"].items():
        return ref, row
    return NULL_REF, None


def rpu_in_progress(db) -> bool:
    """``Helpers.rolling_upgrade_in_progress``: the pool's other_config flag."""
    _, row = _pool_row(db)
    return row is not None and "rolling_upgrade_in_progress" in row["other_config"]


def _valid(db, cls, ref) -> bool:
    """``Db.is_valid_ref``."""
    return cls in db.tables and ref in db.tables[cls]


def vm_facts(world, db, row) -> dict:
    """``Xapi_vm_lifecycle.get_info``: what check_operation_error needs beyond the row."""
    gm = (
        db.tables["VM_guest_metrics"].get(row["guest_metrics"])
        if "VM_guest_metrics" in db.tables
        else None
    )
    _, prow = _pool_row(db)
    oc = prow["other_config"] if prow is not None else {}
    resets = []
    for vbd in row.get("VBDs") or ():
        vbd_row = db.tables["VBD"].get(vbd) if "VBD" in db.tables else None
        vdi = db.tables["VDI"].get(vbd_row["VDI"]) if vbd_row is not None else None
        if vdi is not None:
            smc = vdi["sm_config"]
            resets.append((smc.get("on_boot") == "reset", vm_checks.bool_of_assoc("caching", smc)))
    facts = dict(
        guest_metrics=gm,
        clone_suspended_vm_enabled=oc.get("allow_clone_suspended_vm") == "true",
        vdis_reset_and_caching=resets,
        appliance_valid=_valid(db, "VM_appliance", row.get("appliance", NULL_REF)),
        protection_policy_valid=_valid(db, "VMPP", row.get("protection_policy", NULL_REF)),
    )
    rules = vm_checks.rules_for(db.schema.release)
    facts["rules"] = rules
    if rules.later:
        facts.update(_later_vm_facts(db, row))
    elif rules.immobility or rules.dom0_split:  # 1.14-lcm (ely)
        facts.update(_mobility_and_dom0_facts(db, row))
    return facts


_LIVE = ("Running", "Paused")


def _metrics(db, row):
    return db.tables["VM_metrics"].get(row["metrics"]) if "VM_metrics" in db.tables else None


def _mobility_and_dom0_facts(db, row) -> dict:
    """What ``is_mobile``/``nested_virt`` and the dom0 rule read (1.14-lcm on; ``checks/vm.py``
    ``immobility_error``, ``control_domain_error``): ``VM_metrics.nomigrate``/
    ``nested_virt`` (with valid metrics; else the check reads ``platform``), and
    ``Helpers.is_domain_zero``."""
    metrics = _metrics(db, row)
    live = row["power_state"] in _LIVE
    platform = row.get("platform") or {}
    facts: dict = {}
    if metrics is not None:
        for field, key in (("nomigrate", "nomigrate"), ("nested_virt", "nested-virt")):
            facts[field] = bool(metrics.get(field)) or (
                live and vm_checks.platform_is_true(platform, key)
            )
    # Helpers.is_domain_zero: the control domain its resident host names (a host without
    # control_domain set counts its resident control domain)
    host = db.tables["host"].get(row["resident_on"])
    if row["is_control_domain"] and host is not None:
        dom0 = host.get("control_domain", NULL_REF)
        facts["is_domain_zero"] = dom0 == NULL_REF or (
            db.tables["VM"].get(dom0, {}).get("uuid") == row["uuid"]
        )
    else:
        facts["is_domain_zero"] = False
    return facts


def _later_vm_facts(db, row) -> dict:
    """What the check of 1.249-lcm and later reads beyond the row (``checks/vm.py``
    ``later_check_operation_error``). ``VM_metrics.nomigrate``/``nested_virt``/
    ``current_domain_type`` are what xenopsd reported at start: the simulator does not
    write them, so for a running or paused VM they are the ``platform`` flags and
    ``domain_type`` it runs with (a recorded database's true values are kept)."""
    metrics = _metrics(db, row)
    facts: dict = dict(
        rpu=rpu_in_progress(db),
        snapshot_schedule_valid=_valid(db, "VMSS", row.get("snapshot_schedule", NULL_REF)),
    )
    facts.update(_mobility_and_dom0_facts(db, row))
    if metrics is not None:
        cdt = metrics.get("current_domain_type", "unspecified")
        if cdt == "unspecified" and row["power_state"] != "Halted":
            cdt = row.get("domain_type", "unspecified")
            if cdt == "unspecified":
                cdt = "hvm" if row["HVM_boot_policy"] else "pv"
        facts["current_domain_type"] = cdt
    sriov, suspendable = [], True
    for vgpu in row.get("VGPUs") or ():
        v = db.tables["VGPU"].get(vgpu) if "VGPU" in db.tables else None
        if v is None:
            suspendable = False
            continue
        vt = db.tables["VGPU_type"].get(v["type"])
        impl = vt.get("implementation") if vt is not None else None
        if impl == "nvidia_sriov" and _valid(db, "PCI", v.get("PCI", NULL_REF)):
            sriov.append(v["PCI"])
        pgpu = db.tables["PGPU"].get(v["resident_on"])
        if not (
            impl in ("nvidia", "nvidia_sriov")
            and pgpu is not None
            and "nvidia" in (pgpu.get("compatibility_metadata") or {})  # Xapi_gpumon.Nvidia.key
        ):
            suspendable = False
    facts.update(sriov_pcis=sriov, vgpus_suspendable=suspendable, vgpus_migratable=True)
    return facts


def host_facts(db, row) -> dict:
    """The facts of ``Xapi_host_helpers.valid_operations`` from the database."""
    metrics = db.tables["host_metrics"].get(row["metrics"])
    plugged = setify(
        pbd["SR"] for _, pbd in db.tables.get("PBD", {}).items() if pbd["currently_attached"]
    )  # Helpers.get_all_plugged_srs
    clustered = [sr for sr in plugged if db.tables["SR"].get(sr, {}).get("clustered", False)]
    down = any(not m["live"] for _, m in db.tables["host_metrics"].items())
    recovering = [
        t["name_description"]
        for _, t in db.tables["task"].items()
        if t["name_label"] == "SR Recovering" and t["name_description"] in clustered
    ]
    return dict(
        live=None if metrics is None else metrics["live"],
        power_on_plugin=True,
        plugged_clustered_srs=clustered,
        hosts_down=down,
        recovering_tasks=recovering,
    )


def _sm_features(db, sr_type) -> dict:
    """``Xapi_sr_operations.features_of_sr``: the SM record of the SR's type."""
    for _, sm in db.tables["SM"].items():
        if sm["type"] == sr_type:
            return sm["features"]
    return {}


def _sr_row(row) -> dict:
    """Before Dundee's ``SR.is_tools_sr`` the tools SR was the one tagged
    ``other_config:xenserver_tools_sr=true`` (``xapi_globs.ml`` ``tools_sr_tag``)."""
    if "is_tools_sr" not in row and row["other_config"].get("xenserver_tools_sr") == "true":
        return {**row, "is_tools_sr": True}
    return row


def since(db, release: str) -> bool:
    """The world's datamodel release is ``release`` or a later one. For the operation rules
    that changed in xapi's code rather than in the datamodel, ``release`` is the first
    release whose source has the change (``checks/storage.py`` cites the commits); the
    simulator's profiles are 6.5 SP1, 7.0, 7.1, 8.2, XenServer 8 and XCP-ng 8.3."""
    return RELEASE_INDEX[db.schema.release] >= RELEASE_INDEX[release]


def sr_facts(db, row) -> dict:
    """What ``Xapi_sr_operations.valid_operations`` reads beyond the SR row, and which of
    the releases' tables and rules apply: ``vdi_mirror`` from 7.0, the rolling-upgrade rule
    from 7.1, the CBT operations and ``vdi_set_on_boot`` with CBT, ``plug`` beside other
    plugs from Kolkata (CA-271491), the enum's order from v24.14.0."""
    pbds = [db.tables["PBD"][p] for p in row["PBDs"] if p in db.tables["PBD"]]
    vdis = [db.tables["VDI"][v] for v in row["VDIs"] if v in db.tables["VDI"]]
    return dict(
        features=_sm_features(db, row["type"]),
        attached_pbds=any(p["currently_attached"] for p in pbds),
        managed_vdis=any(v["managed"] and v["type"] != "rrd" for v in vdis),
        cbt_ops=has_cbt(db),
        mirror_op=since(db, "dundee"),
        enum_order=since(db, "24.14.0"),
        rpu_check=since(db, "ely"),
        plug_parallel=since(db, "kolkata"),
        rpu=rpu_in_progress(db),
    )


def has_cbt(db) -> bool:
    """The release has changed block tracking (``VDI.enable_cbt`` and the operations)."""
    return "enable_cbt" in db.schema.classes["VDI"].messages


def vdi_facts(db, row) -> dict:
    """What ``Xapi_vdi.check_operation_error`` reads beyond the VDI row (the later rules
    come with the row's ``cbt_enabled``), and: ``copy`` refused with ``on_boot=reset`` from
    7.1 (CA-348700, in 1.14-lcm), ``force_unlock`` hidden from ``allowed_operations`` from
    Lima (CA-281176)."""
    _, prow = _pool_row(db)
    sr = db.tables["SR"].get(row["SR"])
    pbds = [db.tables["PBD"][p] for p in (sr["PBDs"] if sr else ()) if p in db.tables["PBD"]]
    vbds = [db.tables["VBD"][v] for v in row["VBDs"] if v in db.tables["VBD"]]
    ha_ops = set(prow["current_operations"].values()) if prow is not None else set()
    return dict(
        ha_enabled=bool(prow and prow["ha_enabled"]),
        sr_type=sr["type"] if sr else "",
        sr_is_tools_sr=bool(
            sr and (sr.get("is_tools_sr") or sr["other_config"].get("xenserver_tools_sr") == "true")
        ),
        sr_attached_pbds=any(p["currently_attached"] for p in pbds),
        vbds=vbds,
        features=_sm_features(db, sr["type"]) if sr else {},
        ha_enable_in_progress="ha_enable" in ha_ops,
        ha_disable_in_progress="ha_disable" in ha_ops,
        rpu=rpu_in_progress(db),
        snapshot_vms=[
            v["VM"] for v in vbds if db.tables["VM"].get(v["VM"], {}).get("is_a_snapshot")
        ],
        copy_reset_refused=since(db, "ely"),
        hide_force_unlock=since(db, "lima"),
    )


def vbd_facts(world, db, ref, row) -> dict:
    """What ``Xapi_vbd_helpers.valid_operations`` reads beyond the VBD row."""
    vm_row = db.get("VM", row["VM"])
    gm = db.tables["VM_guest_metrics"].get(vm_row["guest_metrics"])
    vdi_row = None if row["empty"] else db.tables["VDI"].get(row["VDI"])
    others = []
    if vdi_row is not None:
        for v in vdi_row["VBDs"]:
            other = db.tables["VBD"].get(v)
            if v == ref or other is None:
                continue
            owner = db.tables["VM"].get(other["VM"])
            if owner is not None:
                others.append((other, owner))
    facts = dict(
        vm_row=vm_row,
        guest_metrics=gm,
        vdi_row=vdi_row,
        other_vbds=others,
        detected_suffices=since(db, "ely"),
        mirror_ignored=has_cbt(db),
    )
    # Jura on: Helpers.domain_type, the running domain's VM_metrics.current_domain_type
    # (when known; otherwise the boot record's, as before)
    metrics = db.tables["VM_metrics"].get(vm_row.get("metrics", NULL_REF))
    current = metrics.get("current_domain_type", "unspecified") if metrics else "unspecified"
    if since(db, "jura") and current != "unspecified":
        facts["hvm"] = current == "hvm"
    return facts


def vif_facts(world, db, row) -> dict:
    """What ``Xapi_vif_helpers.valid_operations`` reads beyond the VIF: its VM (HANDLE_INVALID
    if gone) and the VM's guest metrics. 6.5 SP1's rules (xen-api v1.9.60) had neither the
    VM-operation rule nor ``can_use_hotplug_vif``: the facts are trimmed to match."""
    vm_row = db.get("VM", row["VM"])
    gm = vm_facts(world, db, vm_row)["guest_metrics"]
    if db.schema.release == "cream":
        vm_row = {**vm_row, "current_operations": {}}
        if gm is not None:
            gm = {k: v for k, v in gm.items() if k != "can_use_hotplug_vif"}
    return dict(vm_row=vm_row, guest_metrics=gm, detected_suffices=since(db, "ely"))


def appliance_power_states(db, row) -> list:
    """The power states of an appliance's VMs (``Db.VM_appliance.get_VMs``)."""
    vms = db.tables["VM"]
    return [vms[v]["power_state"] for v in row["VMs"] if v in vms]


def operation_error(world, db, cls, ref, op, strict=True):
    """The class's ``check_operation_error`` for the row in ``db`` (HANDLE_INVALID if none)."""
    row = db.get(cls, ref)
    if cls == "SR":
        return storage_checks.sr_check_operation_error(ref, _sr_row(row), op, **sr_facts(db, row))
    if cls == "VDI":
        return storage_checks.vdi_check_operation_error(ref, row, op, **vdi_facts(db, row))
    if cls == "VBD":
        return storage_checks.vbd_check_operation_error(
            ref, row, op, **vbd_facts(world, db, ref, row)
        )
    if cls == "VM":
        return vm_checks.check_operation_error(
            ref, row, op, strict=strict, **vm_facts(world, db, row)
        )
    if cls == "host":
        return host_checks.check_operation_error(ref, row, op, **host_facts(db, row))
    if cls == "pool":
        return pool_checks.check_operation_error(ref, row, op)
    if cls == "VIF":
        return network_checks.vif_check_operation_error(ref, row, op, **vif_facts(world, db, row))
    if cls == "VM_appliance":
        return appliance_checks.check_operation_error(ref, row, op, appliance_power_states(db, row))
    raise ValueError(f"no operation checks wired for {cls}")


def allowed_operations(world, db, cls, ref) -> list:
    """The class's ``update_allowed_operations`` value for the row in ``db``."""
    row = db.get(cls, ref)
    if cls == "SR":
        return storage_checks.sr_allowed_operations(ref, _sr_row(row), **sr_facts(db, row))
    if cls == "VDI":
        return storage_checks.vdi_allowed_operations(ref, row, **vdi_facts(db, row))
    if cls == "VBD":
        return storage_checks.vbd_allowed_operations(ref, row, **vbd_facts(world, db, ref, row))
    if cls == "VM":
        facts = vm_facts(world, db, row)
        facts["rpu"] = rpu_in_progress(db)
        return vm_checks.allowed_operations(ref, row, **facts)
    if cls == "host":
        return host_checks.allowed_operations(
            ref, row, rpu=rpu_in_progress(db), **host_facts(db, row)
        )
    if cls == "pool":
        return pool_checks.allowed_operations(ref, row)
    if cls == "VIF":
        if row["VM"] not in db.tables["VM"]:
            return []
        return network_checks.vif_allowed_operations(ref, row, **vif_facts(world, db, row))
    if cls == "VM_appliance":
        return appliance_checks.allowed_operations(ref, row, appliance_power_states(db, row))
    raise ValueError(f"no operation checks wired for {cls}")


def refresh_allowed(world, db, cls, ref):
    """``update_allowed_operations``: write the value if it changed (no-op if ``ref`` is
    gone)."""
    with db.lock:
        if ref not in db.tables[cls]:
            return
        ops = allowed_operations(world, db, cls, ref)
        if ops != db.tables[cls][ref]["allowed_operations"]:
            db.set(cls, ref, "allowed_operations", ops)


def refresh_vm_allowed(world, db, vm_ref):
    """``Xapi_vm.update_allowed_operations``: the VM's, then its VBDs' (their rules read
    the VM's power state and operations), then its appliance's if that is a valid ref
    (``Xapi_vm_lifecycle.update_allowed_operations``)."""
    refresh_allowed(world, db, "VM", vm_ref)
    row = db.tables["VM"].get(vm_ref)
    for vbd in row["VBDs"] if row is not None else ():
        refresh_allowed(world, db, "VBD", vbd)
    appliance = row.get("appliance", NULL_REF) if row is not None else NULL_REF
    if appliance != NULL_REF and _valid(db, "VM_appliance", appliance):
        refresh_allowed(world, db, "VM_appliance", appliance)


def refresh_storage_allowed(world, db, classes=("SR", "VDI", "VBD")):
    """``update_allowed_operations`` of every SR, VDI and VBD (after dropping operations of
    tasks that no longer exist), as xapi's start does."""
    with db.lock:
        for cls in classes:
            for ref in list(db.tables[cls]):
                drop_stale_operations(world, db, cls, ref)
                refresh_allowed(world, db, cls, ref)


def refresh_host_allowed(world, h):
    """``Xapi_host_helpers.update_allowed_operations`` for a HostRuntime."""
    refresh_allowed(world, h.db, "host", h.ref)


def refresh_pool_allowed(world, db):
    ref, _ = _pool_row(db)
    if ref != NULL_REF:
        refresh_allowed(world, db, "pool", ref)


def refresh_all_allowed(world, db):
    """What xapi's start does (``Cancel_tasks``): drop operations of tasks that no longer
    exist, then ``update_all_allowed_operations`` for VMs (and so their appliances), hosts
    and the pool."""
    with db.lock:
        for cls in ("VM", "host", "pool"):
            for ref in list(db.tables[cls]):
                drop_stale_operations(world, db, cls, ref)
        for cls in ("VM", "host"):
            for ref in list(db.tables[cls]):
                refresh_allowed(world, db, cls, ref)
        # each VM's refresh refreshes its appliance (current_operations are not cancelled)
        for ref, row in list(db.tables.get("VM_appliance", {}).items()):
            if any(v in db.tables["VM"] for v in row["VMs"]):
                refresh_allowed(world, db, "VM_appliance", ref)
        refresh_pool_allowed(world, db)
        refresh_storage_allowed(world, db)
        refresh_network_allowed(world, db)


def refresh_network_allowed(world, db):
    """``Xapi_vif_helpers.cancel_tasks`` and ``update_allowed_operations`` for every VIF
    (PIFs and networks have no operation checks in Dundee)."""
    with db.lock:
        for ref in list(db.tables["VIF"]):
            drop_stale_operations(world, db, "VIF", ref)
            refresh_allowed(world, db, "VIF", ref)


def drop_stale_operations(world, db, cls, ref) -> bool:
    """``Helpers.cancel_tasks`` as xapi's start runs it (``Cancel_tasks``): entries of
    ``current_operations`` whose task does not exist are dropped. Tasks are not persisted,
    so after a restart from ``--state-dir`` every entry a journal caught is stale. Entries
    of operations this process is running are kept. Returns whether anything changed."""
    row = db.tables[cls].get(ref)
    if row is None or not row["current_operations"]:
        return False
    live = OperationPolicy.of(world).live
    keep = {
        k: v
        for k, v in row["current_operations"].items()
        if k in db.tables["task"] or (db, cls, ref, k) in live
    }
    if len(keep) == len(row["current_operations"]):
        return False
    db.set(cls, ref, "current_operations", keep)
    return True
