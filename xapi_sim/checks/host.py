"""Host operation checks: xen-api Dundee ``ocaml/xapi/xapi_host_helpers.ml`` (pure).

:func:`valid_operations` is ``Xapi_host_helpers.valid_operations``: a first-error-wins table
(:class:`~.operations.ErrorTable`) filled by these rules, in this order:

1. operations that create VMs (``provision``, ``vm_resume``, ``vm_migrate``) and those that
   remove them (``evacuate``, ``reboot``, ``shutdown``) exclude each other ->
   ``OTHER_OPERATION_IN_PROGRESS ["host", host, <first current op>]`` (``vm_start`` is in
   neither group; ``power_on`` is exempt);
2. ``reboot`` and ``shutdown`` exclude each other; a ``provision`` in progress excludes
   another (same error, naming that operation);
3. an enabled host: ``HOST_NOT_DISABLED []`` for ``reboot``, ``shutdown``;
4. a live host: ``HOST_IS_LIVE [host]`` for ``power_on`` (skipped if the metrics row is
   missing); ``power_on_mode = ""``: ``HOST_POWER_ON_MODE_DISABLED []``; the power-on plugin
   missing from dom0: ``XENAPI_MISSING_PLUGIN ["power-on-host"]``;
5. with plugged clustered SRs: any host down, or a recovering SR (its health-check task),
   gives ``CLUSTERED_SR_DEGRADED`` for ``shutdown``, ``reboot``.

``assert_operation_valid`` raises the operation's entry; ``update_allowed_operations``
keeps the operations without an error and, during a rolling upgrade, only those on the
"Miami" list (``Xapi_globs.host_operations_miami``: ``evacuate``, ``provision``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .operations import (
    HOST_OPERATION_STRINGS,
    OTHER_OPERATION_IN_PROGRESS,
    ErrorTable,
    OpError,
    Row,
    Table,
    allowed_in,
    intersect,
    table_error,
)

# host_allowed_operations in Dundee's datamodel.ml (enum order)
OPERATIONS = (
    "provision",
    "evacuate",
    "shutdown",
    "reboot",
    "power_on",
    "vm_start",
    "vm_resume",
    "vm_migrate",
)
# Xapi_host_helpers.all_operations (table order)
ALL_OPERATIONS = (
    "provision",
    "evacuate",
    "reboot",
    "shutdown",
    "vm_start",
    "vm_resume",
    "vm_migrate",
    "power_on",
)
MIAMI = ("evacuate", "provision")  # Xapi_globs.host_operations_miami
POWER_ON_PLUGIN = "power-on-host"  # Constants.power_on_plugin

_CREATING = ("provision", "vm_resume", "vm_migrate")
_REMOVING = ("evacuate", "reboot", "shutdown")


def operation_to_string(op: str) -> str:
    return HOST_OPERATION_STRINGS[op]


def valid_operations(
    host_ref: str,
    row: Row,
    *,
    live: bool | None,
    power_on_plugin: bool = True,
    plugged_clustered_srs: Iterable[str] = (),
    hosts_down: bool = False,
    recovering_tasks: Iterable[str] = (),
) -> Table:
    """``valid_operations``: {op: None or (code, params)} for every host operation.

    Facts: ``live`` -- ``host_metrics.live`` (None if the metrics row is missing);
    ``power_on_plugin`` -- dom0 has the power-on plugin (a XenServer install does);
    ``plugged_clustered_srs`` -- refs of clustered SRs with a plugged PBD;
    ``hosts_down`` -- some host_metrics row says not live; ``recovering_tasks`` -- the
    ``name_description`` of health-check tasks of those SRs."""
    current = [op for _, op in row["current_operations"].items()]
    t = ErrorTable(ALL_OPERATIONS)
    creating = any(op in _CREATING for op in current)
    removing = any(op in _REMOVING for op in current)
    for op in ALL_OPERATIONS:
        if op == "power_on":
            continue
        if (op in _CREATING and removing) or (op in _REMOVING and creating):
            t.set_errors(
                OTHER_OPERATION_IN_PROGRESS,
                ["host", host_ref, operation_to_string(current[0])],
                [op],
            )
    if "reboot" in current:
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["host", host_ref, operation_to_string("reboot")],
            ["shutdown"],
        )
    if "shutdown" in current:
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["host", host_ref, operation_to_string("shutdown")],
            ["reboot"],
        )
    if "provision" in current:
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["host", host_ref, operation_to_string("provision")],
            ["provision"],
        )
    if row["enabled"]:
        t.set_errors("HOST_NOT_DISABLED", [], ["reboot", "shutdown"])
    if live:
        t.set_errors("HOST_IS_LIVE", [host_ref], ["power_on"])
    if row.get("power_on_mode", "") == "":
        t.set_errors("HOST_POWER_ON_MODE_DISABLED", [], ["power_on"])
    if not power_on_plugin:
        t.set_errors("XENAPI_MISSING_PLUGIN", [POWER_ON_PLUGIN], ["power_on"])
    srs = list(plugged_clustered_srs)
    if srs:
        if hosts_down:
            t.set_errors("CLUSTERED_SR_DEGRADED", [srs[0]], ["shutdown", "reboot"])
        tasks = list(recovering_tasks)
        if tasks:
            t.set_errors("CLUSTERED_SR_DEGRADED", [tasks[0]], ["shutdown", "reboot"])
    return t.table


def check_operation_error(host_ref: str, row: Row, op: str, **facts: Any) -> OpError | None:
    """``assert_operation_valid`` as a value: None or ``(code, params)``."""
    return table_error(
        valid_operations(host_ref, row, **facts), op, "xapi_host_helpers", HOST_OPERATION_STRINGS
    )


def allowed_operations(host_ref: str, row: Row, *, rpu: bool = False, **facts: Any) -> list[str]:
    """``update_allowed_operations`` (xapi's hash-table order; the Miami list only during
    a rolling upgrade)."""
    ok = allowed_in(valid_operations(host_ref, row, **facts), ALL_OPERATIONS)
    return intersect(ok, MIAMI) if rpu else ok


def records_operation(op: str, rpu: bool) -> bool:
    """``with_host_operation``'s ``operation_allowed``: during a rolling upgrade only
    Miami operations are recorded in ``current_operations``."""
    return not rpu or op in MIAMI
