"""Pool operation checks: xen-api Dundee ``ocaml/xapi/xapi_pool_helpers.ml`` (pure).

Dundee's ``pool_allowed_operations`` has two values, ``ha_enable`` and ``ha_disable``
(cluster operations, designate_new_master and the update operations came later).
``valid_operations``, first error wins:

1. ``ha_enable`` in progress: ``HA_ENABLE_IN_PROGRESS []`` for both;
2. ``ha_disable`` in progress: ``HA_DISABLE_IN_PROGRESS []`` for both;
3. HA enabled: ``HA_IS_ENABLED []`` for ``ha_enable``, else ``HA_NOT_ENABLED []`` for
   ``ha_disable``.

There is no rolling-upgrade rule for the pool in Dundee (``Pool.enable_ha`` refuses
during an RPU in its own body, not here).
"""

from __future__ import annotations

from .operations import (
    POOL_OPERATION_STRINGS,
    ErrorTable,
    OpError,
    Row,
    Table,
    allowed_in,
    table_error,
)

OPERATIONS = ("ha_enable", "ha_disable")
ALL_OPERATIONS = OPERATIONS


def valid_operations(pool_ref: str, row: Row) -> Table:
    current = [op for _, op in row["current_operations"].items()]
    t = ErrorTable(ALL_OPERATIONS)
    if "ha_enable" in current:
        t.set_errors("HA_ENABLE_IN_PROGRESS", [], ["ha_enable"])
        t.set_errors("HA_ENABLE_IN_PROGRESS", [], ["ha_disable"])
    if "ha_disable" in current:
        t.set_errors("HA_DISABLE_IN_PROGRESS", [], ["ha_enable"])
        t.set_errors("HA_DISABLE_IN_PROGRESS", [], ["ha_disable"])
    if row["ha_enabled"]:
        t.set_errors("HA_IS_ENABLED", [], ["ha_enable"])
    else:
        t.set_errors("HA_NOT_ENABLED", [], ["ha_disable"])
    return t.table


def check_operation_error(pool_ref: str, row: Row, op: str) -> OpError | None:
    return table_error(
        valid_operations(pool_ref, row), op, "xapi_pool_helpers", POOL_OPERATION_STRINGS
    )


def allowed_operations(pool_ref: str, row: Row) -> list[str]:
    return allowed_in(valid_operations(pool_ref, row), ALL_OPERATIONS)
