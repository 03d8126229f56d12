"""The CLI records of a host and of its physical CPUs (``host-*``, ``host-cpu-*``).

Mirrors xen-api Dundee ``records.ml`` ``host_record`` and ``host_cpu_record``.
"""

from __future__ import annotations

from .. import render as R
from ..values import host_op_str
from .record import Builder, Record


def host_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "host", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add
    metrics = B.linked("host_metrics", "metrics")

    def patches():
        out = []
        for hp in x().get("patches", []):
            pp = ctx.call("host_patch.get_pool_patch", hp)
            out.append(ctx.call("pool_patch.get_uuid", pp))
        return out

    def free_computed():
        def fallback():
            return ctx.call("host_metrics.get_record", x()["metrics"]).get("memory_free", 0)

        return R.int_str(ctx.call_or(fallback, "host.compute_free_memory", ref))

    add("uuid", B.s("uuid"))
    B.str_rw("name-label", "name_label")
    B.str_rw("name-description", "name_description")
    B.add_set("allowed-operations", B.listed("allowed_operations", host_op_str))
    B.add_set("current-operations", B.listed("current_operations", host_op_str))
    add("enabled", B.b("enabled"))
    add("display", B.s("display", "enabled"))
    add("API-version-major", B.i("API_version_major"))
    add("API-version-minor", B.i("API_version_minor"))
    add("API-version-vendor", B.s("API_version_vendor"))
    B.add_map("API-version-vendor-implementation", "API_version_vendor_implementation")
    B.add_map("logging", "logging", writable=True)
    B.ref_rw("suspend-image-sr-uuid", "suspend_image_sr", "SR")
    B.ref_rw("crash-dump-sr-uuid", "crash_dump_sr", "SR")
    B.add_map("software-version", "software_version")
    B.add_set("capabilities", B.listed("capabilities"))
    B.add_map("other-config", "other_config", writable=True)
    B.add_map("cpu_info", "cpu_info")
    B.add_map("chipset-info", "chipset_info")
    add("hostname", B.s("hostname"))
    add("address", B.s("address"))
    B.add_set("supported-bootloaders", B.listed("supported_bootloaders"))
    add("blobs", B.blobs("blobs"))
    add("memory-overhead", B.i("memory_overhead"))
    add("memory-total", B.of_linked(metrics, "memory_total", R.int_str))
    # host_metrics.memory_free left the API record in tampa; show the computed value then
    add(
        "memory-free",
        lambda: (
            R.int_str(metrics()["memory_free"])
            if metrics() and "memory_free" in metrics()
            else free_computed()
        ),
    )
    add("memory-free-computed", free_computed, expensive=True)
    add("host-metrics-live", B.of_linked(metrics, "live", R.bool_str))
    B.add_set("patches", patches, sep=", ")
    add("ha-statefiles", B.rs("ha_statefiles"))
    add("ha-network-peers", B.rs("ha_network_peers"))
    add("external-auth-type", B.s("external_auth_type"))
    add("external-auth-service-name", B.s("external_auth_service_name"))
    B.add_map("external-auth-configuration", "external_auth_configuration")
    add("edition", B.s("edition"))
    B.add_map("license-server", "license_server")
    add("power-on-mode", B.s("power_on_mode"))
    B.add_map("power-on-config", "power_on_config")
    add("local-cache-sr", B.r("local_cache_sr"))
    B.add_tags()
    B.bool_rw("ssl-legacy", "ssl_legacy")
    B.add_map("guest_VCPUs_params", "guest_VCPUs_params", writable=True)
    B.add_set("virtual-hardware-platform-versions", B.listed("virtual_hardware_platform_versions"))
    return rec


def host_cpu_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "host_cpu", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add

    def utilisation():
        try:
            return R.float_str(
                ctx.call("host.query_data_source", x()["host"], f"cpu{x()['number']}")
            )
        except Exception:  # noqa: BLE001
            return "<unknown>"

    add("uuid", B.s("uuid"))
    add("host-uuid", B.r("host"))
    add("number", B.i("number"))
    add("vendor", B.s("vendor"))
    add("speed", B.i("speed"))
    add("model", B.i("model"))
    add("family", B.i("family"))
    add("modelname", B.s("modelname"))
    add("stepping", B.s("stepping"))
    add("flags", B.s("flags"))
    add("utilisation", utilisation, expensive=True)
    return rec
