"""Events. Mirrors xen-api ``ocaml/xapi/xapi_event.ml`` and ``xapi-types/event_types.ml``.

``event.from(classes, token, timeout)``: token ``""`` returns every object of the subscribed
classes as ``add`` with a snapshot; a later token returns one event per object changed since
(``add``/``mod``/``del``, no snapshot on ``del``), blocking on the pool database's condition
variable until something changes or the timeout passes (every waiter sleeps on the same
condition and ``notify_all`` wakes them all at once: no polling). Tokens are XAPI's two
zero-padded 20-digit decimals. ``valid_ref_counts`` counts the rows of every *database* table
(``xapi_event.ml`` folds over the DB's table set), so classes XAPI keeps outside its database
(``event``, ``message``, ``data_source``, ...) have no entry. Message events carry the id
``"0"`` (they come from a separate generation counter in XAPI).

The legacy ``register``/``next``/``unregister`` API keeps a per-session position in the
world's change stream; XAPI's queue is bounded, so a registrant that falls more than
``EventQueues.queue_limit`` changes behind gets ``EVENTS_LOST`` and must register again.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from ..datamodel import NO_EVENTS
from ..dispatch import Deferred, answering_batch, api
from ..errors import Failure
from ..sessions import SESSION_DELETED_HOOKS
from ..wire.values import I4, Shared

EVENT_FROM_DELAY = 0.05  # xapi_globs event_from_delay: batching before/between polls
PUMP_POLL = 0.05  # seconds a pump waits at most for a change before it looks again
PUMP_IDLE = 5.0  # seconds a pump's thread lives on without waiters

log = logging.getLogger(__name__)
QUEUE_LIMIT = 10_000  # legacy event.next: pending events before EVENTS_LOST
MAX_TIMEOUT = 3600.0

# Classes with ``in_db:false`` in the datamodel: no database table, so no valid_ref_counts
# entry (messages live in XAPI's message store, not in the database).
NOT_IN_DB = {
    "event",
    "data_source",
    "auth",
    "sr_stat",
    "probe_result",
    "vdi_nbd_server_info",
    "message",
    "diagnostics",
}
# Tables that exist in XAPI's database but stay empty: roles are static (rbac_static.ml,
# xapi_role.ml answers role.get_all* from the static list), so XAPI counts 0 rows.
EMPTY_IN_XAPI = {"role"}


def valid_ref_counts(db) -> dict:
    """``valid_ref_counts`` of an event.from reply: lower-case table -> live rows (``<i4>``).
    One ``Shared`` for as long as no table grows or shrinks: most changes modify rows, and
    each codec then encodes the counts once for every batch that carries them."""
    memo = getattr(db, "_counts_memo", None)
    if memo is not None and memo[0] == db.gen:
        return memo[1]  # shared by every waiter woken at this generation (no lock)
    with db.lock:
        sizes = [
            (c.lower(), 0 if c in EMPTY_IN_XAPI else len(t))
            for c, t in db.tables.items()
            if c not in NOT_IN_DB
        ]
        if memo is not None and memo[2] == sizes:
            counts = memo[1]
        else:
            counts = Shared((c, I4(n)) for c, n in sizes)
        db._counts_memo = (db.gen, counts, sizes)
        return counts


def token_of(gen: int) -> str:
    return f"{gen:020d},{0:020d}"


_OCAML_INT = re.compile(
    r"-?(?:0[xX][0-9a-fA-F][0-9a-fA-F_]*|0[oO][0-7][0-7_]*|"
    r"0[bB][01][01_]*|[0-9][0-9_]*)\Z"
)


def parse_token(token: str) -> int:
    """xapi_event.ml ``Token.of_string``: ``""`` is the beginning (generation 0); otherwise
    exactly two ``Int64.of_string`` numbers separated by a comma, else
    EVENT_FROM_TOKEN_PARSE_FAILURE [token]."""
    if token == "":
        return 0
    parts = token.split(",")
    if len(parts) == 2 and all(_OCAML_INT.match(p) for p in parts):
        body = parts[0].replace("_", "")
        sign = -1 if body.startswith("-") else 1
        body = body.lstrip("-")
        return sign * (int(body, 0) if body[:2].lower() in ("0x", "0o", "0b") else int(body))
    raise Failure("EVENT_FROM_TOKEN_PARSE_FAILURE", token)


def _subscriptions(db, classes):
    """(set of class names, {class: set(refs)} of single-object subscriptions)."""
    schema = db.schema
    names: set[str] = set()
    objs: dict[str, set[str]] = {}
    for c in classes:
        if c == "*":
            names.update(n for n in schema.classes if n not in NO_EVENTS)
            continue
        cname, slash, ref = c.partition("/")
        real = schema.lower_names.get(cname.lower())
        if real is None or real in NO_EVENTS:
            continue
        if slash:
            objs.setdefault(real, set()).add(ref)
        else:
            names.add(real)
    return names, objs


def _event(db, gen, cls, ref, op, legacy=False):
    # message events come from XAPI's message store with id 0 (xapi_event.ml from_inner)
    eid = "0" if cls == "message" and not legacy else str(gen)
    ev = {
        "id": eid,
        "timestamp": f"{time.time():.0f}." if legacy else "0.0",
        "class": cls.lower(),
        "operation": op,
        "ref": ref,
    }
    if op != "del":
        row = db.tables[cls].get(ref)
        if row is None:
            return None  # CA-91931: deleted before we could snapshot it
        ev["snapshot"] = row
    return ev


_REPLY_LOCK = threading.Lock()  # held to make a reply (pure CPU, no I/O; never waits inside)


def _batch_key(since, names, objs):
    return (since, frozenset(names), frozenset((c, frozenset(r)) for c, r in objs.items()))


def _collect(db, since, names, objs, key=None):
    """(events after generation ``since``, the generation read) (xapi_event.ml
    collect_events): from the beginning (token ``""`` = 0) every live object is an ``add``
    at its creation generation. Many clients waiting on the same token and subscription
    wake together, and many first calls (token ``""``) arrive together: the batch is
    computed once per (token, subscription, database generation) and shared, read-only --
    a waiter that finds it made needs no lock, one that comes while it is being made waits
    for it instead of making its own."""
    key = key or _batch_key(since, names, objs)
    gen = db.gen
    memo = getattr(db, "_event_memo", None)
    if memo is not None and memo[0] == (key, gen):
        return memo[1], gen
    classes = names | set(objs)
    with db.reading():
        gen = db.gen
        memo = getattr(db, "_event_memo", None)
        if memo is not None and memo[0][0] == key:
            mgen = memo[0][1]
            if mgen == gen:
                return memo[1], gen  # made while we waited for the lock
            if memo[1] and mgen < gen and not _any_subscribed(db, mgen, names, objs):
                # only changes nobody here subscribed to since (a session's last_active, a
                # task): the batch made at mgen is still the answer, with mgen's token --
                # what a call at mgen got. Callers arriving over several seconds (each
                # second's first call touches its session) keep sharing one batch.
                return memo[1], mgen
        out = []
        for g, cls, ref, op in db.changes_since(since, classes):
            if cls not in names and ref not in objs.get(cls, ()):
                continue
            ev = _event(db, g, cls, ref, op)
            if ev is not None:
                out.append(ev)
        db._event_memo = ((key, gen), out)
    return out, gen


def _any_subscribed(db, since, names, objs) -> bool:
    """Whether a change after ``since`` concerns the subscription (the lock held)."""
    for _g, cls, ref, _op in db.changes_since(since, names | set(objs)):
        if cls in names or ref in objs.get(cls, ()):
            return True
    return False


def _reply(db, since, names, objs, events, gen, key=None):
    """The reply for ``events`` at ``gen``: one ``Shared`` per (token, subscription,
    generation), so every waiter answered with it sends the bytes encoded once."""
    key = (key or _batch_key(since, names, objs), gen)
    memo = getattr(db, "_reply_memo", None)
    if memo is not None and memo[0] == key and memo[1]["events"] is events:
        return memo[1]
    with _REPLY_LOCK:
        # made once: callers arriving together (50 first event.from calls on a big world)
        # wait for the first instead of each making -- and encoding -- a reply of its own
        memo = getattr(db, "_reply_memo", None)
        if memo is not None and memo[0] == key and memo[1]["events"] is events:
            return memo[1]
        reply = Shared(events=events, valid_ref_counts=valid_ref_counts(db), token=token_of(gen))
        db._reply_memo = (key, reply)
    return reply


@api("event.from")
def event_from(call, classes, token, timeout):
    db = call.db
    since = parse_token(token)
    names, objs = _subscriptions(db, classes)
    deadline = time.monotonic() + max(0.0, min(float(timeout), MAX_TIMEOUT))
    only_tasks = names <= {"task"} and not objs
    if not only_tasks:
        call.world.txm.checkpoint()
        time.sleep(EVENT_FROM_DELAY)
    while True:
        events, gen = _collect(db, since, names, objs)
        if events:
            break
        changed = db.changed_event  # taken before the check: no lost wake-up
        if call.session not in db.tables["session"]:
            raise Failure("SESSION_INVALID", call.session)
        if db.gen == gen:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if call.can_defer:  # the front: wait without a thread (Pump)
                return Parked(call, since, names, objs, deadline, gen)
            call.world.txm.checkpoint()  # never wait holding a database lock
            changed.wait(left)
        if call.session not in db.tables["session"]:
            raise Failure("SESSION_INVALID", call.session)
        if time.monotonic() >= deadline:
            events, gen = _collect(db, since, names, objs)
            break
    return _reply(db, since, names, objs, events, gen)


class Parked(Deferred):
    """An ``event.from`` waiting for a change without a thread of its own: the database's
    ``Pump`` answers it (``finish``) when a change brings it events, when its session goes,
    or at its deadline."""

    __slots__ = (
        "db",
        "session",
        "since",
        "names",
        "objs",
        "key",
        "classes",
        "deadline",
        "gen",
        "finish",
        "pump",
    )

    def __init__(self, call, since, names, objs, deadline, gen):
        self.db = call.db
        self.session = call.session
        self.since, self.names, self.objs = since, names, objs
        self.key = _batch_key(since, names, objs)
        self.classes = tuple(names | set(objs))
        self.deadline = deadline
        self.gen = gen  # the generation its last (empty) batch was read at
        self.finish = None
        self.pump = Pump.of(call.world, call.db)

    def start(self, finish):
        self.finish = finish
        self.pump.add(self)

    def answer(self, memo=None):
        """(ok, value) if this waiter is due now, else None. Never raises. ``memo``: one
        pass's answers by subscription key -- waiters with the same token and subscription
        get the same answer, made once."""
        db = self.db
        try:
            if self.session not in db.tables["session"]:
                return False, ["SESSION_INVALID", self.session]
            now_due = time.monotonic() >= self.deadline
            if not now_due:
                if db.gen == self.gen:
                    return None
                if memo is not None:
                    got = memo.get(self.key, _UNSET)
                    if got is _UNSET:
                        got = memo[self.key] = self._changed()
                    return got
                return self._changed()
            events, gen = _collect(db, self.since, self.names, self.objs, self.key)
            self.gen = gen
            return True, _reply(db, self.since, self.names, self.objs, events, gen, self.key)
        except Failure as f:
            return False, f.description
        except Exception as e:  # noqa: BLE001 -- a bug must still answer the client
            log.exception("event.from: a parked waiter failed")
            return False, ["INTERNAL_ERROR", f"{type(e).__name__}: {e}"]

    def _changed(self):
        """The answer after a change, if it brings events: (True, reply) or None. A change
        to no subscribed class (``Database.class_gen``, read without the lock: a commit
        being published kicks the pump again once it is) needs no batch."""
        db = self.db
        seen = self.gen
        class_gen = db.class_gen
        if all(class_gen.get(c, 0) <= seen for c in self.classes):
            return None
        events, gen = _collect(db, self.since, self.names, self.objs, self.key)
        self.gen = gen
        if events:
            return True, _reply(db, self.since, self.names, self.objs, events, gen, self.key)
        return None


_UNSET = object()


class Pump:
    """The parked ``event.from`` waiters of one database. The thread that commits a change
    answers every waiter the change concerns, right after its commit (``kick``, called by
    ``Txn.commit`` through ``Database.after_publish``): no thread is woken for them, and
    they share one batch and one encoding per subscription (``_collect``, ``_reply``). A
    thread of the pump's own answers deadlines (a timeout, an empty batch) and looks again
    every ``PUMP_POLL`` seconds; it exists while waiters do (it ends ``PUMP_IDLE`` seconds
    after the last)."""

    def __init__(self, db):
        self.db = db
        self.lock = threading.Lock()
        self.waiters: list[Parked] = []
        self.running = False
        db.after_publish.append(self.kick)

    def kick(self) -> None:
        """A change was committed: answer the waiters it concerns, on this thread."""
        if self.waiters:
            self._pass()

    def _pass(self) -> None:
        with self.lock:
            waiters = list(self.waiters)
        due = []
        memo: dict = {}
        for w in waiters:
            got = w.answer(memo)
            if got is not None:
                due.append((w, got))
        if due:
            self._finish(due)

    @staticmethod
    def of(world, db) -> Pump:
        pumps = world.service(Pumps)
        with pumps.lock:
            pump = pumps.by_db.get(db)
            if pump is None:
                pump = pumps.by_db[db] = Pump(db)
            return pump

    def add(self, w: Parked) -> None:
        with self.lock:
            self.waiters.append(w)
            self.db.parked = len(self.waiters)
            start = not self.running
            self.running = True
        if start:
            threading.Thread(target=self._run, name="xapi-sim-event-pump", daemon=True).start()
        if w.db.gen != w.gen:  # a change since its batch was read: answer it here and now
            got = w.answer()
            if got is not None:
                self._finish([(w, got)])

    def _finish(self, due) -> None:
        """Answer the waiters of ``due`` still parked (each is answered once, by whichever
        thread takes it off the list), outside the lock."""
        with self.lock:
            parked = {id(w) for w in self.waiters}
            due = [(w, got) for w, got in due if id(w) in parked]
            taken = {id(w) for w, _ in due}
            self.waiters = [w for w in self.waiters if id(w) not in taken]
            self.db.parked = len(self.waiters)
        with answering_batch():  # the replies go out together once all are made
            for w, (ok, value) in due:
                try:
                    w.finish(ok, value)
                except Exception:  # noqa: BLE001 -- one client's reply must not stop the pump
                    log.exception("event.from: answering a parked waiter failed")

    def _run(self):
        idle_since = None
        wake = threading.Event()  # never set: the pump's thread only waits for time
        while True:
            self._pass()
            with self.lock:
                deadlines = [w.deadline for w in self.waiters]
                if not deadlines:
                    now = time.monotonic()
                    idle_since = idle_since or now
                    if now - idle_since >= PUMP_IDLE:
                        self.running = False
                        return
                else:
                    idle_since = None
            timeout = PUMP_POLL
            if deadlines:
                timeout = min(timeout, max(0.0, min(deadlines) - time.monotonic()))
            wake.wait(timeout)


class Pumps:
    """The world's pumps, one per database with parked waiters."""

    def __init__(self, world):
        self.lock = threading.Lock()
        self.by_db: dict = {}


@api("event.get_current_id")
def get_current_id(call):
    return call.db.gen


@api("event.inject")
def inject(call, cls, ref):
    db = call.db
    with db.cond:
        if cls not in db.tables or ref not in db.tables[cls]:
            raise Failure("HANDLE_INVALID", cls, ref)
        tok = token_of(db.gen)
        db.bump(cls, ref)
        return tok


# -- legacy API ----------------------------------------------------------------------------


class EventQueues:
    """Legacy ``event.next`` registrations of one world (created on first use).

    ``queue_limit``: how many changes a registrant may fall behind before ``EVENTS_LOST``
    (XAPI bounds its queue; every database write is one queued event there).
    """

    def __init__(self, world=None):
        self.regs: dict = {}  # session ref -> {"classes": set, "pos": generation}
        self.queue_limit = QUEUE_LIMIT
        self.lock = threading.Lock()

    @classmethod
    def of(cls, world) -> EventQueues:
        return world.service(cls)

    def on_session_deleted(self, ref):
        """``Xapi_event.on_session_deleted``: a logged-out session's registration goes."""
        with self.lock:
            self.regs.pop(ref, None)


@api("event.register")
def register(call, classes):
    q = EventQueues.of(call.world)
    with call.db.lock:
        reg = q.regs.get(call.session)
        if reg is None:
            reg = q.regs[call.session] = {"classes": set(), "pos": call.db.gen}
        reg["classes"].update(classes)


@api("event.unregister")
def unregister(call, classes):
    q = EventQueues.of(call.world)
    with call.db.lock:
        reg = q.regs.get(call.session)
        if reg is not None:
            reg["classes"].difference_update(classes)


@api("event.next")
def event_next(call):
    q = EventQueues.of(call.world)
    db = call.db
    with db.cond:
        if call.session not in db.tables["session"]:
            raise Failure("SESSION_INVALID", call.session)
        if q.regs.get(call.session) is None:
            raise Failure("SESSION_NOT_REGISTERED", call.session)
    while True:
        with db.cond:
            # a session destroyed while we waited (its registration gone with it): XAPI's
            # waiter sees ``session_invalid`` (Xapi_event.on_session_deleted) first
            if call.session not in db.tables["session"]:
                raise Failure("SESSION_INVALID", call.session)
            reg = q.regs.get(call.session)
            if reg is None:  # unregistered meanwhile (another connection of the session)
                raise Failure("SESSION_NOT_REGISTERED", call.session)
            if db.gen - reg["pos"] > q.queue_limit:
                del q.regs[call.session]
                raise Failure("EVENTS_LOST")
            names, objs = _subscriptions(db, reg["classes"])
            out = []
            for g, cls, ref, op in db.changes_since(reg["pos"], names | set(objs)):
                if cls in names or ref in objs.get(cls, ()):
                    ev = _event(db, g, cls, ref, op, legacy=True)
                    if ev is not None:
                        out.append(ev)
            reg["pos"] = db.gen
            if out:
                return out
            if call.session not in db.tables["session"]:
                raise Failure("SESSION_INVALID", call.session)
            db.cond.wait(30.0)
        if call.session not in db.tables["session"]:
            raise Failure("SESSION_INVALID", call.session)


def _drop_registration(world, ref):
    """``Xapi_event.on_session_deleted``: a destroyed session's legacy registration goes."""
    queues = world.existing_service(EventQueues)
    if queues is not None:
        queues.on_session_deleted(ref)


SESSION_DELETED_HOOKS.append(_drop_registration)
