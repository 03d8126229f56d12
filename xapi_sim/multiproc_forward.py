"""One control API over the children of ``serve --workers N`` (``multiproc.py``).

Each child serves its own pools; a control call (``sim.*``, docs/control-api.md) may arrive
at any host's endpoint and name a host or VM of another child, or ask about the whole world.
:class:`Forwarder` wraps the child's dispatcher: every other call passes straight through;
a control call is answered here, forwarded to the child owning its target, or gathered from
every child:

* a host or VM named by ref (``host_set_hardware``, ``host_power_on``, ``host_crash``,
  ``host_install``, ``vm_set_last_boot_CPU_flags``, ``vm_set_pv_drivers``): run here if the
  object is here, else by each other child in turn until one knows it (``HANDLE_INVALID``
  when none does);
* ``world``, ``auth_stats``, ``fault_list``: every child's answer merged;
* ``fault_add``: one rule id for the world, the rule added to every child where it is valid
  (a ``host`` filter is valid only in the child holding that host); ``fault_clear`` in every
  child; a rule's ``count`` is counted per child;
* ``add_host``: the name checked against the whole world, the host made in this child;
* ``cpu_features``: answered here.

A session of any child is accepted at any endpoint, as a session of any pool is in one
process. The children talk over a control port each (a stdlib HTTP server on loopback,
:class:`ControlPort`) that accepts only calls carrying the world's token, a secret the
parent hands its children in their environment; a control port answers even when every host
of its child is down (a ``sim.host_power_on`` must still reach it).
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import os
import socketserver
import threading

from .dispatch import CONTROL, Call
from .errors import Failure
from .faults import Faults, parse_rule, wrap
from .tasks import run_transaction

log = logging.getLogger(__name__)

FORWARD_TIMEOUT = 120.0  # seconds: one forwarded call (a host's boot runs inside it)
FAULT_IDS_PER_CHILD = 1_000_000  # child i numbers its fault rules from i * this + 1

_HOST_TARGET = {"sim.host_set_hardware", "sim.host_power_on", "sim.host_crash", "sim.host_install"}
_VM_TARGET = {"sim.vm_set_last_boot_CPU_flags", "sim.vm_set_pv_drivers"}
# internal calls between children (control port only)
_SESSION_KNOWN = "worker.session_known"
_FAULT_ADD_AS = "worker.fault_add_as"


class _Unreachable(Exception):
    """A child's control port did not answer."""


class Forwarder:
    """A child's dispatcher with control calls spread over the world's children."""

    def __init__(self, inner, spec: dict):
        self.inner = inner
        self.world = inner.world
        self.token: str = spec["token"]
        self.index: int = spec["index"]
        self.peers_path: str = spec["peers"]
        self._peers: list[str] | None = None
        Faults.of(self.world).next_id = self.index * FAULT_IDS_PER_CHILD + 1

    def __getattr__(self, name):
        return getattr(self.inner, name)

    # -- the other children --------------------------------------------------------------
    def peers(self) -> list[str]:
        """The control URLs of the other children ([] until the parent wrote them)."""
        if self._peers is None:
            try:
                with open(self.peers_path) as fh:
                    every = json.load(fh)
            except (OSError, ValueError):
                return []
            self._peers = [u for i, u in enumerate(every) if i != self.index]
        return self._peers

    def remote(self, url: str, method: str, params: list):
        """One call on another child's control port: its value, or its Failure raised."""
        host, _, port = url.partition(":")
        body = json.dumps({"token": self.token, "method": method, "params": params})
        conn = http.client.HTTPConnection(host, int(port), timeout=FORWARD_TIMEOUT)
        try:
            conn.request("POST", "/", body.encode(), {"content-type": "application/json"})
            reply = json.loads(conn.getresponse().read())
        except (OSError, ValueError, http.client.HTTPException) as e:
            log.warning("worker control port %s: %s %s", url, method, e)
            raise _Unreachable(url) from e
        finally:
            conn.close()
        if "error" in reply:
            raise Failure(*reply["error"])
        return reply["value"]

    def each_peer(self, method: str, params: list):
        """(url, value or Failure) of every other child that answers."""
        for url in self.peers():
            try:
                yield url, self.remote(url, method, params)
            except Failure as e:
                yield url, e
            except _Unreachable:
                continue

    # -- entry point ---------------------------------------------------------------------
    def dispatch(self, host, method, params, **kw):
        if method not in CONTROL:
            return self.inner.dispatch(host, method, params, **kw)
        fn, n = CONTROL[method]
        if len(params) != n:
            return self.inner.dispatch(host, method, params, **kw)  # its count error
        session = params[0]
        if not isinstance(session, str) or self.world.find_session(session) is None:
            if not isinstance(session, str) or not self._known_elsewhere(session):
                raise Failure("SESSION_INVALID", str(session))
        return self.route(host, method, list(params[1:]))

    def _known_elsewhere(self, session: str) -> bool:
        return any(v is True for _, v in self.each_peer(_SESSION_KNOWN, [session]))

    def local(self, host, method: str, args: list):
        """Run a control call here without its session check (the caller checked it, or the
        call came from another child with the world's token)."""
        fn, n = CONTROL[method]
        if len(args) != n - 1:
            raise Failure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, n - 1, len(args))
        call = Call(self.world, host, method)
        faults = self.world.existing_service(Faults)
        if faults is not None and faults.rules:
            fn = wrap(faults, fn, method)
        return run_transaction(self.world, fn, call, args)

    def route(self, host, method: str, args: list):
        """A control call whose session was checked: here, elsewhere, or everywhere."""
        if method in _HOST_TARGET or method in _VM_TARGET:
            target = args[0]
            if not isinstance(target, str) or self._here(method, target):
                return self.local(host, method, args)
            for _, v in self.each_peer(method, args):
                if not (isinstance(v, Failure) and v.code == "HANDLE_INVALID"):
                    if isinstance(v, Failure):
                        raise v
                    return v
            return self.local(host, method, args)  # this child's HANDLE_INVALID
        special = _ROUTES.get(method)
        if special is not None:
            return special(self, host, args)
        return self.local(host, method, args)

    def _here(self, method: str, ref: str) -> bool:
        if method in _HOST_TARGET:
            return ref in self.world.hosts
        return any(p.db.exists("VM", ref) for p in self.world.pools)

    # -- calls answered by the whole world -------------------------------------------------
    def _world(self, host, args):
        pools = list(self.local(host, "sim.world", args)["pools"])
        for _, v in self.each_peer("sim.world", args):
            if isinstance(v, Failure):
                raise v
            pools += v["pools"]
        pools.sort(
            key=lambda p: (len(p["hosts"]) == 1, p["name_label"], p["hosts"][0]["name_label"])
        )
        return {"pools": pools}

    def _auth_stats(self, host, args):
        out = dict(self.local(host, "sim.auth_stats", args))
        for _, v in self.each_peer("sim.auth_stats", args):
            if isinstance(v, Failure):
                raise v
            out.update(v)
        return out

    def _add_host(self, host, args):
        spec = args[0]
        name = spec.get("name_label") if isinstance(spec, dict) else None
        if isinstance(name, str):
            for _, v in self.each_peer("sim.world", []):
                if isinstance(v, dict) and any(
                    h["name_label"] == name for p in v["pools"] for h in p["hosts"]
                ):
                    raise Failure("INVALID_VALUE", "name_label", f"a host named {name!r} exists")
        return self.local(host, "sim.add_host", args)

    def _fault_add(self, host, args):
        faults = Faults.of(self.world)
        with faults.lock:
            rid = f"fault-{faults.next_id}"
            faults.next_id += 1
        errors: list[Failure] = []
        added = False
        try:
            self.fault_add_as(args[0], rid)
            added = True
        except Failure as e:
            errors.append(e)
        for _, v in self.each_peer(_FAULT_ADD_AS, [args[0], rid]):
            if isinstance(v, Failure):
                errors.append(v)
            else:
                added = True
        if not added:
            raise errors[0]
        return rid

    def fault_add_as(self, spec, rid: str) -> None:
        """Add rule ``spec`` here under the world-wide id ``rid``."""
        faults = Faults.of(self.world)
        rule = parse_rule(self.world, spec, rid)
        with faults.lock:
            faults.rules[rid] = rule

    def _fault_list(self, host, args):
        merged: dict[str, dict] = {}
        answers = [self.local(host, "sim.fault_list", args)]
        answers += [v for _, v in self.each_peer("sim.fault_list", args)]
        for rules in answers:
            if isinstance(rules, Failure):
                raise rules
            for r in rules:
                if r["id"] in merged:
                    for k in ("hits", "seen"):
                        merged[r["id"]][k] = int(merged[r["id"]][k]) + int(r[k])
                else:
                    merged[r["id"]] = dict(r)
        return sorted(merged.values(), key=lambda r: int(r["id"].rpartition("-")[2] or 0))

    def _fault_clear(self, host, args):
        found = False
        first: Failure | None = None
        try:
            self.local(host, "sim.fault_clear", args)
            found = True
        except Failure as e:
            first = e
        for _, v in self.each_peer("sim.fault_clear", args):
            if isinstance(v, Failure):
                first = first or v
            else:
                found = True
        if not found and first is not None:
            raise first

    # -- the control port's side ----------------------------------------------------------
    def serve_internal(self, method: str, params: list):
        """A call from another child (token already checked)."""
        if method == _SESSION_KNOWN:
            return isinstance(params[0], str) and self.world.find_session(params[0]) is not None
        if method == _FAULT_ADD_AS:
            self.fault_add_as(params[0], str(params[1]))
            return None
        if method not in CONTROL:
            raise Failure("MESSAGE_METHOD_UNKNOWN", method)
        return self.local(_any_host(self.world), method, params)


_ROUTES = {
    "sim.world": Forwarder._world,
    "sim.auth_stats": Forwarder._auth_stats,
    "sim.add_host": Forwarder._add_host,
    "sim.fault_add": Forwarder._fault_add,
    "sim.fault_list": Forwarder._fault_list,
    "sim.fault_clear": Forwarder._fault_clear,
}


def _any_host(world):
    """A host of this child to run a forwarded call from (the master of a pool)."""
    for p in world.pools:
        return p.master
    raise Failure("INTERNAL_ERROR", "this worker has no pool")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 -- the stdlib's name
        fw = self.server.forwarder  # type: ignore[attr-defined]
        try:
            size = int(self.headers.get("content-length", "0"))
            req = json.loads(self.rfile.read(size))
            if req.get("token") != fw.token:
                self.send_error(403)
                return
            try:
                out = {"value": fw.serve_internal(req["method"], list(req["params"]))}
            except Failure as e:
                out = {"error": list(e.description)}
        except Exception:  # noqa: BLE001 -- logged with its traceback, answered as XAPI would
            log.exception("worker control port: internal error")
            out = {"error": ["INTERNAL_ERROR", "worker control port"]}
        data = json.dumps(out, default=str).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 -- the stdlib's signature
        log.debug("worker control port: " + format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        # HTTPServer.server_bind looks the name up in DNS (getfqdn); the name is unused
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class ControlPort:
    """The child's control port on loopback: ``url`` is ``127.0.0.1:PORT``."""

    def __init__(self, forwarder: Forwarder):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.forwarder = forwarder  # type: ignore[attr-defined]
        self.url = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="worker-control", daemon=True
        )

    def start(self) -> ControlPort:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def install(sim, spec: dict) -> ControlPort:
    """Make ``sim`` (a Simulator not yet started) a child of ``serve --workers``: its
    dispatcher forwards control calls, and its control port listens; the port's URL is
    written next to the peers file for the parent."""
    fw = Forwarder(sim.dispatcher, spec)
    sim.dispatcher = fw
    port = ControlPort(fw).start()
    path = os.path.join(os.path.dirname(spec["peers"]), f"control-{spec['index']}")
    with open(path + ".tmp", "w") as fh:
        fh.write(port.url)
    os.replace(path + ".tmp", path)
    return port
