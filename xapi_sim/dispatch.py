"""Method resolution and XAPI's fixed check order for every call.

Mirrors xen-api ``ocaml/idl/ocaml_backend/gen_server.ml`` (``operation``) and
``ocaml/xapi/server_helpers.ml``: strip ``Async.``; match ``Class.msg`` or ``Class_msg``;
parameter count (before the session, counts excluding the session); unmarshal every argument;
session check (``SESSION_INVALID``, ``HOST_IS_SLAVE`` on a member); async mode; removed
messages (``MESSAGE_REMOVED``); then the operation. Unknown names with parameters go down the
extension path: the first parameter is session-checked before ``MESSAGE_METHOD_UNKNOWN``.

Generic messages (getters, setters, map/set edits, records, ``get_all*``, ``get_by_*``,
implicit create/destroy) are built from the datamodel; behaviour modules register custom
handlers with ``@api("Class.msg")`` and win over the generic ones.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import where
from .datamodel import NO_ASYNC, NO_ASYNC_CLASSES, Message, Schema
from .errors import Failure, NotQuick, internal
from .faults import Faults, wrap
from .sessions import local_session_valid, touch
from .tasks import Tasks, run_transaction
from .wire.values import Shared, convert, is_alive, rpc_to_string

log = logging.getLogger(__name__)

Handler = Callable[..., Any]  # handler(call, *args) -> the call's result
_H = TypeVar("_H", bound=Handler)

REGISTRY: dict[str, Handler] = {}  # "Class.msg" -> handler
CONTROL: dict[str, tuple[Handler, int]] = {}  # "sim.x" -> (handler, params incl. session)
# Messages whose trailing parameters have defaults: wire name -> mandatory count (with session).
OPTIONAL_TAIL = {
    "session.login_with_password": 2,
    # parameters added after Dundee carry defaults (datamodel param_release),
    # so Dundee-era clients calling with the old arity are accepted
    "host.evacuate": 2,
    "VM.migrate_send": 6,
    "VM.assert_can_migrate": 6,
    "VM.snapshot": 3,
}
# Messages callable without a session (first parameter is not a session ref).
SESSIONLESS = {"session.login_with_password", "session.slave_local_login_with_password"}


def api(*names: str) -> Callable[[_H], _H]:
    """Register a hand-written handler for one or more wire names."""

    def deco(fn: _H) -> _H:
        for n in names:
            REGISTRY[n] = fn
        return fn

    return deco


def control(name: str, nparams: int) -> Callable[[_H], _H]:
    """Register a control-API (``sim.*``) handler taking ``nparams`` (session included)."""

    def deco(fn: _H) -> _H:
        CONTROL[name] = (fn, nparams)
        return fn

    return deco


class Call:
    """What a handler knows about the call: world, local host, pool, session, task, and
    whether its caller accepts a ``Deferred`` result (``can_defer``: the HTTP front does)."""

    __slots__ = ("world", "host", "pool", "db", "session", "name", "task", "message", "can_defer")

    def __init__(self, world, host, name, message=None):
        self.world = world
        self.host = host
        self.pool = host.pool
        self.db = host.pool.db
        self.session = None
        self.name = name
        self.task = None
        self.message = message
        self.can_defer = False

    def check_cancelled(self):
        """Raise TASK_CANCELLED if a ``task.cancel`` reached this call's task."""
        if self.task:
            row = self.db.tables["task"].get(self.task)
            if row is not None and "cancel" in row["current_operations"].values():
                raise Failure("TASK_CANCELLED", self.task)


class Deferred:
    """A result a handler gives later -- a long-poll parked without a thread
    (``event.from``) -- returned only to callers that asked for it (``Dispatcher.dispatch``
    with ``defer_ok``). The caller calls ``start(finish)`` once; ``finish(ok, value)`` is
    then called exactly once, from any thread: ``(True, result)`` or ``(False, the failure's
    description)``."""

    def start(self, finish: Callable[[bool, Any], None]) -> None:
        raise NotImplementedError


_batch = threading.local()


@contextlib.contextmanager
def answering_batch() -> Iterator[None]:
    """Around one thread's answers to many parked calls (the event ``Pump``): the wire
    layer queues each reply (``queue_reply``) instead of writing it at once, and when the
    block ends every queued reply is written in one tight pass, then each connection handed
    back. Fifty replies go out as one burst: a client reading them is woken once and finds
    them all, where replies written one by one between the Python of each answer woke it
    (and on a VM, its idle CPU) for each."""
    if getattr(_batch, "items", None) is not None:
        yield  # nested: the outer batch writes them
        return
    items: list[Any] = []
    _batch.items = items
    try:
        yield
    finally:
        _batch.items = None
        for item in items:
            try:
                item.write()
            except Exception:  # noqa: BLE001 -- the other replies must still go out
                log.exception("answering a batch: writing a reply failed")
        for item in items:
            try:
                item.done()
            except Exception:  # noqa: BLE001
                log.exception("answering a batch: handing a connection back failed")


def queue_reply(item) -> bool:
    """Queue ``item`` (``write()`` then, after every item's write, ``done()``) on this
    thread's answering batch; False outside one."""
    items = getattr(_batch, "items", None)
    if items is None:
        return False
    items.append(item)
    return True


class Bare:
    """A result sent without the Status envelope over XML-RPC (system.listMethods)."""

    def __init__(self, value):
        self.value = value


# Characters XAPI's parameter check refuses: invalid UTF-8 (undecodable bytes reach us as
# lone surrogates), UCS non-characters (U+FDD0..U+FDEF, U+nFFFE, U+nFFFF) and the control
# characters XML forbids (below 0x20 except tab, LF, CR).
_BAD_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(chr(p * 0x10000 + 0xFFFE) + chr(p * 0x10000 + 0xFFFF) for p in range(17))
    + "]"
)


def _utf8_ok(v) -> bool:
    if type(v) is str and v.isascii() and v.isprintable():
        return True  # the usual case: printable ASCII has none of those characters
    if isinstance(v, str):
        return _BAD_CHARS.search(v) is None
    if isinstance(v, list):
        return all(_utf8_ok(x) for x in v)
    if isinstance(v, dict):
        return all(_utf8_ok(k) and _utf8_ok(x) for k, x in v.items())
    if isinstance(v, (bytes, bytearray)):
        return _utf8_ok(bytes(v).decode("utf-8", "surrogateescape"))
    return True


def _check_utf8(params):
    """Step 0 of every call (``gen_server.ml`` dispatch_call, Dundee): each parameter's
    ``Rpc.to_string`` rendering must pass ``Encodings.UTF8_XML.is_valid``, else
    ``INVALID_VALUE ["Invalid UTF-8 string in parameter", rendering]``."""
    for p in params:
        if not _utf8_ok(p):
            raise Failure("INVALID_VALUE", "Invalid UTF-8 string in parameter", rpc_to_string(p))


def _converter(ty) -> Callable[[Any], Any]:
    """``convert`` for one parameter type, with a direct path for the commonest kinds (a
    string or a reference arriving as a plain string)."""
    if ty.kind in ("string", "ref"):

        def conv_str(v, ty=ty):
            return v if type(v) is str else convert(ty, v)

        return conv_str

    def conv(v, ty=ty):
        return convert(ty, v)

    return conv


class Plan:
    """What resolving one wire name against one release's schema yields, computed once
    (``Dispatcher.plan``): the message, its arity rule, whether it takes a session, its
    async capability and one converter per parameter. The handler is still looked up per
    call (``REGISTRY`` first), so a registration made later -- or a test's wrapper -- wins
    at once."""

    __slots__ = (
        "msg",
        "wire",
        "nparams",
        "mandatory",
        "takes_session",
        "adjust",
        "convs",
        "async_ok",
        "sync_task",
        "quick",
        "quick_write",
    )

    def __init__(self, msg: Message, fields=()):
        self.msg = msg
        self.wire = msg.wire_name
        self.nparams = len(msg.params)
        self.mandatory = OPTIONAL_TAIL.get(self.wire, self.nparams)
        self.takes_session = self.wire not in SESSIONLESS and msg.takes_session
        self.adjust = 1 if self.takes_session else 0
        self.convs = [_converter(p.type) for p in msg.params]
        self.async_ok = async_capable(msg)
        self.sync_task = self.async_ok and not msg.implicit
        # a generic read of one row (a field, the record, the ref of a UUID): lock-free and
        # bounded, so the front may run it on its loop thread (``dispatch(inline=True)``)
        name = msg.name
        self.quick = bool(
            msg.implicit
            and not msg.removed
            and (
                name in ("get_record", "get_by_uuid") or (name[:4] == "get_" and name[4:] in fields)
            )
        )
        # a generic write of one field (set_, add_to_, remove_from_, add_, remove_): one
        # row under one database lock -- quick when that lock is free (``Txn.nowait``)
        self.quick_write = bool(
            msg.implicit
            and not msg.removed
            and any(
                name.startswith(p) and name[len(p) :] in fields
                for p in ("set_", "add_to_", "remove_from_", "add_", "remove_")
            )
        )


def async_capable(m: Message) -> bool:
    """XAPI gives an async mode to custom messages and create/destroy (§5), never to
    getters, setters, records, nor to messages of session, event, task, data_source, blob."""
    if m.cls in NO_ASYNC_CLASSES or m.name in NO_ASYNC.get(m.cls, ()):
        return False
    return not m.implicit or m.name in ("create", "destroy")


class Dispatcher:
    def __init__(self, world):
        self.world = world
        self._generic_cache = {}
        self._plans: dict = {}  # (schema, wire name as called) -> Plan; known names only

    def plan(self, schema: Schema, name: str) -> Plan | None:
        """The call plan of ``name`` in ``schema`` (None: no such message). Only names the
        schema knows are kept, so the cache is bounded by the datamodel."""
        key = (schema, name)
        plan = self._plans.get(key)
        if plan is None:
            msg = schema.message(name)
            if msg is None:
                return None
            cls = schema.classes.get(msg.cls)
            plan = self._plans[key] = Plan(msg, cls.fields if cls is not None else ())
        return plan

    # -- entry point ---------------------------------------------------------------------
    def dispatch(self, host, method: str, params: list, defer_ok: bool = False, inline=False):
        """Run one call arriving at ``host``'s endpoint; returns the value or raises Failure.
        ``defer_ok``: the caller can take a ``Deferred`` (a long-poll parked without a
        thread); other callers always get the value itself. ``inline``: the caller is the
        HTTP front's loop thread, which must never block -- anything but a quick read
        (``Plan.quick``, no injected fault, no journal, no session write due) raises
        ``NotQuick`` before it has done anything, and a worker runs the call instead."""
        _check_utf8(params)
        is_async = method.startswith("Async.")
        name = method[6:] if is_async else method
        if name.startswith("InternalAsync."):
            is_async, name = True, name[len("InternalAsync.") :]
        if name == "system.listMethods":
            return Bare(self.list_methods(host))
        if name.startswith("system.isAlive:"):
            return is_alive(params)  # no session; a bounded echo
        if name in CONTROL:
            if inline:
                raise NotQuick
            return self._control(host, name, params)
        schema: Schema = host.pool.schema
        plan = self.plan(schema, name)
        if inline and (plan is None or not (plan.quick or plan.quick_write) or is_async):
            raise NotQuick
        if plan is None:
            if params:
                self.check_session(host, params[0])
            raise Failure("MESSAGE_METHOD_UNKNOWN", name)
        msg, wire, nparams, mandatory = plan.msg, plan.wire, plan.nparams, plan.mandatory
        n = len(params)
        if n < mandatory or (mandatory == nparams and n != nparams):
            adjust = plan.adjust
            raise Failure("MESSAGE_PARAMETER_COUNT_MISMATCH", wire, mandatory - adjust, n - adjust)
        if n > nparams:
            params = params[:nparams]
        args = [conv(v) for conv, v in zip(plan.convs, params, strict=False)]
        faults = self.world.existing_service(Faults)
        if inline and (
            (faults is not None and faults.rules)
            or wire in REGISTRY
            or self.world.txm.always_hook
            or (plan.quick_write and host.pool.db.parked)
        ):
            # (a write with long-polls parked on its database answers them at its commit:
            # a worker does that, and sends their replies while the loop goes on)
            raise NotQuick
        call = Call(self.world, host, wire, msg)
        call.can_defer = defer_ok
        if plan.takes_session:
            call.session = self.check_session(host, args[0], inline)
            args = args[1:]
        if is_async and not plan.async_ok:
            raise Failure("Fault", f"No async mode for this operation (rpc: {wire})")
        if msg.removed:
            raise Failure("MESSAGE_REMOVED")
        handler = REGISTRY.get(wire)
        if handler is None:
            handler = self.generic(msg)
            if plan.quick and not (faults is not None and faults.rules) and not is_async:
                if not self.world.txm.always_hook:
                    # a read of one committed row: no lock, no write, nothing to publish,
                    # so no transaction (the journal's hook still sees every other call)
                    return handler(call, *args)
        if faults is not None and faults.rules:
            # injected faults (sim.fault_add): after every check, before the operation;
            # for Async calls inside the task
            handler = wrap(faults, handler, method)
        if is_async:
            return self.world_tasks().run_async(call, handler, args, "Async." + wire)
        if plan.sync_task:
            return self.world_tasks().run_sync(call, handler, args, wire)
        return run_transaction(self.world, handler, call, args, nowait=inline)

    def world_tasks(self):
        return Tasks.of(self.world)

    # -- sessions ------------------------------------------------------------------------
    def check_session(self, host, ref, nowait=False):
        """``Session_check.check``: SESSION_INVALID, then HOST_IS_SLAVE on a pool member.
        ``nowait``: raise ``NotQuick`` rather than write the session's ``last_active``."""
        if not isinstance(ref, str):
            ref = str(ref)
        db = host.pool.db
        row = db.tables["session"].get(ref)
        if row is None:
            if local_session_valid(self.world, host, ref):
                return ref
            raise Failure("SESSION_INVALID", ref)
        if not host.is_master and not row["pool"]:
            raise Failure("HOST_IS_SLAVE", host.pool.master.address)
        if host.is_master:
            touch(self.world, db, ref, row, nowait)
        return ref

    # -- control API ---------------------------------------------------------------------
    def _control(self, host, name, params):
        fn, n = CONTROL[name]
        if len(params) != n:
            raise Failure("MESSAGE_PARAMETER_COUNT_MISMATCH", name, n - 1, len(params) - 1)
        found = self.world.find_session(params[0]) if isinstance(params[0], str) else None
        if found is None:
            raise Failure("SESSION_INVALID", str(params[0]))
        call = Call(self.world, host, name)
        call.session = params[0]
        faults = self.world.existing_service(Faults)
        if faults is not None and faults.rules:
            fn = wrap(faults, fn, name)
        return run_transaction(self.world, fn, call, params[1:])

    # -- introspection -------------------------------------------------------------------
    def list_methods(self, host):
        """Every synchronous wire name this endpoint serves (no Async., no sim.*)."""
        schema = host.pool.schema
        out = []
        for cname, c in schema.classes.items():
            for mname in c.messages:
                out.append(f"{cname}.{mname}")
        out.append("system.listMethods")
        return out

    # -- generic messages ----------------------------------------------------------------
    def generic(self, msg: Message):
        key = (id(msg), msg.wire_name)
        fn = self._generic_cache.get(key)
        if fn is None:
            fn = self._generic_cache[key] = _make_generic(msg)
        return fn


_Hook = Callable[[Any, str], None]
_FIELD_HOOKS: dict[tuple[str, str], list[_Hook]] = {}


def after_write(cls: str, field: str) -> Callable[[_Hook], _Hook]:
    """Register ``fn(call, ref)`` to run after a datamodel setter or map/set edit of
    ``cls.field`` (``set_``, ``add_to_``, ``remove_from_``, ``add_``, ``remove_``), in the
    same transaction: what xapi does in reaction to the field changing, e.g. a watcher
    thread that follows the record's events."""

    def deco(fn: _Hook) -> _Hook:
        _FIELD_HOOKS.setdefault((cls, field), []).append(fn)
        return fn

    return deco


def _written(call, cls: str, field: str, ref: str) -> None:
    for fn in _FIELD_HOOKS.get((cls, field), ()):
        fn(call, ref)


def shared_records(db, cls):
    """``<class>.get_all_records``: every row of ``cls``, as one ``Shared`` result for as long
    as the class does not change -- clients asking at once (or again) get the same object,
    which each codec encodes once: however many ask, the reply is made and held once. The
    snapshot is taken under the database lock, so it holds committed rows only."""
    with db.reading():
        gen = db.class_gen.get(cls, 0)
        kept = db.snapshots.get(cls)
        if kept is not None and kept[0] == gen:
            got = kept[1]()
            if got is not None:
                return got
        got = Shared(db.rows(cls))
        db.snapshots[cls] = (gen, weakref.ref(got))
        return got


def _make_generic(msg: Message):
    cls, name = msg.cls, msg.name

    if name == "get_record":
        return lambda call, ref: call.db.get(cls, ref)
    if name == "get_by_uuid":
        return lambda call, uuid: call.db.by_uuid(cls, uuid)
    if name == "get_by_name_label":
        return lambda call, label: call.db.by_label(cls, label)
    if name == "get_all":
        return lambda call: call.db.refs(cls)
    if name == "get_all_records":
        return lambda call: shared_records(call.db, cls)
    if name in ("get_all_records_where", "get_all_where"):
        records = name == "get_all_records_where"

        def where_fn(call, expr):
            # Parse errors: Db_filter.Expression_error -> INVALID_VALUE [expr, exn text];
            # an unknown column: DBCache_NotFound ("missing field", f, "") -> INTERNAL_ERROR
            # ["missing field", f, ""] (ocaml/xapi/exnHelper.ml error_of_exn).
            try:
                tree = where.parse(expr)
            except where.WhereError as e:
                raise Failure("INVALID_VALUE", expr, str(e)) from None
            try:
                rows = [
                    (r, row) for r, row in call.db.rows(cls) if where.evaluate(tree, row, r, cls)
                ]
            except where.MissingField as e:
                raise Failure("INTERNAL_ERROR", "missing field", e.name, "") from None
            return dict(rows) if records else [r for r, _ in rows]

        return where_fn
    if name == "create" and msg.implicit:
        return _generic_create(cls)
    if name == "destroy" and msg.implicit:

        def destroy(call, ref):
            call.db.remove(cls, ref)

        return destroy

    def not_implemented(call, *args):
        raise Failure("NOT_IMPLEMENTED", msg.wire_name)

    if not msg.implicit:
        # a custom message whose name merely looks like an accessor (SR.get_supported_types,
        # pool.get_license_state): not a field, and not modelled here
        return not_implemented

    def field_of(prefix):
        return name[len(prefix) :]

    if name.startswith("get_"):
        f = field_of("get_")
        return lambda call, ref: call.db.get(cls, ref)[f]
    if name.startswith("set_"):
        f = field_of("set_")

        def setter(call, ref, value):
            call.db.get(cls, ref)
            call.db.set(cls, ref, f, value)
            _written(call, cls, f, ref)

        return setter
    if name.startswith("add_to_"):
        f = field_of("add_to_")

        def add_to(call, ref, key, value):
            with call.db.lock:
                row = call.db.get(cls, ref)
                if key in row[f]:
                    # db_cache_impl.ml process_structured_field_locked raises
                    # Duplicate_key (table, DB column name, objref, key): the third parameter
                    # is the object's *ref* (ocaml/database/database_test.ml checks exactly
                    # that), the field is the DB column (``HVM__boot_params``).
                    raise Failure("MAP_DUPLICATE_KEY", cls, where.db_name(cls, f), ref, key)
                call.db.set(cls, ref, f, {**row[f], key: value})
                _written(call, cls, f, ref)

        return add_to
    if name.startswith("remove_from_"):
        f = field_of("remove_from_")

        def remove_from(call, ref, key):
            with call.db.lock:
                row = call.db.get(cls, ref)
                if key in row[f]:
                    m = dict(row[f])
                    del m[key]
                    call.db.set(cls, ref, f, m)
                    _written(call, cls, f, ref)

        return remove_from
    if name.startswith("add_"):
        f = field_of("add_")

        def add(call, ref, value):
            with call.db.lock:
                row = call.db.get(cls, ref)
                if value not in row[f]:
                    call.db.set(cls, ref, f, row[f] + [value])
                    _written(call, cls, f, ref)

        return add
    if name.startswith("remove_"):
        f = field_of("remove_")

        def remove(call, ref, value):
            with call.db.lock:
                row = call.db.get(cls, ref)
                if value in row[f]:
                    call.db.set(cls, ref, f, [v for v in row[f] if v != value])
                    _written(call, cls, f, ref)

        return remove
    return not_implemented


def _generic_create(cls):
    """``<class>.create(record)``: StaticRO+RW fields; defaults may be omitted
    (``gen_server.ml`` from_ctor_record, ``Dispatcher_FieldNotFound`` otherwise)."""

    def create(call, record):
        c = call.db.schema.classes[cls]
        fields = {}
        for f in c.fields.values():
            if f.qualifier not in ("RW", "RO/constructor"):
                continue
            if f.name in record:
                fields[f.name] = convert(f.type, record[f.name])
            elif not f.has_default:
                raise internal(f'Server_helpers.Dispatcher_FieldNotFound("{f.name}")')
        return call.world.new_row(call.db, cls, **fields)

    return create
