"""Which VM operation rules a release runs: the one release table of ``checks/vm.py`` (pure
data).

Each release profile mirrors a xen-api source (``data/releases.json`` ``source``), and the
VM check (``ocaml/xapi/xapi_vm_lifecycle.ml``) changed between them. A :class:`VmRules`
names the source and holds what differs as data:

* ``operations`` -- the ``vm_operations`` enum of that source (``ocaml/idl/datamodel.ml``,
  later ``datamodel_vm.ml`` ``let operations``), in its order. ``data/datamodel.json``
  carries the newest enum (49 values); Dundee's is the 47 before ``changing_NVRAM`` (added
  with UEFI NVRAM, in 1.249-lcm's) and ``create_vtpm`` (the VTPM redesign, CP-39863, in
  v23.30.0's and v24.19.2's).
* ``update_ops`` -- the list ``update_allowed_operations`` folds: a hand-written list up to
  v23.30.0, from v24.14.0 (723a4983ab) ``API.vm_operations__all`` without ``ignored_ops``,
  so the enum's order.
* ``rpu_ops`` -- ``Xapi_globs.vm_operations_miami`` (Dundee) /
  ``Xapi_globs.rpu_allowed_vm_operations`` (later; ``migrate_send`` joined it before
  v23.30.0).
* ``unknown_strings`` -- the operations ``Record_util.vm_operation_table`` lacks, which
  print as "(unknown operation)".
* ``later`` -- the check of 1.249-lcm on (NVIDIA vGPU and SR-IOV rules, ``VM_HAS_VUSBS``,
  snapshot schedules, the RPU refusal, quiesce refused outright, ``has_definitely_booted_pv``,
  ``changing_NVRAM``, besides the three rules below); ``start_during_migrate_send``
  (``([`migrate_send], `start)``/``start_on`` in ``is_allowed_concurrently``, dropped by
  CA-322708 27239518a7, v1.268.0); ``pvh_is_pv`` (``has_definitely_booted_pv`` knows
  ``pvh``, CP-30367 1f1bf9d010, v23.9.0). The VTPM rule follows enum membership of
  ``create_vtpm``.
* ``immobility``, ``dom0_split``, ``lacks_feature`` -- what xen-api 1.14-lcm (ely, XenServer
  7.1) adds to Dundee's check, which it otherwise keeps (its ``xapi_vm_lifecycle.ml``;
  enum, ``update_allowed_operations`` list, ``vm_operations_miami``, concurrency, template
  and snapshot lists, ``Record_util`` table all Dundee's): ``VM_IS_IMMOBILE`` and
  ``VM_IS_USING_NESTED_VIRT`` (``is_mobile``/``nested_virt``, lines 266-301 and 360-380);
  the dom0 / control-domain split (lines 386-405) with a control domain's
  ``changing_VCPUs``/``changing_static_range``/``changing_memory_limits`` allowed Running
  (line 42); ``check_op_for_feature`` answering one code, ``VM_LACKS_FEATURE`` (lines
  165-178). Later sources keep all three.

:func:`rules_for` maps a datamodel release to its rules: before ``stockholm`` Dundee's
(cream's control-domain message is its own), from ``ely`` 1.14-lcm's (Dundee's with the
three flags), from ``stockholm`` 1.249-lcm's, from ``23.9.0``
v23.30.0's, from ``24.14.0`` v24.19.2's. Releases between two sources (databases played
back from real pools) take the earlier source's rules.
"""

from __future__ import annotations

import attrs

from ..datamodel import ENUMS, RELEASE_INDEX

# the newest enum (data/datamodel.json), which is v23.30.0's and v24.19.2's
_HEAD = tuple(ENUMS["vm_operations"])
_ADDED = ("changing_NVRAM", "create_vtpm")

DUNDEE_OPERATIONS = tuple(op for op in _HEAD if op not in _ADDED)
STOCKHOLM_OPERATIONS = tuple(op for op in _HEAD if op != "create_vtpm")
NILE_OPERATIONS = _HEAD

# 1.249-lcm xapi_vm_lifecycle.ml update_allowed_operations (lines 742-773); Dundee's is the
# same without changing_NVRAM, v23.30.0's adds create_vtpm (line 792)
DUNDEE_UPDATE = (
    "snapshot",
    "copy",
    "clone",
    "revert",
    "checkpoint",
    "snapshot_with_quiesce",
    "start",
    "start_on",
    "pause",
    "unpause",
    "clean_shutdown",
    "clean_reboot",
    "hard_shutdown",
    "hard_reboot",
    "suspend",
    "resume",
    "resume_on",
    "export",
    "destroy",
    "provision",
    "changing_VCPUs_live",
    "pool_migrate",
    "migrate_send",
    "make_into_template",
    "changing_static_range",
    "changing_shadow_memory",
    "changing_dynamic_range",
)
STOCKHOLM_UPDATE = (*DUNDEE_UPDATE, "changing_NVRAM")
NILE_UPDATE = (*STOCKHOLM_UPDATE, "create_vtpm")

# v24.19.2 xapi_vm_lifecycle.ml ignored_ops (lines 752-773): allowable_ops is the enum
# without these, in the enum's order
IGNORED_OPS = (
    "create_template",
    "power_state_reset",
    "csvm",
    "get_boot_record",
    "send_sysrq",
    "send_trigger",
    "query_services",
    "shutdown",
    "call_plugin",
    "changing_memory_live",
    "awaiting_memory_live",
    "changing_memory_limits",
    "changing_shadow_memory_live",
    "changing_VCPUs",
    "assert_operation_valid",
    "data_source_op",
    "update_allowed_operations",
    "import",
    "reverting",
)
XCP_NG_83_UPDATE = tuple(op for op in NILE_OPERATIONS if op not in IGNORED_OPS)

# Xapi_globs.vm_operations_miami (Dundee) = rpu_allowed_vm_operations (1.249-lcm)
MIAMI = (
    "assert_operation_valid",
    "changing_memory_live",
    "changing_shadow_memory_live",
    "changing_VCPUs_live",
    "clean_reboot",
    "clean_shutdown",
    "clone",
    "copy",
    "csvm",
    "destroy",
    "export",
    "get_boot_record",
    "hard_reboot",
    "hard_shutdown",
    "import",
    "make_into_template",
    "pause",
    "pool_migrate",
    "power_state_reset",
    "provision",
    "resume",
    "resume_on",
    "send_sysrq",
    "send_trigger",
    "start",
    "start_on",
    "suspend",
    "unpause",
    "update_allowed_operations",
)
# v23.30.0 / v24.19.2 xapi_globs.ml rpu_allowed_vm_operations: migrate_send added
RPU_WITH_MIGRATE_SEND = (*MIAMI[:16], "migrate_send", *MIAMI[16:])  # after make_into_template

# Record_util.vm_operation_table: what each source's table lacks
_UNKNOWN = ("create_template", "query_services", "changing_memory_limits", "changing_VCPUs")
DUNDEE_UNKNOWN = frozenset((*_UNKNOWN, "shutdown"))
STOCKHOLM_UNKNOWN = frozenset(_UNKNOWN)  # 1.249-lcm has shutdown, changing_NVRAM
NILE_UNKNOWN = frozenset((*_UNKNOWN, "shutdown"))  # v23.30.0's table lost shutdown again
XCP_NG_83_UNKNOWN = frozenset(_UNKNOWN)  # v24.19.2: shutdown back


@attrs.frozen
class VmRules:
    source: str  # the xen-api ref the rules are transcribed from
    operations: tuple[str, ...]
    update_ops: tuple[str, ...]
    rpu_ops: tuple[str, ...]
    unknown_strings: frozenset[str]
    later: bool
    start_during_migrate_send: bool
    pvh_is_pv: bool
    # the refusal of an operation on a control domain (before 1.249-lcm's dom0 split): 6.5's
    # source says "domain 0", Dundee's "control domain" (xapi_vm_lifecycle.ml line 331)
    control_domain_message: str = "Operations on control domain are not allowed"
    # 1.14-lcm's additions to Dundee's check (all later sources have them)
    immobility: bool = False
    dom0_split: bool = False
    lacks_feature: bool = False

    @property
    def vtpm(self) -> bool:
        """``create_vtpm`` and its rule (``VTPM_MAX_AMOUNT_REACHED``)."""
        return "create_vtpm" in self.operations


DUNDEE = VmRules(
    "203781a993^", DUNDEE_OPERATIONS, DUNDEE_UPDATE, MIAMI, DUNDEE_UNKNOWN, False, True, False
)
CREAM = attrs.evolve(
    DUNDEE, source="79e9af82c7^", control_domain_message="Operations on domain 0 are not allowed"
)
# 1.14-lcm: Dundee's enum, list, miami list and Record_util table (unchanged there), with
# the three rules it adds
ELY = attrs.evolve(DUNDEE, source="1.14-lcm", immobility=True, dom0_split=True, lacks_feature=True)
STOCKHOLM = VmRules(
    "1.249-lcm",
    STOCKHOLM_OPERATIONS,
    STOCKHOLM_UPDATE,
    MIAMI,
    STOCKHOLM_UNKNOWN,
    True,
    True,
    False,
    immobility=True,
    dom0_split=True,
    lacks_feature=True,
)
NILE = attrs.evolve(
    STOCKHOLM,
    source="v23.30.0",
    operations=NILE_OPERATIONS,
    update_ops=NILE_UPDATE,
    rpu_ops=RPU_WITH_MIGRATE_SEND,
    unknown_strings=NILE_UNKNOWN,
    start_during_migrate_send=False,
    pvh_is_pv=True,
)
XCP_NG_83 = attrs.evolve(
    NILE, source="v24.19.2", update_ops=XCP_NG_83_UPDATE, unknown_strings=XCP_NG_83_UNKNOWN
)

# The one release switch: (first datamodel release, rules), oldest first.
RELEASE_RULES = (
    ("ely", ELY),
    ("stockholm", STOCKHOLM),
    ("23.9.0", NILE),
    ("24.14.0", XCP_NG_83),
)


def rules_for(release: str) -> VmRules:
    """The VM rules of a datamodel release (``Schema.release``)."""
    idx = RELEASE_INDEX[release]
    rules = CREAM if idx < RELEASE_INDEX["dundee"] else DUNDEE
    for first, r in RELEASE_RULES:
        if idx >= RELEASE_INDEX[first]:
            rules = r
    return rules
