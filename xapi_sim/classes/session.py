"""Sessions. Mirrors xen-api ``ocaml/xapi/xapi_session.ml``: ``login_with_password`` checks the
root credentials (after ``HOST_IS_SLAVE`` on a pool member, before any password check), a
wrong password gives ``SESSION_AUTHENTICATION_FAILED [uname, "Authentication failure"]``
after a deliberate delay (5 s in XAPI; ``World.auth_failure_delay`` here); logout destroys
the session row and wakes any event wait on it.

Session limits and eviction mirror the "Sessions" pass of XAPI's database GC (Dundee
``ocaml/xapi/db_gc.ml`` ``timeout_sessions``/``timeout_sessions_common``, unchanged at HEAD
in ``db_gc_util.ml``; limits in ``xapi_globs.ml``):

* sessions are grouped: intra-pool sessions (``pool = true``) form group "internal";
  root (or nameless) sessions with no originator form group "external"; other root
  sessions are grouped by ``originator``; non-root sessions by ``auth_user_name``;
* a session whose ``last_active`` is older than ``inactive_session_timeout`` (86400 s) is
  destroyed;
* when a group holds more than its limit -- ``max_sessions`` = ``max_tasks * 2`` = 400 for
  "internal" and "external", ``max_sessions_per_originator`` = 500 per originator,
  ``max_sessions_per_user_name`` = 500 per user name -- the least recently active sessions
  are destroyed until the limit is met;
* the session check of every call on the master refreshes ``last_active``
  (Dundee ``ocaml/idl/ocaml_backend/session_check.ml``).

XAPI runs that pass every 30 s (``db_GC_TIMER``), so a group may briefly exceed its limit.
Here the group of a new session is trimmed at login (so the bound is strict) and the full
pass, including the inactivity timeout, runs at a login at most every 30 s (or on demand,
``gc_sessions``). Within one second of ``last_active`` (its resolution), the session used
least recently goes first. XAPI also spares sessions with pending tasks; tasks are not linked
to sessions here (``session.tasks`` is always empty), so every session is disposable.
"""
from __future__ import annotations

import itertools
import time

from ..datamodel import NULL_REF
from ..dispatch import api
from .event import EventQueues
from ..errors import Failure

# xapi_globs.ml (Dundee and HEAD)
MAX_TASKS = 200
MAX_SESSIONS = MAX_TASKS * 2               # "external" and "internal" groups
MAX_SESSIONS_PER_ORIGINATOR = 500
MAX_SESSIONS_PER_USER_NAME = 500
INACTIVE_SESSION_TIMEOUT = 86400.0         # inactive_session_timeout
DB_GC_TIMER = 30.0                         # db_gc.ml: seconds between GC passes

_use_seq = itertools.count(1)


class SessionState(dict):
    """Per-world bookkeeping: last use order of each session, time of the last full pass."""

    def __init__(self, world):
        super().__init__(use={}, last_gc=None)


def _state(world):
    return world.service(SessionState)


@api("session.login_with_password")
def login_with_password(call, uname, pwd, version="1.1", originator=""):
    host, world = call.host, call.world
    if not host.is_master:
        raise Failure("HOST_IS_SLAVE", host.pool.master.address)
    if uname != world.user or pwd != world.password:
        if world.auth_failure_delay:
            time.sleep(world.auth_failure_delay)
        raise Failure("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return create_session(call, uname, originator)


def create_session(call, uname, originator="", pool=False):
    from ..world import now_ts
    ts = now_ts()
    world, db = call.world, call.db
    ref = world.new_row(
        db, "session", this_host=call.host.ref, this_user=NULL_REF, last_active=ts,
        pool=pool, other_config={}, is_local_superuser=True, subject=NULL_REF,
        validation_time=ts, auth_user_sid="", auth_user_name=uname, rbac_permissions=[],
        parent=NULL_REF, originator=originator)
    st = _state(world)
    st["use"][ref] = next(_use_seq)
    now = time.monotonic()
    if st["last_gc"] is None or now - st["last_gc"] >= DB_GC_TIMER:
        st["last_gc"] = now
        gc_sessions(world)
    else:
        row = db.tables["session"].get(ref)
        if row is not None:
            _trim_group(world, db, group_of(row))
    return ref


# -- limits and eviction ------------------------------------------------------------------

def group_of(row) -> tuple:
    """The GC group of a session row (``timeout_sessions``)."""
    if row["pool"]:
        return ("internal",)
    root = row["auth_user_name"] in ("", "root")
    if root and row["originator"] == "":
        return ("external",)
    if root:
        return ("originator", row["originator"])
    return ("username", row["auth_user_name"])


def limit_of(group: tuple) -> int:
    if group[0] == "originator":
        return MAX_SESSIONS_PER_ORIGINATOR
    if group[0] == "username":
        return MAX_SESSIONS_PER_USER_NAME
    return MAX_SESSIONS


def _evict(world, db, rows, limit, now):
    """Destroy the sessions of one group that are too old, then the least recently active
    ones beyond ``limit``. ``rows`` is [(ref, row)]. Returns the refs destroyed."""
    use = _state(world)["use"]
    # last_active is YYYYMMDDTHH:MM:SSZ: string order is time order
    threshold = time.strftime("%Y%m%dT%H:%M:%SZ",
                              time.gmtime(max(0.0, now - INACTIVE_SESSION_TIMEOUT)))
    young, old = [], []
    for ref, row in rows:
        (young if str(row["last_active"]) > threshold else old).append((ref, row))
    young.sort(key=lambda rr: (str(rr[1]["last_active"]), use.get(rr[0], 0)), reverse=True)
    gone = [r for r, _ in old] + [r for r, _ in young[limit:]]
    for ref in gone:
        destroy_session(world, db, ref)
    return gone


def _trim_group(world, db, group):
    limit = limit_of(group)
    with db.lock:
        rows = [(r, row) for r, row in db.tables["session"].items() if group_of(row) == group]
        if len(rows) <= limit:
            return []
        return _evict(world, db, rows, limit, time.time())


def gc_sessions(world, now=None) -> list:
    """One "Sessions" pass of XAPI's DB GC over every pool database: the inactivity
    timeout and the per-group limits. Returns the refs destroyed."""
    now = time.time() if now is None else now
    gone = []
    for p in list(world.pools):
        db = p.db
        with db.lock:
            groups = {}
            for ref, row in db.tables["session"].items():
                groups.setdefault(group_of(row), []).append((ref, row))
            for group, rows in groups.items():
                gone += _evict(world, db, rows, limit_of(group), now)
    return gone


def touch(world, db, ref, row):
    """The session check's refresh of ``last_active`` (the master sets it on every call;
    its resolution is one second, so at most one write per session per second)."""
    from ..world import now_ts
    _state(world)["use"][ref] = next(_use_seq)
    ts = now_ts()
    if row["last_active"] != ts:
        with db.lock:
            if ref in db.tables["session"]:
                db.set("session", ref, "last_active", ts)


def destroy_session(world, db, ref):
    """``Xapi_session.destroy_db_session``: delete the row, which wakes blocked
    ``event.from``/``event.next`` calls (they then fail with SESSION_INVALID), and tell the
    event system (``Xapi_event.on_session_deleted``) when it offers the hook."""
    with db.cond:
        _state(world)["use"].pop(ref, None)
        if db.exists("session", ref):
            db.remove("session", ref)
        queues = world.existing_service(EventQueues)
        if queues is not None:
            queues.on_session_deleted(ref)
        db.cond.notify_all()


@api("session.logout", "session.local_logout")
def logout(call):
    destroy_session(call.world, call.db, call.session)


@api("session.change_password")
def change_password(call, old_pwd, new_pwd):
    if old_pwd != call.world.password:
        raise Failure("SESSION_AUTHENTICATION_FAILED", call.world.user, "Authentication failure")
    call.world.password = new_pwd


@api("session.get_all_subject_identifiers")
def get_all_subject_identifiers(call):
    return []


@api("session.logout_subject_identifier")
def logout_subject_identifier(call, sid):
    return None
