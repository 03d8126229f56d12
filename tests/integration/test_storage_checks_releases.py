"""SR and VDI ``allowed_operations`` of the later releases over the XenAPI package, as
XenCenter and Xen Orchestra read them to enable their menu items, against the lists xapi
computes at each release's source (``checks/storage.py``): 8.2 = xen-api ``1.249-lcm``,
XCP-ng 8.3 = ``v24.19.2``, with 7.0 (``203781a993^``) for contrast.

The expected lists follow the sources' lines:

* SR: ``xapi_sr_operations.ml`` ``all_ops`` (1.249-lcm lines 38-59; v24.19.2 line 29, the
  enum) less what ``check_sm_features`` refuses through ``sm_cap_table`` (1.249-lcm lines
  84-99: VDI_MIRROR, VDI_CONFIG_CBT, VDI_RESET_ON_BOOT...) and ``SR_HAS_PBD`` for
  destroy/forget; ``safe_to_parallelise = [`plug]`` (line 207).
* VDI: ``xapi_vdi.ml`` ``update_allowed_operations_internal`` (1.249-lcm lines 487-509):
  ``pre_ely_vdi_operations`` (``xapi_globs.ml`` line 481) without blocked and force_unlock,
  each passing operation prepended; ``check_sm_feature_error`` (lines 27-60) for every
  operation; ``(`snapshot | `copy) when reset_on_boot`` (line 395).
"""

from __future__ import annotations

import pytest
from disk_kit import MiB, new_vdi
from session_kit import failure, logged_in

from xapi_sim import allowed
from xapi_sim.checks import storage
from xapi_sim.checks.operations import hashtbl_fold_order

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{v}"
"""

LATER = ("stockholm", "xcp-ng-8.3")
NULL = "OpaqueRef:NULL"

# the lvm SM of 8.2 and XenServer 8 (sm v2.30.7 / v3.2.12 LVHDSR CAPABILITIES) lacks
# VDI_INTRODUCE, VDI_GENERATE_CONFIG and VDI_RESIZE_ONLINE
LVM_SR_LATER = {
    "scan",
    "plug",
    "unplug",
    "vdi_create",
    "vdi_destroy",
    "vdi_resize",
    "vdi_clone",
    "vdi_snapshot",
    "vdi_mirror",
    "vdi_enable_cbt",
    "vdi_disable_cbt",
    "vdi_data_destroy",
    "vdi_list_changed_blocks",
    "vdi_set_on_boot",
    "update",
    "pbd_create",
    "pbd_destroy",
}
# 7.0's LVHDSR had no VDI_MIRROR, 7.0's xapi no CBT or set_on_boot operation
LVM_SR_DUNDEE = LVM_SR_LATER - {
    "vdi_mirror",
    "vdi_enable_cbt",
    "vdi_disable_cbt",
    "vdi_data_destroy",
    "vdi_list_changed_blocks",
    "vdi_set_on_boot",
}
# the tools SR (iso, is_tools_sr): no VDI_CREATE/VDI_DELETE for it, the iso SM has none of
# the other capabilities
TOOLS_SR = {"scan", "plug", "unplug", "vdi_clone", "pbd_create", "pbd_destroy"}


def _srs(x):
    out = {}
    for ref, rec in x.SR.get_all_records().items():
        if rec["type"] == "lvm":
            out["lvm"] = ref
        elif rec["is_tools_sr"]:
            out["tools"] = ref
    return out


def _all_ops(release):
    return {
        "stockholm": storage.sr_all_operations(cbt_ops=True, mirror_op=True),
        "xcp-ng-8.3": storage.sr_all_operations(enum_order=True),
        "dundee": storage.sr_all_operations(mirror_op=True),
    }[release]


@pytest.mark.parametrize("release", LATER + ("dundee",))
def test_sr_allowed_operations(release):
    with logged_in(WORLD.format(v=release)) as (w, s):
        x = s.xenapi
        srs = _srs(x)
        lvm = x.SR.get_allowed_operations(srs["lvm"])
        assert set(lvm) == (LVM_SR_DUNDEE if release == "dundee" else LVM_SR_LATER)
        assert set(x.SR.get_allowed_operations(srs["tools"])) == TOOLS_SR
        # the order of xapi's Hashtbl.fold over the release's all_ops
        order = hashtbl_fold_order(_all_ops(release))
        assert lvm == [op for op in order if op in lvm]


@pytest.mark.parametrize("release", LATER + ("dundee",))
def test_sr_plug_beside_plugs(release):
    """With a PBD.plug in progress, 8.2 on lets another plug start; 7.0 serialised all."""
    with logged_in(WORLD.format(v=release)) as (w, s):
        x = s.xenapi
        sr = _srs(x)["lvm"]
        db = w.world.pools[0].db
        with db.lock:
            db.set("SR", sr, "current_operations", {"OpaqueRef:plugging": "plug"})
            allowed.refresh_allowed(w.world, db, "SR", sr)
        assert x.SR.get_allowed_operations(sr) == ([] if release == "dundee" else ["plug"])
        with db.lock:
            db.set("SR", sr, "current_operations", {})
            allowed.refresh_allowed(w.world, db, "SR", sr)
        assert set(x.SR.get_allowed_operations(sr)) >= {"plug", "scan"}


@pytest.mark.parametrize("release", LATER)
def test_sr_during_a_rolling_upgrade(release):
    """``disallowed_during_rpu``: what all_rpu_ops lacks (mirror, CBT, set_on_boot)."""
    with logged_in(WORLD.format(v=release)) as (w, s):
        x = s.xenapi
        sr = _srs(x)["lvm"]
        pool = x.pool.get_all()[0]
        x.pool.add_to_other_config(pool, "rolling_upgrade_in_progress", "true")
        allowed.refresh_storage_allowed(w.world, w.world.pools[0].db)
        assert set(x.SR.get_allowed_operations(sr)) == LVM_SR_DUNDEE


# a fresh lvm VDI: generate_config and resize_online need capabilities lvm lacks
VDI_LATER = ["update", "forget", "destroy", "snapshot", "resize", "copy", "clone"]
# 7.0: Xapi_vdi.update_allowed_operations' list (203781a993^ line 220) reversed
VDI_DUNDEE = ["forget", "update", "resize", "destroy", "clone", "copy", "snapshot"]


@pytest.mark.parametrize("release", LATER + ("dundee",))
def test_vdi_allowed_operations(release):
    with logged_in(WORLD.format(v=release)) as (w, s):
        x = s.xenapi
        srs = _srs(x)
        vdi = new_vdi(s, srs["lvm"], 4 * MiB)
        later = release != "dundee"
        assert x.VDI.get_allowed_operations(vdi) == (VDI_LATER if later else VDI_DUNDEE)
        # the tools ISO: its SM has no VDI_SNAPSHOT, which 8.2 on requires
        tools_vdi = x.SR.get_VDIs(srs["tools"])[0]
        tools = x.VDI.get_allowed_operations(tools_vdi)
        assert tools == (["forget", "copy"] if later else ["forget", "copy", "snapshot"])


@pytest.mark.parametrize("release", LATER + ("dundee",))
def test_vdi_on_boot_reset(release):
    """CA-348700: no copy of an ``on_boot=reset`` VDI (7.1's 1.14-lcm on)."""
    with logged_in(WORLD.format(v=release)) as (w, s):
        x = s.xenapi
        sr = _srs(x)["lvm"]
        vdi = new_vdi(s, sr, 4 * MiB)
        x.VDI.set_on_boot(vdi, "reset")
        ops = x.VDI.get_allowed_operations(vdi)
        assert "snapshot" not in ops and "clone" in ops
        assert failure(x.VDI.snapshot, vdi, {}) == ["VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"]
        if release == "dundee":
            assert "copy" in ops
            copy = x.VDI.copy(vdi, sr, NULL, NULL)
            assert x.VDI.get_virtual_size(copy) == str(4 * MiB)
        else:
            assert "copy" not in ops
            before = set(x.SR.get_VDIs(sr))
            assert failure(x.VDI.copy, vdi, sr, NULL, NULL) == [
                "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"
            ]
            assert set(x.SR.get_VDIs(sr)) == before  # nothing created
        x.VDI.set_on_boot(vdi, "persist")
        assert "copy" in x.VDI.get_allowed_operations(vdi)
