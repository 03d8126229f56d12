"""The CLI record of a VM (``vm-list``, ``vm-param-*``; also templates and snapshots).

Mirrors xen-api Dundee ``records.ml`` ``vm_record``: field names, order, rendering, setters,
and the fields read from ``VM_metrics`` / ``VM_guest_metrics`` or computed by calls.
"""

from __future__ import annotations

from ...errors import Failure
from ...wire.ocaml import bool_of_string, float_of_string
from .. import render as R
from ..errors import CliFailure
from ..values import (
    bytes_of_string,
    on_crash_of_string,
    on_crash_str,
    on_normal_exit_of_string,
    on_normal_exit_str,
    tristate_str,
    vm_op_of_string,
    vm_op_str,
)
from .record import Builder, Record


def vm_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "VM", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add
    metrics = B.linked("VM_metrics", "metrics")
    guest = B.linked("VM_guest_metrics", "guest_metrics")

    def mf(f, render, default=R.NID):
        return B.of_linked(metrics, f, render, default)

    def gf(f, render):
        return B.of_linked(guest, f, render)

    def guest_map(name, f):
        add(
            name,
            gf(f, lambda v: R.map_str(v or {})),
            get_map=lambda: [] if guest() is None else list((guest().get(f) or {}).items()),
        )

    def query(ds):
        return ctx.call("VM.query_data_source", ref, ds)

    def memory_target():
        try:
            try:
                return R.int_str(int(query("memory_target")))
            except Failure as f:
                if f.code == "VM_BAD_POWER_STATE":
                    return "0"
                raise
        except Exception:  # noqa: BLE001
            return "<unknown>"

    def vcpus_utilisation():
        m = metrics()
        n = int(m.get("VCPUs_number", 0)) if m else 0
        return [(str(i), R.float_str(query(f"cpu{i}"))) for i in range(n)]

    def vcpus_util_text():
        try:
            return "; ".join(f"{a}: {b}" for a, b in vcpus_utilisation())
        except Exception:  # noqa: BLE001
            return ""

    def vcpus_util_map():
        try:
            return vcpus_utilisation()
        except Exception:  # noqa: BLE001
            return []

    def devices(msg):
        def get():
            try:
                return list(ctx.call(f"VM.{msg}", ref))
            except Exception:  # noqa: BLE001
                return []

        return get

    def cooperative():
        try:
            return R.bool_str(ctx.call("VM.get_cooperative", ref))
        except Exception:  # noqa: BLE001
            return "true"

    def vcpus_params_add(k, v):
        if k not in ("weight", "cap", "mask"):
            raise CliFailure(f"Failed to add parameter '{k}': expecting 'weight','cap' or 'mask'")
        ctx.call("VM.add_to_VCPUs_params", ref, k, v)

    def blocked_ops():
        return [(vm_op_str(k), v) for k, v in x().get("blocked_operations", {}).items()]

    add("uuid", B.s("uuid"))
    B.str_rw("name-label", "name_label")
    B.str_rw("name-description", "name_description")
    B.int_rw("user-version", "user_version")
    B.bool_rw("is-a-template", "is_a_template")
    add("is-a-snapshot", B.b("is_a_snapshot"))
    add("snapshot-of", B.r("snapshot_of"))
    add("snapshots", B.rs("snapshots"))
    add("snapshot-time", B.s("snapshot_time"))
    add("transportable-snapshot-id", B.s("transportable_snapshot_id"), hidden=True)
    add("snapshot-info", B.m("snapshot_info"))
    add("parent", B.r("parent"))
    add("children", B.rs("children"))
    add("is-control-domain", B.b("is_control_domain"))
    add("power-state", lambda: R.power_state(x()["power_state"]))
    add("memory-actual", mf("memory_actual", R.int_str))
    add("memory-target", memory_target, expensive=True)
    add("memory-overhead", B.i("memory_overhead"))
    for cli, f in (
        ("memory-static-max", "memory_static_max"),
        ("memory-dynamic-max", "memory_dynamic_max"),
        ("memory-dynamic-min", "memory_dynamic_min"),
        ("memory-static-min", "memory_static_min"),
    ):
        add(cli, B.i(f), set=B.setter(f"set_{f}", lambda v, c=cli: bytes_of_string(c, v)))
    B.ref_rw("suspend-VDI-uuid", "suspend_VDI", "VDI")
    B.ref_rw("suspend-SR-uuid", "suspend_SR", "SR")
    B.add_map("VCPUs-params", "VCPUs_params", writable=True, add_to_map=vcpus_params_add)
    B.int_rw("VCPUs-max", "VCPUs_max")
    B.int_rw("VCPUs-at-startup", "VCPUs_at_startup")
    add(
        "actions-after-shutdown",
        lambda: on_normal_exit_str(x()["actions_after_shutdown"]),
        set=B.setter("set_actions_after_shutdown", on_normal_exit_of_string),
    )
    add(
        "actions-after-reboot",
        lambda: on_normal_exit_str(x()["actions_after_reboot"]),
        set=B.setter("set_actions_after_reboot", on_normal_exit_of_string),
    )
    add(
        "actions-after-crash",
        lambda: on_crash_str(x()["actions_after_crash"]),
        set=B.setter("set_actions_after_crash", on_crash_of_string),
    )
    B.add_set("console-uuids", lambda: [ctx.uuid_of(c) for c in x().get("consoles", [])])
    B.add_map("platform", "platform", writable=True)
    B.add_set("allowed-operations", B.listed("allowed_operations", vm_op_str))
    B.add_set("current-operations", B.listed("current_operations", vm_op_str))
    add(
        "blocked-operations",
        lambda: R.map_str(blocked_ops()),
        add_to_map=lambda k, v: ctx.call(
            "VM.add_to_blocked_operations", ref, vm_op_of_string(k), v
        ),
        remove_from_map=lambda k: ctx.call(
            "VM.remove_from_blocked_operations", ref, vm_op_of_string(k)
        ),
        get_map=blocked_ops,
    )
    B.add_set("allowed-VBD-devices", devices("get_allowed_VBD_devices"), expensive=True)
    B.add_set("allowed-VIF-devices", devices("get_allowed_VIF_devices"), expensive=True)
    add(
        "possible-hosts",
        lambda: "; ".join(ctx.uuid_of(h) for h in ctx.call("VM.get_possible_hosts", ref)),
        expensive=True,
    )
    B.str_rw("HVM-boot-policy", "HVM_boot_policy")
    B.add_map("HVM-boot-params", "HVM_boot_params", writable=True)
    add(
        "HVM-shadow-multiplier",
        B.fl("HVM_shadow_multiplier"),
        set=B.setter("set_HVM_shadow_multiplier", float_of_string),
    )
    for cli, f in (
        ("PV-kernel", "PV_kernel"),
        ("PV-ramdisk", "PV_ramdisk"),
        ("PV-args", "PV_args"),
        ("PV-legacy-args", "PV_legacy_args"),
        ("PV-bootloader", "PV_bootloader"),
        ("PV-bootloader-args", "PV_bootloader_args"),
    ):
        B.str_rw(cli, f)
    add("last-boot-CPU-flags", B.m("last_boot_CPU_flags"))
    add(
        "last-boot-record",
        lambda: "'" + str(x().get("last_booted_record", "")) + "'",
        expensive=True,
    )
    add("resident-on", B.r("resident_on"))
    B.ref_rw("affinity", "affinity", "host")
    B.add_map("other-config", "other_config", writable=True)
    add("dom-id", B.i("domid"))
    add("recommendations", B.s("recommendations"))
    B.add_map("xenstore-data", "xenstore_data", writable=True)
    add(
        "ha-always-run",
        B.b("ha_always_run"),
        set=B.setter("set_ha_always_run", bool_of_string),
        deprecated=True,
    )
    B.str_rw("ha-restart-priority", "ha_restart_priority")
    add("blobs", B.blobs("blobs"))
    add("start-time", mf("start_time", str, R.UNKNOWN_TIME))
    add("install-time", mf("install_time", str, R.UNKNOWN_TIME))
    add("VCPUs-number", mf("VCPUs_number", R.int_str))
    add("VCPUs-utilisation", vcpus_util_text, get_map=vcpus_util_map, expensive=True)
    guest_map("os-version", "os_version")
    guest_map("PV-drivers-version", "PV_drivers_version")
    add("PV-drivers-up-to-date", gf("PV_drivers_up_to_date", R.bool_str))
    guest_map("memory", "memory")
    guest_map("disks", "disks")
    guest_map("networks", "networks")
    add("PV-drivers-detected", gf("PV_drivers_detected", R.bool_str))
    guest_map("other", "other")
    add("live", gf("live", R.bool_str))
    add("guest-metrics-last-updated", gf("last_updated", str))
    add("can-use-hotplug-vbd", gf("can_use_hotplug_vbd", tristate_str))
    add("can-use-hotplug-vif", gf("can_use_hotplug_vif", tristate_str))
    add("cooperative", cooperative, expensive=True, deprecated=True)
    B.add_tags()
    B.ref_rw("appliance", "appliance", "VM_appliance")
    B.int_rw("start-delay", "start_delay")
    B.int_rw("shutdown-delay", "shutdown_delay")
    B.int_rw("order", "order")
    add("version", B.i("version"))
    add("generation-id", B.s("generation_id"))
    add("hardware-platform-version", B.i("hardware_platform_version"))
    B.bool_rw("has-vendor-device", "has_vendor_device")
    return rec
