"""Events. Mirrors xen-api ``ocaml/xapi/xapi_event.ml`` and ``xapi-types/event_types.ml``.

``event.from(classes, token, timeout)``: token ``""`` returns every object of the subscribed
classes as ``add`` with a snapshot; a later token returns one event per object changed since
(``add``/``mod``/``del``, no snapshot on ``del``), blocking on the pool database's condition
variable until something changes or the timeout passes. Tokens are XAPI's two zero-padded
20-digit decimals. The legacy ``register``/``next``/``unregister`` API keeps a per-session
position and raises ``EVENTS_LOST`` when a registrant falls more than ``QUEUE_LIMIT`` events
behind.
"""
from __future__ import annotations

import re
import time

from ..datamodel import NO_EVENTS
from ..dispatch import api
from ..errors import Failure
from ..wire.values import I4

EVENT_FROM_DELAY = 0.05     # xapi_globs event_from_delay: batching before/between polls
QUEUE_LIMIT = 10_000         # legacy event.next: pending events before EVENTS_LOST
MAX_TIMEOUT = 3600.0


def token_of(gen: int) -> str:
    return f"{gen:020d},{0:020d}"


_OCAML_INT = re.compile(r"-?(?:0[xX][0-9a-fA-F][0-9a-fA-F_]*|0[oO][0-7][0-7_]*|"
                        r"0[bB][01][01_]*|[0-9][0-9_]*)\Z")


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
    names, objs = set(), {}
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
    ev = {"id": str(gen), "timestamp": f"{time.time():.0f}." if legacy else "0.0",
          "class": cls.lower(), "operation": op, "ref": ref}
    if op != "del":
        row = db.tables[cls].get(ref)
        if row is None:
            return None   # CA-91931: deleted before we could snapshot it
        ev["snapshot"] = row
    return ev


def _collect(db, since, names, objs):
    """Events after generation ``since`` (xapi_event.ml collect_events): from the beginning
    (token ``""`` = 0) every live object is an ``add`` at its creation generation."""
    classes = names | set(objs)
    out = []
    with db.lock:
        gen = db.gen
        for g, cls, ref, op in db.changes_since(since, classes):
            if cls not in names and ref not in objs.get(cls, ()):
                continue
            ev = _event(db, g, cls, ref, op)
            if ev is not None:
                out.append(ev)
    return out, gen


@api("event.from")
def event_from(call, classes, token, timeout):
    db = call.db
    since = parse_token(token)
    names, objs = _subscriptions(db, classes)
    deadline = time.monotonic() + max(0.0, min(float(timeout), MAX_TIMEOUT))
    only_tasks = names <= {"task"} and not objs
    if not only_tasks:
        time.sleep(EVENT_FROM_DELAY)
    while True:
        events, gen = _collect(db, since, names, objs)
        if events:
            break
        with db.cond:
            if call.session not in db.tables["session"]:
                raise Failure("SESSION_INVALID", call.session)
            if db.gen == gen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                db.cond.wait(left)
        if call.session not in db.tables["session"]:
            raise Failure("SESSION_INVALID", call.session)
        if time.monotonic() >= deadline:
            events, gen = _collect(db, since, names, objs)
            break
    counts = {c: I4(n) for c, n in db.valid_ref_counts().items()}
    return {"events": events, "valid_ref_counts": counts, "token": token_of(gen)}


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

def _registrations(world):
    regs = getattr(world, "_event_regs", None)
    if regs is None:
        regs = world._event_regs = {}
    return regs


@api("event.register")
def register(call, classes):
    regs = _registrations(call.world)
    with call.db.lock:
        reg = regs.get(call.session)
        if reg is None:
            reg = regs[call.session] = {"classes": set(), "pos": call.db.gen}
        reg["classes"].update(classes)


@api("event.unregister")
def unregister(call, classes):
    regs = _registrations(call.world)
    reg = regs.get(call.session)
    if reg is not None:
        reg["classes"].difference_update(classes)


@api("event.next")
def event_next(call):
    regs = _registrations(call.world)
    reg = regs.get(call.session)
    if reg is None:
        raise Failure("SESSION_NOT_REGISTERED", call.session)
    db = call.db
    while True:
        names, objs = _subscriptions(db, reg["classes"])
        with db.cond:
            changes = db.changes_since(reg["pos"], names | set(objs))
            if len(changes) > QUEUE_LIMIT:
                del regs[call.session]
                raise Failure("EVENTS_LOST")
            out = []
            for g, cls, ref, op in changes:
                if cls in names or ref in objs.get(cls, ()):
                    ev = _event(db, g, cls, ref, op, legacy=True)
                    if ev is not None:
                        out.append(ev)
            if out:
                reg["pos"] = db.gen
                return out
            if call.session not in db.tables["session"]:
                raise Failure("SESSION_INVALID", call.session)
            reg["pos"] = db.gen
            db.cond.wait(30.0)
        if call.session not in db.tables["session"]:
            raise Failure("SESSION_INVALID", call.session)
