"""``VM.allowed_operations`` on the ely and later release profiles, read over the ``XenAPI``
package, against the lists xapi of each profile's source computes (``data/releases.json``
``source``):

* ely (7.1) -- xen-api ``1.14-lcm`` ``ocaml/xapi/xapi_vm_lifecycle.ml``: Dundee's list
  (lines 503-507, no ``changing_NVRAM``), folded prepending; Dundee's check with
  ``VM_IS_IMMOBILE``/``VM_IS_USING_NESTED_VIRT`` (lines 360-380), the dom0 /
  control-domain split (lines 386-405; ``changing_static_range`` of a running control
  domain, line 42) and ``VM_LACKS_FEATURE`` (lines 165-178).

* stockholm (8.2) -- xen-api ``1.249-lcm`` ``ocaml/xapi/xapi_vm_lifecycle.ml``:
  ``update_allowed_operations`` folds the hand-written list of lines 742-773 (Dundee's and
  ``changing_NVRAM``), prepending, so the result is that list reversed; the check is
  ``check_operation_error`` (lines 431-721).
* xcp-ng-8.3 -- xen-api ``v24.19.2``: the list is ``allowable_ops``, the ``vm_operations``
  enum (``datamodel_vm.ml``) without ``ignored_ops`` (lines 752-776), so it holds
  ``metadata_export`` and ``create_vtpm`` and comes in the enum's order reversed; the check
  is 1.249-lcm's with ``VTPM_MAX_AMOUNT_REACHED`` (lines 721-731).

Each expected list below is worked out from those lines: the power-state table
(``allowed_power_states``, lines 32-98), templates (``check_template``: the memory / vCPU /
NVRAM settings, clone, copy, export, metadata_export, provision), snapshots
(``check_snapshot``: revert, clone, copy, export, destroy, hard_shutdown, metadata_export),
the control domain (lines 542-575), ``snapshot_with_quiesce`` always refused (VSS removed,
lines 585-591).
"""

from __future__ import annotations

import pytest
import XenAPI

from xapi_sim import scenario as scn_mod
from xapi_sim.cli import with_release
from xapi_sim.testing import running_world

# 1.249-lcm, reversed fold of lines 742-773
STOCKHOLM = {
    "running": [
        "changing_dynamic_range",
        "migrate_send",
        "pool_migrate",
        "changing_VCPUs_live",
        "suspend",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "checkpoint",
        "snapshot",
    ],
    "halted": [
        "changing_NVRAM",
        "changing_dynamic_range",
        "changing_shadow_memory",
        "changing_static_range",
        "make_into_template",
        "migrate_send",
        "destroy",
        "export",
        "start_on",
        "start",
        "clone",
        "copy",
        "snapshot",
    ],
    "suspended": [
        "migrate_send",
        "destroy",
        "export",
        "resume_on",
        "resume",
        "hard_shutdown",
        "checkpoint",
        "snapshot",
    ],
    "paused": ["hard_reboot", "hard_shutdown", "unpause", "checkpoint", "snapshot"],
    "default template": [
        "changing_NVRAM",
        "changing_dynamic_range",
        "changing_shadow_memory",
        "changing_static_range",
        "provision",
        "export",
        "clone",
        "copy",
    ],
    "snapshot": ["destroy", "export", "revert", "clone", "copy"],
    # dom0 runs changing_static_range too (lines 38-39, 563)
    "control domain": ["changing_dynamic_range", "changing_static_range"],
    # VM_IS_IMMOBILE (lines 518-527), VM_IS_USING_NESTED_VIRT (lines 528-538)
    "nested-virt": [
        "changing_VCPUs_live",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "snapshot",
    ],
}

# v24.19.2, the enum without ignored_ops, reversed
XCP_NG_83 = {
    "running": [
        "metadata_export",
        "changing_VCPUs_live",
        "changing_dynamic_range",
        "migrate_send",
        "pool_migrate",
        "suspend",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "checkpoint",
        "snapshot",
    ],
    "halted": [
        "create_vtpm",
        "destroy",
        "metadata_export",
        "export",
        "make_into_template",
        "changing_NVRAM",
        "changing_shadow_memory",
        "changing_static_range",
        "changing_dynamic_range",
        "migrate_send",
        "start_on",
        "start",
        "copy",
        "clone",
        "snapshot",
    ],
    "suspended": [
        "destroy",
        "metadata_export",
        "export",
        "migrate_send",
        "resume_on",
        "resume",
        "hard_shutdown",
        "checkpoint",
        "snapshot",
    ],
    "paused": [
        "metadata_export",
        "hard_reboot",
        "hard_shutdown",
        "unpause",
        "checkpoint",
        "snapshot",
    ],
    "default template": [
        "metadata_export",
        "export",
        "changing_NVRAM",
        "changing_shadow_memory",
        "changing_static_range",
        "changing_dynamic_range",
        "provision",
        "copy",
        "clone",
    ],
    "snapshot": ["destroy", "metadata_export", "export", "revert", "copy", "clone"],
    "control domain": ["metadata_export", "changing_static_range", "changing_dynamic_range"],
    "nested-virt": [
        "metadata_export",
        "changing_VCPUs_live",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "snapshot",
    ],
}

# 1.14-lcm: 1.249-lcm's lists without changing_NVRAM (not in its enum)
ELY = {kind: [op for op in ops if op != "changing_NVRAM"] for kind, ops in STOCKHOLM.items()}

EXPECTED = {"ely": ELY, "stockholm": STOCKHOLM, "xcp-ng-8.3": XCP_NG_83}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def release_lab(request):
    with running_world(with_release(scn_mod.default(), request.param)) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.15", "pytest")
        yield request.param, s.xenapi
        s.xenapi.session.logout()


def _by_name(x, name):
    return x.VM.get_by_name_label(name)[0]


def _kinds(x):
    """One VM of each kind, made through the API where the default world has none."""
    recs = x.VM.get_all_records()
    first = {}
    for ref, r in recs.items():
        if r["is_control_domain"]:
            first.setdefault("control domain", ref)
        elif (
            r["is_a_template"]
            and not r["is_a_snapshot"]
            # VM.is_default_template from falcon; before it the other_config key
            and (r.get("is_default_template") or r["other_config"].get("default_template"))
        ):
            first.setdefault("default template", ref)
    paused = _by_name(x, "web2")
    x.VM.pause(paused)
    snap = x.VM.snapshot(_by_name(x, "batch1"), "a snapshot")
    return {
        "running": _by_name(x, "web1"),
        "halted": _by_name(x, "batch1"),
        "suspended": _by_name(x, "legacy1"),
        "paused": paused,
        "snapshot": snap,
        **first,
    }


def test_allowed_operations_are_xapis_of_the_source(release_lab):
    name, x = release_lab
    kinds = _kinds(x)
    assert set(kinds) == set(EXPECTED[name]) - {"nested-virt"}
    for kind, vm in kinds.items():
        assert x.VM.get_allowed_operations(vm) == EXPECTED[name][kind], (name, kind)
        # the same list after an explicit recomputation
        x.VM.update_allowed_operations(vm)
        assert x.VM.get_allowed_operations(vm) == EXPECTED[name][kind], (name, kind)


def test_a_nested_virt_guest_is_immobile(release_lab):
    name, x = release_lab
    vm = x.VM.clone(_by_name(x, "batch1"), "nested")
    x.VM.add_to_platform(vm, "nested-virt", "true")
    x.VM.start(vm, False, False)
    x.VM.update_allowed_operations(vm)
    assert x.VM.get_allowed_operations(vm) == EXPECTED[name]["nested-virt"]
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_operation_valid(vm, "pool_migrate")
    assert e.value.details == ["VM_IS_IMMOBILE", vm]
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_operation_valid(vm, "changing_dynamic_range")
    assert e.value.details == ["VM_IS_USING_NESTED_VIRT", vm]
    x.VM.hard_shutdown(vm)
    assert "migrate_send" in x.VM.get_allowed_operations(vm)  # halted: mobile again


def test_refusals_name_the_later_codes(release_lab):
    name, x = release_lab
    dom0 = next(r for r, rec in x.VM.get_all_records().items() if rec["is_control_domain"])
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_operation_valid(dom0, "pause")
    assert e.value.details == [
        "OPERATION_NOT_ALLOWED",
        "This operation is not allowed on a control domain",
    ]
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_operation_valid(_by_name(x, "web1"), "snapshot_with_quiesce")
    assert e.value.details == ["VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", _by_name(x, "web1")]


def test_dom0_keeps_its_vcpus(release_lab):
    # 1.14-lcm lines 388-391 (1.249-lcm the same): changing_VCPUs of dom0 is refused after
    # the power state, which a control domain may be Running in (line 42)
    name, x = release_lab
    dom0 = next(r for r, rec in x.VM.get_all_records().items() if rec["is_control_domain"])
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_operation_valid(dom0, "changing_VCPUs")
    assert e.value.details == ["OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0"]
    x.VM.assert_operation_valid(dom0, "changing_static_range")


BARE = """
[[host]]
name_label = "h1"
[[vm]]
name_label = "bare"
power_state = "Running"
host = "h1"
pv_drivers = false
"""


def test_ely_guest_features_have_one_code():
    """1.14-lcm lines 152-178: an HVM guest without drivers lacks features with one code,
    ``VM_LACKS_FEATURE`` (Dundee's named codes are gone), for the calls and the list."""
    with running_world(with_release(scn_mod.loads(BARE), "ely")) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.6", "pytest")
        x = s.xenapi
        try:
            bare = _by_name(x, "bare")
            allowed = x.VM.get_allowed_operations(bare)
            for op in ("clean_shutdown", "clean_reboot", "suspend", "pool_migrate", "checkpoint"):
                assert op not in allowed, op
                with pytest.raises(XenAPI.Failure) as e:
                    x.VM.assert_operation_valid(bare, op)
                assert e.value.details == ["VM_LACKS_FEATURE", bare]
            with pytest.raises(XenAPI.Failure) as e:
                x.VM.clean_shutdown(bare)
            assert e.value.details == ["VM_LACKS_FEATURE", bare]
            assert "hard_shutdown" in allowed
        finally:
            s.xenapi.session.logout()
