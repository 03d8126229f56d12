"""Sessions. Mirrors xen-api ``ocaml/xapi/xapi_session.ml`` (Dundee tag v1.9.81; unchanged in
these respects at HEAD).

Passwords belong to a pool. Root's password lives in dom0's /etc/passwd of each host; a member
fetches the master's copy at every start (``dbsync.ml`` ``resync_dom0_config_files``) and
when told to (``Xapi_host.request_config_file_sync``), so every host of a pool has the
pool's password. Here it is ``PoolRuntime.password``:

* ``login_with_password``: ``HOST_IS_SLAVE [master address]`` on a member, before any
  password check; then the local superuser check (PAM) against the pool's password. PAM is
  called with ``PAM_DISALLOW_NULL_AUTHTOK`` (``ocaml/auth/xa_auth.c``), so an empty password
  never logs in. A failure waits ``some_seconds = 5.0`` (``thread_delay_and_raise_error``, "to
  avoid someone brute-forcing the password") and raises ``SESSION_AUTHENTICATION_FAILED
  [uname, "Authentication failure"]`` (``pam_strerror(PAM_AUTH_ERR)``). The wait here is
  ``World.auth_failure_delay`` (``xapi-sim serve --auth-delay``, default ``AUTH_FAILURE_DELAY``
  = 5 s; 0 in the Python toolkit), slept in the failing call's own thread with no lock held.
* ``change_password(old_pwd, new_pwd)``: ``old_pwd`` is *not* checked (CA-13567, the check
  is commented out; HEAD says ``ignore old_pwd``); a session without ``is_local_superuser``
  gets ``USER_IS_NOT_LOCAL_SUPERUSER [msg]``; PAM's refusal ``CHANGE_PASSWORD_REJECTED
  [msg]`` (modelled: an empty password). The new password is written on this host and
  synced to every host of *its* pool -- a standalone host is a pool of its own.
* ``slave_local_login_with_password`` (emergency mode, any host, master or member): the same
  check against this host's copy of the pool password, no ``HOST_IS_SLAVE``. XAPI adds no
  delay of its own there (PAM's own failure delay applies on a real host); xapi-sim waits
  ``auth_failure_delay`` too, so this is no brute-force side door. The session is kept in
  that host's xapi memory (``Xapi_local_session``), not in the database, and is accepted by
  the session check on that host only, until its xapi restarts.
* ``pool.join`` logs in to the master with the master pool's password; afterwards the joiner
  has that password. ``pool.eject`` leaves /etc/passwd alone: the ejected host keeps the
  password of the pool it left. ``World.password`` (``--password``) only seeds new pools.

Failed logins are counted per pool (``AuthStats``, ``sim.auth_stats``). A 7.0 host keeps no
such count: XAPI's ``AuthFail`` statistics and hourly ``FAILED_LOGIN_ATTEMPTS`` alert came in
2020 (CP-34472, v1.289.0).

Logout destroys the session row and wakes any event wait on it.

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

The session machinery below the API (the dispatcher checks sessions with it): constants,
authentication, local sessions, creation, limits and eviction, ``touch``, destruction. The
``session.*`` handlers are in ``classes/session.py``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .datamodel import NULL_REF
from .errors import Failure, NotQuick
from .store import Row

if TYPE_CHECKING:  # annotations only
    from .world import World

# xapi_globs.ml (Dundee and HEAD)
MAX_TASKS = 200
MAX_SESSIONS = MAX_TASKS * 2  # "external" and "internal" groups
MAX_SESSIONS_PER_ORIGINATOR = 500
MAX_SESSIONS_PER_USER_NAME = 500
INACTIVE_SESSION_TIMEOUT = 86400.0  # inactive_session_timeout
DB_GC_TIMER = 30.0  # db_gc.ml: seconds between GC passes
# xapi_session.ml login_with_password, thread_delay_and_raise_error: some_seconds = 5.0
AUTH_FAILURE_DELAY = 5.0
AUTH_FAILURE = "Authentication failure"  # pam_strerror(PAM_AUTH_ERR)
# pam_strerror(PAM_AUTHTOK_ERR): the password stack refusing a new password
CHANGE_PASSWORD_REFUSED = "Authentication token manipulation error"
# Xapi_local_session keeps every local session until xapi restarts; a bound of our own keeps
# a flood of emergency logins from growing memory (the oldest of a host goes first)
MAX_LOCAL_SESSIONS_PER_HOST = 500
# Called as hook(world, session ref) when a session row is destroyed (the legacy event
# queues drop their registration: ``Xapi_event.on_session_deleted``); modules above this
# layer register here.
SESSION_DELETED_HOOKS: list[Callable[[World, str], None]] = []

log = logging.getLogger(__name__)

_use_seq = itertools.count(1)


class SessionState(dict):
    """Per-world bookkeeping: last use order of each session, time of the last full pass,
    and the second each session was last touched with the ``last_active`` value then
    written (``touch``)."""

    def __init__(self, world):
        super().__init__(use={}, last_gc=None, touched={})


def _state(world):
    return world.service(SessionState)


# -- authentication -------------------------------------------------------------------------


class AuthStats:
    """Failed logins per pool since the world started (in memory, like sessions): how many,
    when the last one was and for which user name. One lock, held only to count."""

    def __init__(self, world):
        self.lock = threading.Lock()
        self.clock = world.clock
        self.pools: dict = {}  # pool ref -> [failed, last_failure (epoch s), last user]

    def record(self, pool, uname):
        now = self.clock.time()
        with self.lock:
            entry = self.pools.get(pool.ref)
            if entry is None:
                entry = self.pools[pool.ref] = [0, 0.0, ""]
            entry[0] += 1
            entry[1] = now
            entry[2] = uname

    def snapshot(self, world) -> dict:
        """``{pool ref: {name_label, master, failed, last_failure, last_user}}`` for every
        pool of the world (a pool dissolved by ``pool.join`` is gone with its count)."""
        with self.lock:
            counts = {ref: list(e) for ref, e in self.pools.items()}
        out = {}
        for p in list(world.pools):
            failed, last, user = counts.get(p.ref, (0, 0.0, ""))
            row = p.db.tables["pool"].get(p.ref) or {}
            out[p.ref] = {
                "name_label": row.get("name_label", ""),
                "master": p.master.ref,
                "failed": failed,
                "last_failure": last,
                "last_user": user,
            }
        return out


def credentials_ok(world, pool, uname, pwd) -> bool:
    """The local superuser check: root's name and the pool's password, never empty."""
    return uname == world.user and pwd != "" and pwd == pool.password


def authenticate(world, host, uname, pwd):
    """Check ``uname``/``pwd`` against the password of ``host``'s pool. On failure: count it,
    wait ``world.auth_failure_delay`` in this thread (no lock is held: other clients' logins
    go on) and raise ``SESSION_AUTHENTICATION_FAILED [uname, "Authentication failure"]``."""
    pool = host.pool
    if credentials_ok(world, pool, uname, pwd):
        return
    world.service(AuthStats).record(pool, uname)
    log.info("failed login as %r on pool %s (host %s)", uname, pool.ref, host.name_label)
    delay = world.auth_failure_delay
    if delay and 0 < delay < math.inf:
        world.txm.checkpoint()  # never sleep holding a database lock
        time.sleep(delay)
    raise Failure("SESSION_AUTHENTICATION_FAILED", uname, AUTH_FAILURE)


# -- local sessions (emergency mode) --------------------------------------------------------


class LocalSessions:
    """``Xapi_local_session``: sessions held in one host's xapi memory, valid on that host
    while the xapi that made them runs (``HostRuntime.xapi_epoch``)."""

    def __init__(self, world):
        self.lock = threading.Lock()
        self.hosts: dict = {}  # host ref -> (xapi epoch, OrderedDict of session refs)

    def create(self, world, host) -> str:
        ref = world.ids.ref()
        with self.lock:
            epoch, refs = self.hosts.get(host.ref, (None, None))
            if epoch != host.xapi_epoch:
                refs = collections.OrderedDict()
                self.hosts[host.ref] = (host.xapi_epoch, refs)
            refs[ref] = True
            while len(refs) > MAX_LOCAL_SESSIONS_PER_HOST:
                refs.popitem(last=False)
        return ref

    def valid(self, host, ref) -> bool:
        with self.lock:
            epoch, refs = self.hosts.get(host.ref, (None, None))
            return (
                refs is not None and ref in refs and epoch == host.xapi_epoch and host.state == "up"
            )

    def destroy(self, host, ref) -> bool:
        with self.lock:
            _, refs = self.hosts.get(host.ref, (None, None))
            return refs is not None and refs.pop(ref, None) is not None


def local_session_valid(world, host, ref) -> bool:
    """The session check's ``is_local_session`` (``Session_check.check``, first test)."""
    local = world.existing_service(LocalSessions)
    return local is not None and local.valid(host, ref)


def create_session(call, uname, originator="", pool=False):
    world, db = call.world, call.db
    ts = world.clock.now_ts()
    ref = world.new_row(
        db,
        "session",
        this_host=call.host.ref,
        this_user=NULL_REF,
        last_active=ts,
        pool=pool,
        other_config={},
        is_local_superuser=True,
        subject=NULL_REF,
        validation_time=ts,
        auth_user_sid="",
        auth_user_name=uname,
        rbac_permissions=[],
        parent=NULL_REF,
        originator=originator,
    )
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
    threshold = world.clock.ts_of(max(0.0, now - INACTIVE_SESSION_TIMEOUT))
    young: list[tuple[str, Row]] = []
    old: list[tuple[str, Row]] = []
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
        return _evict(world, db, rows, limit, world.clock.time())


def gc_sessions(world, now=None) -> list:
    """One "Sessions" pass of XAPI's DB GC over every pool database: the inactivity
    timeout and the per-group limits. Returns the refs destroyed."""
    now = world.clock.time() if now is None else now
    gone = []
    for p in list(world.pools):
        db = p.db
        with db.lock:
            groups: dict[tuple[str, ...], list[tuple[str, Row]]] = {}
            for ref, row in db.tables["session"].items():
                groups.setdefault(group_of(row), []).append((ref, row))
            for group, rows in groups.items():
                gone += _evict(world, db, rows, limit_of(group), now)
    return gone


def touch(world, db, ref, row, nowait=False):
    """The session check's refresh of ``last_active``: XAPI's master sets it on every call;
    its resolution is one second, so a call within the second of the last write changes
    nothing and costs no store write, no lock and no clock formatting -- only the use order
    (for eviction) and an in-memory comparison. The first call of a new second writes the
    row as before, so ``last_active`` reads exactly as XAPI's does (and a value set behind
    our back, ``row["last_active"]`` no longer the one written, is refreshed again)."""
    st = _state(world)
    sec = int(world.clock.time())
    touched = st["touched"]
    memo = touched.get(ref)
    if memo is not None and memo[0] == sec and row["last_active"] is memo[1]:
        st["use"][ref] = next(_use_seq)
        return
    ts = world.clock.ts_of(sec)
    if nowait and row["last_active"] != ts:
        raise NotQuick  # the write takes the database lock: not on the front's loop
    st["use"][ref] = next(_use_seq)
    if row["last_active"] != ts:
        with db.lock:
            if ref not in db.tables["session"]:
                return
            db.set("session", ref, "last_active", ts)
            row = db.tables["session"][ref]
    touched[ref] = (sec, row["last_active"])


def destroy_session(world, db, ref):
    """``Xapi_session.destroy_db_session``: delete the row, which wakes blocked
    ``event.from``/``event.next`` calls (they then fail with SESSION_INVALID), and tell the
    event system (``Xapi_event.on_session_deleted``) when it offers the hook."""
    with db.cond:
        st = _state(world)
        st["use"].pop(ref, None)
        st["touched"].pop(ref, None)
        if db.exists("session", ref):
            db.remove("session", ref)
        for hook in SESSION_DELETED_HOOKS:
            hook(world, ref)
