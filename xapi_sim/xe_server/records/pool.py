"""The CLI record of a pool (``pool-list``, ``pool-param-*``).

Mirrors xen-api Dundee ``records.ml`` ``pool_record``.
"""

from __future__ import annotations

from ...wire.ocaml import bool_of_string, int64_of_string
from .. import render as R
from .record import Builder, Record


def pool_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "pool", ref, row, only)
    B = Builder(rec)
    x, add = B.x, B.add

    def license_state():
        def fallback():
            # Xapi_pool.get_license_state: the lowest edition, the earliest expiry
            hosts = ctx.call("host.get_all_records")
            editions = sorted({h["edition"] for h in hosts.values()})
            expiries = sorted(
                h["license_params"]["expiry"]
                for h in hosts.values()
                if "expiry" in h["license_params"]
            )
            return {
                "edition": editions[0] if editions else "",
                "expiry": expiries[0] if expiries else "never",
            }

        return R.map_str(ctx.call_or(fallback, "pool.get_license_state", ref))

    def sr_types():
        def fallback():
            return sorted({row["type"] for row in ctx.call("SM.get_all_records").values()})

        return "; ".join(ctx.call_or(fallback, "SR.get_supported_types"))

    add("uuid", B.s("uuid"))
    B.str_rw("name-label", "name_label")
    B.str_rw("name-description", "name_description")
    add("master", B.r("master"))
    B.ref_rw("default-SR", "default_SR", "SR")
    B.ref_rw("crash-dump-SR", "crash_dump_SR", "SR")
    B.ref_rw("suspend-image-SR", "suspend_image_SR", "SR")
    add("supported-sr-types", sr_types, expensive=True)
    B.add_map("other-config", "other_config", writable=True)
    B.add_set("allowed-operations", B.listed("allowed_operations"))
    B.add_set("current-operations", B.listed("current_operations"))
    add("ha-enabled", B.b("ha_enabled"))
    add("ha-configuration", B.m("ha_configuration"))
    add("ha-statefiles", B.rs("ha_statefiles"))
    # a bad number here is OCaml's uncaught Failure "int_of_string" (not safe_i64)
    add(
        "ha-host-failures-to-tolerate",
        B.i("ha_host_failures_to_tolerate"),
        set=B.setter("set_ha_host_failures_to_tolerate", int64_of_string),
    )
    add("ha-plan-exists-for", B.i("ha_plan_exists_for"))
    add(
        "ha-allow-overcommit",
        B.b("ha_allow_overcommit"),
        set=B.setter("set_ha_allow_overcommit", bool_of_string),
    )
    add("ha-overcommitted", B.b("ha_overcommitted"))
    add("blobs", B.blobs("blobs"))
    add("wlb-url", B.s("wlb_url"))
    add("wlb-username", B.s("wlb_username"))
    add("wlb-enabled", B.b("wlb_enabled"), set=B.setter("set_wlb_enabled", bool_of_string))
    add(
        "wlb-verify-cert",
        B.b("wlb_verify_cert"),
        set=B.setter("set_wlb_verify_cert", bool_of_string),
    )
    B.add_map("gui-config", "gui_config", writable=True)
    B.add_map("health-check-config", "health_check_config", writable=True)
    add("vswitch-controller", lambda: x().get("vswitch_controller") or "<not set>", hidden=True)
    add("restrictions", B.m("restrictions"))
    B.add_tags()
    add("license-state", license_state)
    add("ha-cluster-stack", B.s("ha_cluster_stack"))
    B.add_map("guest-agent-config", "guest_agent_config", writable=True)
    B.add_map("cpu_info", "cpu_info")
    B.bool_rw("policy-no-vendor-device", "policy_no_vendor_device")
    return rec
