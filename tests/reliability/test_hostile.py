"""Hostile input (issue 7 item 3), beyond the HTTP-level cases of
tests/integration/test_wire_http.py (malformed XML/JSON, bombs, entities, huge bodies, deep
nesting, invalid UTF-8):

* wrong and hostile values in every parameter position of every served message -- the whole
  method table of ``Dispatcher.list_methods`` plus the control API, hypothesis-generated --
  always give a XAPI Failure: never an escaping exception, never an INTERNAL_ERROR carrying a
  Python exception (``TypeError: ...``) or a traceback (INTERNAL_ERROR with rpclib's type
  error text, ``Failure("Expected ...")``, is what XAPI answers and is fine); a rejected call
  and a read-only call change nothing; a sample over both wires always gets HTTP 200 and a
  well-formed reply, and the server stays up;
* concurrent logout of a session in use: calls in flight and ``event.from``/``event.next``
  waiting on it end with SESSION_INVALID, nothing hangs.
"""

from __future__ import annotations

import builtins
import json
import re
import threading
import time
import xmlrpc.client

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapi_sim import scenario
from xapi_sim.classes import event as event_mod
from xapi_sim.datamodel import ENUMS, Timestamp
from xapi_sim.dispatch import CONTROL, Dispatcher, async_capable
from xapi_sim.errors import Failure
from xapi_sim.server import Simulator  # noqa: F401  -- registers every handler

PY_EXCEPTIONS = {
    n
    for n in dir(builtins)
    if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), BaseException)
}
NOT_STATE = {"task", "session"}  # transient tasks of sync calls; last_active refreshes
READ_ONLY = re.compile(r"\.(get_[A-Za-z0-9_]*|get_record|get_all[a-z_]*)$")
# Placeholders the strategies draw for real objects of the world (resolved at call time, so
# the strategies do not depend on the world's changing state)
OBJECTS = tuple(f"@obj{i}" for i in range(16))


def bug_in(description) -> str | None:
    """Why a failure description betrays a bug of ours (None if it is a proper answer)."""
    code, *params = description
    text = " ".join(str(p) for p in params)
    if "Traceback (most recent call last)" in text:
        return "traceback"
    if code == "INTERNAL_ERROR" and params:
        head = str(params[0]).split(":", 1)[0].strip()
        if head in PY_EXCEPTIONS:
            return f"Python exception {head}"
    if not isinstance(code, str) or not code:
        return "no error code"
    return None


class Fuzz:
    """One world served in-process, the method table, valid defaults per parameter."""

    def __init__(self):
        self.world = scenario.build(scenario.default(), seed=11)
        self.d = Dispatcher(self.world)
        self.master = self.world.pools[0].master
        self.db = self.master.db
        self.session = self.login()
        self.methods = []
        schema = self.master.pool.schema
        for name in self.d.list_methods(self.master):
            msg = schema.message(name)
            if msg is not None:
                self.methods.append((name, [p.type for p in msg.params], msg))
        for name, (_, n) in sorted(CONTROL.items()):
            self.methods.append((name, [None] * n, None))
        self.changes = []
        self.world.txm.hooks.append(self._record)

    def login(self):
        return self.d.dispatch(
            self.master, "session.login_with_password", ["root", "xenroot", "1.0", "fuzz"]
        )

    def _record(self, txn):
        """A commit hook: every committed row change (rolled-back calls commit nothing)."""
        for touches in txn.changes().values():
            for cls, ref, op in touches:
                if cls not in NOT_STATE:
                    self.changes.append((cls, ref, op))

    def default(self, ty, position):
        """A well-typed, harmless value for a parameter that is not being fuzzed."""
        if position == 0 and (ty is None or (ty.kind == "ref" and ty.name == "session")):
            return self.session
        if ty is None:
            return ""
        k = ty.kind
        if k == "ref":
            refs = self.db.tables.get(ty.name)
            return next(iter(refs)) if refs else "OpaqueRef:NULL"
        if k == "enum":
            return ENUMS[ty.name][0]
        return {
            "string": "",
            "int": 0,
            "float": 0.0,
            "bool": False,
            "set": [],
            "map": {},
            "record": {},
            "datetime": "19700101T00:00:00Z",
        }.get(k, "")

    def object_values(self):
        """Real identifiers of the world: refs, uuids and names of some objects."""
        out = []
        for cls in ("VM", "host", "pool", "network", "task", "message", "role", "host_cpu"):
            for ref, row in list(self.db.tables.get(cls, {}).items())[:2]:
                out += [ref, row.get("uuid", ""), row.get("name_label", "")]
        return [v for v in out if v]

    def call(self, name, args):
        """Dispatch; returns (ok, value or description). Python exceptions are bugs."""
        try:
            return True, self.d.dispatch(self.master, name, args)
        except Failure as f:
            return False, f.description
        except Exception as e:  # noqa: BLE001
            return False, ["PYTHON", f"{type(e).__name__}: {e}"]


@pytest.fixture(scope="module")
def fuzz():
    f = Fuzz()
    saved = event_mod.EVENT_FROM_DELAY
    event_mod.EVENT_FROM_DELAY = 0.0  # event.from's batching pause, 50 ms a call
    yield f
    event_mod.EVENT_FROM_DELAY = saved


# -- hostile values --------------------------------------------------------------------------


def resolve(fuzz, v):
    """Replace object placeholders by the world's current refs, uuids and names."""
    if isinstance(v, str) and v.startswith("@obj"):
        objs = fuzz.object_values()
        return objs[int(v[4:]) % len(objs)] if objs else "OpaqueRef:NULL"
    if isinstance(v, list):
        return [resolve(fuzz, x) for x in v]
    if isinstance(v, dict):
        return {resolve(fuzz, k): resolve(fuzz, x) for k, x in v.items()}
    return v


def scalars(extra=OBJECTS):
    return st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=24),
        st.sampled_from(
            [
                "",
                "OpaqueRef:NULL",
                "OpaqueRef:0",
                "Running",
                "rUnNiNg",
                "1e3",
                "-1",
                "0x10",
                "nan",
                "00000000000000000001,00000000000000000000",
                "*",
                "VM/OpaqueRef:x",
                "\ud800",
                "\x00",
                "é€🙂",
                "a" * 5000,
                'field "name__label" = "x"',
                "((",
                *extra,
            ]
        ),
        st.none(),
        st.binary(max_size=8),
        st.builds(Timestamp, st.text(max_size=20)),
    )


def hostile(extra=OBJECTS):
    return st.recursive(
        scalars(extra),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=8,
    )


def typed_pools(extra=OBJECTS):
    """Well-typed but hostile scalars, per kind: what reaches the operations themselves."""
    text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=16)
    return st.fixed_dictionaries(
        {
            "str": st.lists(
                st.one_of(text, st.sampled_from(["", "*", "((", "OpaqueRef:NULL", *extra])),
                min_size=5,
                max_size=5,
            ),
            "ref": st.lists(
                st.one_of(
                    st.sampled_from(["OpaqueRef:NULL", "", "OpaqueRef:", *extra]),
                    st.uuids().map(lambda u: f"OpaqueRef:{u}"),
                ),
                min_size=5,
                max_size=5,
            ),
            "int": st.lists(
                st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 64).map(str)),
                min_size=4,
                max_size=4,
            ),
            "float": st.lists(st.one_of(st.floats(), st.integers(-5, 5)), min_size=3, max_size=3),
            "bool": st.lists(st.booleans(), min_size=2, max_size=2),
            "datetime": st.lists(
                st.one_of(text, st.datetimes().map(lambda d: d.strftime("%Y%m%dT%H:%M:%SZ"))),
                min_size=2,
                max_size=2,
            ),
        }
    )


def typed_value(fuzz, ty, pools, i):
    """A value of type ``ty`` built from the drawn pools (varies with ``i``)."""

    def pick(kind):
        vals = pools[kind]
        return vals[i % len(vals)]

    if ty is None:  # control API: untyped
        return pick("ref") if i % 2 else pick("str")
    k = ty.kind
    if k in ("string", "int", "float", "bool", "datetime"):
        return pick(k if k != "string" else "str")
    if k == "ref":
        if i % 3 == 0:  # a real object, of this class or not
            objs = fuzz.object_values()
            return objs[i % len(objs)] if objs else pick("ref")
        return pick("ref")
    if k == "enum":
        vals = ENUMS.get(ty.name) or [""]
        v = vals[i % len(vals)]
        return [v, v.upper(), pick("str")][i % 3]
    if k == "set":
        return [typed_value(fuzz, ty.elem, pools, i + j + 1) for j in range(i % 3)]
    if k == "map":
        return {
            str(typed_value(fuzz, ty.key, pools, i + j)): typed_value(
                fuzz, ty.elem, pools, i + j + 2
            )
            for j in range(i % 3)
        }
    if k == "record":
        cls = fuzz.world.pools[0].schema.classes.get(ty.name)
        fields = list(cls.fields.values()) if cls else []
        return {
            f.name: typed_value(fuzz, f.type, pools, i + j)
            for j, f in enumerate(fields)
            if (i + j) % 2
        }
    return pick("str")


def clamp(name, args, position):
    """Keep the fuzz from blocking: event.from waits up to its timeout (4th parameter)."""
    if name == "event.from" and len(args) == 4:
        t = args[3]
        try:
            if isinstance(t, bool) or float(t) > 0.05 or float(t) != float(t):
                args[3] = 0.0
        except (TypeError, ValueError, OverflowError):
            if position != 3:
                args[3] = 0.0
    return args


def sweep(fuzz, palette, pools):
    """Every method, every position: the fuzzed position gets a hostile value of any type
    from ``palette`` and a well-typed hostile one built from ``pools``; the other positions
    get their defaults. Returns the problems found."""
    problems = []
    n = len(palette)
    for i, (name, types, _msg) in enumerate(fuzz.methods):
        if name == "event.next":
            continue  # blocks by design until an event arrives
        read_only = READ_ONLY.search(name) is not None and not name.startswith("event.")
        for pos in range(len(types)):
            for k in (0, 1):
                args = [fuzz.default(t, j) for j, t in enumerate(types)]
                args[pos] = (
                    palette[(i + pos * 3) % n]
                    if k == 0
                    else typed_value(fuzz, types[pos], pools, i + pos)
                )
                args = clamp(name, resolve(fuzz, args), pos)
                fuzz.changes.clear()
                ok, out = fuzz.call(name, args)
                where = f"{name} position {pos} value {args[pos]!r:.80}"
                if not ok:
                    why = "escaped Python exception" if out[0] == "PYTHON" else bug_in(out)
                    if why:
                        problems.append(f"{where}: {why}: {out!r:.300}")
                    elif fuzz.changes:
                        problems.append(
                            f"{where}: rejected with {out[0]} but changed {fuzz.changes[:3]}"
                        )
                elif read_only and fuzz.changes:
                    problems.append(f"{where}: read-only call changed {fuzz.changes[:3]}")
                if not fuzz.db.exists("session", fuzz.session):
                    fuzz.session = fuzz.login()
    return problems


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=st.data())
def test_every_parameter_of_every_message(fuzz, data):
    palette = data.draw(st.lists(hostile(), min_size=11, max_size=11))
    pools = data.draw(typed_pools())
    problems = sweep(fuzz, palette, pools)
    assert not problems, "\n".join(problems[:30])
    # the world is still whole and serving
    assert fuzz.call("pool.get_all", [fuzz.session])[0]
    assert fuzz.call("VM.get_all_records", [fuzz.session])[0]


def test_type_errors_are_rpclibs(fuzz):
    """The answer to a wrong type is XAPI's INTERNAL_ERROR with rpclib's text."""
    vm = fuzz.default(fuzz.world.pools[0].schema.classes["VM"].messages["start"].params[1].type, 1)
    assert fuzz.call("VM.start", [fuzz.session, vm, "true", False]) == (
        False,
        ["INTERNAL_ERROR", "Failure(\"Expected bool, got 'S(true)'\")"],
    )
    assert fuzz.call("VM.get_record", [fuzz.session, 5]) == (
        False,
        ["INTERNAL_ERROR", "Failure(\"Expected string, got 'I(5)'\")"],
    )
    assert fuzz.call("VM.set_VCPUs_max", [fuzz.session, vm, "many"]) == (
        False,
        ["INTERNAL_ERROR", 'Failure("int_of_string")'],
    )


def test_async_calls_with_hostile_values_fail_inside_their_task(fuzz):
    palette = ["", 5, None, [1], {"a": {}}, "OpaqueRef:NULL", float("nan"), True]
    tasks = []
    for i, (name, types, msg) in enumerate(fuzz.methods):
        if msg is None or not async_capable(msg) or i % 3:
            continue
        for pos in range(1, len(types)):
            args = [fuzz.default(t, j) for j, t in enumerate(types)]
            args[pos] = palette[(i + pos) % len(palette)]
            ok, out = fuzz.call("Async." + name, args)
            if ok:
                tasks.append((name, pos, out))
            else:
                assert bug_in(out) is None and out[0] != "PYTHON", (name, pos, out)
    assert tasks
    deadline = time.monotonic() + 10
    for name, pos, task in tasks:
        while fuzz.db.tables["task"][task]["status"] == "pending":
            assert time.monotonic() < deadline, f"Async.{name} still pending"
            time.sleep(0.01)
        row = fuzz.db.tables["task"][task]
        if row["status"] == "failure":
            assert bug_in(row["error_info"]) is None, (name, pos, row["error_info"])


# -- over the wire -----------------------------------------------------------------------------


def _xml_safe(v):
    """What xmlrpc.client can send: ints within 32 bits, bytes as base64."""
    if isinstance(v, bool) or v is None or isinstance(v, float):
        return v
    if isinstance(v, str):
        return str(v)  # a Timestamp travels as its text
    if isinstance(v, int):
        return v if -(2**31) <= v < 2**31 else str(v)
    if isinstance(v, bytes):
        return xmlrpc.client.Binary(v)
    if isinstance(v, list):
        return [_xml_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _xml_safe(x) for k, x in v.items()}
    return str(v)


def _json_safe(v):
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    return v


@pytest.fixture(scope="module")
def served():
    from xapi_sim.testing import running_world

    with running_world(seed=5) as w:
        yield w


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_sample_over_the_wire(served, wire, data):
    url = served.master_url()
    session = wire.login(url)
    fuzz = Fuzz.__new__(Fuzz)  # reuse the defaults, against the served world
    fuzz.world, fuzz.master = served.world, served.world.pools[0].master
    fuzz.db, fuzz.session = fuzz.master.db, session
    schema = fuzz.master.pool.schema
    # not what would take the served endpoint away from the next examples (a master shut
    # down, ejected or destroyed, the password changed): the in-process sweep covers those
    names = sorted(
        n
        for n in Dispatcher(served.world).list_methods(fuzz.master)
        if n
        not in ("event.next", "session.logout", "session.local_logout", "session.change_password")
        and not re.search(r"shutdown|reboot|eject|destroy|restart_agent", n)
    )
    name = data.draw(st.sampled_from(names))
    msg = schema.message(name)
    types = [p.type for p in msg.params] if msg else []
    args = [fuzz.default(t, j) for j, t in enumerate(types)]
    if args:
        pos = data.draw(st.integers(0, len(args) - 1))
        args[pos] = data.draw(hostile())
        args = clamp(name, resolve(fuzz, args), pos)
    if data.draw(st.booleans()):
        body = xmlrpc.client.dumps(tuple(_xml_safe(a) for a in args), name, allow_none=True).encode(
            "utf-8", "surrogatepass"
        )
        r = wire.post(url, body)
        assert r.status in (200, 500), r.status
        if r.status == 200:
            assert b"<name>Status</name>" in r.body
            if b"<value>Failure</value>" in r.body:
                desc = r.xml()["ErrorDescription"]
                assert bug_in(desc) is None, (name, args, desc)
        else:
            assert b"Parse_error" in r.body  # e.g. a lone surrogate: not valid XML
    else:
        try:
            body = json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": name, "params": _json_safe(args)}
            ).encode()
        except (TypeError, ValueError):
            return
        r = wire.post(url, body, path="/jsonrpc", headers={"Content-Type": "application/json"})
        assert r.status == 200, r.body
        reply = json.loads(r.body)
        if "error" in reply:
            desc = [reply["error"]["message"], *reply["error"]["data"]]
            assert bug_in(desc) is None, (name, args, desc)
    assert wire.xml(url, "pool.get_all", session)["Status"] == "Success"  # still up


# -- concurrent logout of a session in use -----------------------------------------------------


def test_logout_of_a_session_in_use(fresh_world, wire):
    url = fresh_world.master_url()
    victim = wire.login(url)
    token = wire.xml_ok(url, "event.from", victim, ["vm"], "", 0.0)["token"]
    assert wire.xml_ok(url, "event.register", victim, ["vm"]) == ""
    stop = threading.Event()
    outcomes, lock = [], threading.Lock()

    def record(kind, desc, t0):
        with lock:
            outcomes.append((kind, desc, time.monotonic() - t0))

    def caller(i):
        method = ["VM.get_all_records", "pool.get_all", "host.get_all_records"][i % 3]
        while not stop.is_set():
            t0 = time.monotonic()
            out = wire.xml(url, method, victim)
            if out["Status"] == "Failure":
                record("call", out["ErrorDescription"], t0)
                return

    def waiter(method, *params):
        t0 = time.monotonic()
        out = wire.xml(url, method, victim, *params)
        record(method, out.get("ErrorDescription", out["Status"]), t0)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
    threads += [
        threading.Thread(target=waiter, args=("event.from", ["vm"], token, 60.0)) for _ in range(6)
    ]
    threads += [threading.Thread(target=waiter, args=("event.next",)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    other = wire.login(url)
    assert wire.xml_ok(url, "session.logout", victim) == ""
    for t in threads:
        t.join(10)
    stop.set()
    assert not any(t.is_alive() for t in threads), "a call on the logged-out session hangs"
    assert len(outcomes) == len(threads)
    for kind, desc, _ in outcomes:
        assert desc == ["SESSION_INVALID", victim], (kind, desc)
    assert time.monotonic() - t0 < 5  # the waiters were woken, not timed out
    assert wire.xml_ok(url, "pool.get_all", other)
    assert wire.xml_err(url, "pool.get_all", victim) == ["SESSION_INVALID", victim]


# -- regressions of fuzz findings ----------------------------------------------------------------


def test_a_negative_chunk_size_is_refused(served, wire):
    """``rfile.read(-5)`` would read until the client closes: a stalled worker thread."""
    url = served.master_url()
    t0 = time.monotonic()
    data = wire.exchange(
        url,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n<methodCall>",
        timeout=5,
    )
    assert data.startswith(b"HTTP/1.1 400 ")
    assert time.monotonic() - t0 < 4
    session = wire.login(url)
    assert wire.xml_ok(url, "pool.get_all", session)


@pytest.fixture
def not_a_xapi():
    """An XML-RPC server on loopback whose answers are not XAPI envelopes."""
    import http.server

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            body = xmlrpc.client.dumps((["not", "a", "struct"],), methodresponse=True).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("master", ["http://127.0.0.1:notaport/", "http://[::1/", "SERVER"])
def test_a_garbage_migration_destination_is_a_xapi_error(fuzz, not_a_xapi, master):
    """VM.migrate_send / assert_can_migrate to a ``dest`` whose master URL has a bad port,
    is not a URL, or is an XML-RPC server that is not a XAPI (cross_pool.py)."""
    # a VM migrate_send's own check admits (the sweep may have paused or blocked some)
    vm = next(
        r
        for r, row in fuzz.db.tables["VM"].items()
        if not row["is_a_template"]
        and not row["is_control_domain"]
        and row["power_state"] != "Paused"
        and not row["current_operations"]
    )
    assert fuzz.call("VM.set_blocked_operations", [fuzz.session, vm, {}])[0]
    dest = {
        "master": not_a_xapi if master == "SERVER" else master,
        "host": "OpaqueRef:x",
        "session_id": "OpaqueRef:y",
    }
    for method in ("VM.migrate_send", "VM.assert_can_migrate"):
        ok, out = fuzz.call(method, [fuzz.session, vm, dest, True, {}, {}, {}])
        assert (ok, out) == (False, ["VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED"])


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"sockets": 0}, "sockets"),
        ({"sockets": 10**6}, "sockets"),
        ({"sockets": True}, "sockets"),
        ({"sockets": 2.7}, "sockets"),
        ({"cpus_per_socket": -3}, "cpus_per_socket"),
        ({"sockets": 16, "cpus_per_socket": 64}, "cpus_per_socket"),
        ({"memory": 1}, "memory"),
        ({"memory": 2**80}, "memory"),
        ({"memory": "-5"}, "memory"),
    ],
)
def test_impossible_hardware_is_refused_before_it_is_staged(fuzz, changes, field):
    """sim.host_set_hardware staged hardware the next xapi start could not build (a
    ValueError at every later start, or millions of host_cpu rows)."""
    host = next(iter(fuzz.db.tables["host"]))
    staged = fuzz.world.hosts[host].next_hw
    ok, out = fuzz.call("sim.host_set_hardware", [fuzz.session, host, changes])
    assert not ok and out[:2] == ["INVALID_VALUE", field], out
    assert fuzz.world.hosts[host].next_hw is staged
