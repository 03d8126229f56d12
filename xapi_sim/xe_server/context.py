"""One CLI command in flight: where it arrived, its session, parameters, printer, connection.

Every operation is an XAPI call made through ``Dispatcher.dispatch`` with the CLI's session
(``Context.call``), so behaviour lives in one place. Only the ref -> uuid/name index used to
print references reads the database directly, as XAPI's ``Ref_index`` does.
"""

from __future__ import annotations

from collections.abc import Callable

from ..datamodel import NULL_REF
from ..errors import Failure
from . import render as R
from .values import cli_bool


class Context:
    """One CLI command: where it arrived, its session, parameters, printer and connection."""

    def __init__(self, dispatcher, host, session, params, printer, conn=None):
        self.dispatcher = dispatcher
        self.host = host
        self.session = session
        self.params = params  # [(key, value)] in command-line order
        self.printer = printer
        self.conn = conn

    # API calls ---------------------------------------------------------------------------
    def call(self, method, *args):
        return self.dispatcher.dispatch(self.host, method, [self.session, *args])

    def call_or(self, fallback: Callable, method, *args):
        """An auxiliary call (a record field's value) whose message this simulator may not
        implement: on NOT_IMPLEMENTED -- or the INTERNAL_ERROR the generic getters give for
        custom ``get_*`` messages -- the value is computed by ``fallback`` instead."""
        try:
            return self.call(method, *args)
        except Failure as f:
            if f.code in ("NOT_IMPLEMENTED", "MESSAGE_METHOD_UNKNOWN", "INTERNAL_ERROR"):
                return fallback()
            raise

    # parameters --------------------------------------------------------------------------
    def has(self, key) -> bool:
        return any(k == key for k, _ in self.params)

    def get(self, key, default=None):
        for k, v in self.params:
            if k == key:
                return v
        return default

    def bool_param(self, key, default=False) -> bool:
        if not self.has(key):
            return default
        return cli_bool(key, self.get(key))

    # references --------------------------------------------------------------------------
    def lookup(self, ref):
        """(uuid, name_label or None) of any object of the pool database, or None."""
        if not isinstance(ref, str) or not ref.startswith("OpaqueRef:") or ref == NULL_REF:
            return None
        pool = self.host.pool
        if pool is None:
            return None
        db = pool.db
        for cls, table in db.tables.items():
            row = table.get(ref)
            if row is not None:
                name = (
                    row.get("name_label") if "name_label" in db.schema.classes[cls].fields else None
                )
                return row.get("uuid", ""), name
        return None

    def uuid_of(self, ref) -> str:
        return R.ref_uuid(self.lookup, ref)

    # protocol ----------------------------------------------------------------------------
    def send(self, cmd):
        self.conn.send(cmd)

    def receive(self):
        return self.conn.receive()
