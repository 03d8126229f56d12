"""The benchmarks' client side, run in a process of its own (``python -m xapi_sim.bench_load
SPEC``, SPEC a JSON object; the result is one JSON object on stdout).

One thread drives every connection with a selector: requests are pre-encoded bytes, replies
are framed by their ``content-length`` and only checked for success, so the client costs
little per call and never queues its connections behind its own interpreter lock. The
servers it measures (xapi-sim, the stdlib floors of ``bench_floor``) each run in another
process. Modes:

* ``rate`` (``rates``: several in turn): ``clients`` keep-alive connections each calling
  ``VM.get_power_state`` in a loop (a new request as soon as the previous reply is whole)
  for ``seconds`` after a warm-up; answers calls per second. With ``targets`` the
  connections are spread over several endpoints (pool masters), each with its own session.
* ``events``: ``waiters`` connections each blocked in ``event.from(["pool"], token, 30)``;
  one ``pool.add_to_other_config`` on another connection; the time from sending that change
  to each waiter's whole reply, over ``rounds`` rounds. Where the system can (Linux's
  ``SO_TIMESTAMPNS``), a reply is stamped when the kernel received its last bytes, so this
  client's own work on the other replies of a round is not counted (``latencies_s``); the
  time the selector reported it (the client's view: a reply that arrived while earlier ones
  were being read waits for the next ``select``) is ``seen_latencies_s``. Without kernel
  stamps both are the selector's.
* ``burst``: ``clients`` connections send the same call at once (``method``/``params``,
  the session prepended); answers each reply's size and the time until all are read.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import socket
import struct
import sys
import time
import xmlrpc.client
from typing import Any


def encode(proto: str, method: str, params: list) -> bytes:
    """The body of one call."""
    if proto == "json":
        return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    return xmlrpc.client.dumps(tuple(params), method, allow_none=True).encode()


def request(proto: str, host: str, port: int, body: bytes) -> bytes:
    path = "/jsonrpc" if proto == "json" else "/"
    ctype = "application/json" if proto == "json" else "text/xml"
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: {ctype}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


def call(proto: str, host: str, port: int, method: str, params: list) -> Any:
    """One blocking call (set-up only); the value, or RuntimeError on an API failure."""
    c = http.client.HTTPConnection(host, port, timeout=60)
    try:
        path = "/jsonrpc" if proto == "json" else "/"
        c.request("POST", path, encode(proto, method, params), {"content-type": "text/xml"})
        data = c.getresponse().read()
    finally:
        c.close()
    return decode(proto, data)


def decode(proto: str, data: bytes) -> Any:
    if proto == "json":
        rep = json.loads(data)
        if rep.get("error"):
            raise RuntimeError(rep["error"])
        return rep["result"]
    env: Any = xmlrpc.client.loads(data)[0][0]
    if env["Status"] != "Success":
        raise RuntimeError(env["ErrorDescription"])
    return env["Value"]


class Conn:
    """One non-blocking keep-alive connection with at most one call in flight."""

    __slots__ = (
        "sock",
        "out",
        "buf",
        "need",
        "head_end",
        "sent_at",
        "on_reply",
        "seen_at",
        "req",
        "kernel_at",
        "stamps",
    )

    def __init__(self, host: str, port: int, stamps: bool = False):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.kernel_at = 0.0  # wall-clock time the kernel received the last bytes read
        self.stamps = stamps and KERNEL_STAMPS  # (events: each reply's arrival)
        if self.stamps:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.out = b""
        self.buf = bytearray()
        self.need = -1  # bytes of the whole reply once its head is read
        self.head_end = 0
        self.sent_at = 0.0
        self.on_reply: Any = None
        self.seen_at = 0.0  # when select last reported it readable
        self.req = b""  # the request it repeats (rate)

    def send(self, data: bytes) -> None:
        self.sent_at = time.perf_counter()
        self.out = data
        self.flush()

    def flush(self) -> None:
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            n = 0
        if n < len(self.out):  # rare (requests are small): finish it blocking
            self.sock.setblocking(True)
            try:
                self.sock.sendall(self.out[n:])
            finally:
                self.sock.setblocking(False)
        self.out = b""

    def readable(self) -> bytes | None:
        """Read what is there; the reply body once whole (then ready for the next)."""
        try:
            if self.stamps:
                n, anc, _flags, _addr = self.sock.recvmsg_into([_SCRATCH], 64)
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", data[:16])
                        self.kernel_at = sec + nsec * 1e-9
            else:
                n = self.sock.recv_into(_SCRATCH)
        except BlockingIOError:
            return None
        # (into one buffer: recv(RECV_SIZE) allocates that much per read, an mmap and an
        # munmap each in a fresh process -- this client's cost, not the server's)
        chunk = bytes(_SCRATCH[:n])
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            self.head_end = end + 4
            length = None
            for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if length is None:
                raise ConnectionError("a reply without content-length")
            self.need = self.head_end + length
        if len(self.buf) < self.need:
            return None
        body = bytes(self.buf[self.head_end : self.need])
        del self.buf[: self.need]
        self.need = -1
        return body


RECV_SIZE = 256 * 1024
_SCRATCH = memoryview(bytearray(RECV_SIZE))  # one thread reads every connection
# Linux: SO_TIMESTAMPNS (= SCM_TIMESTAMPNS) gives each read the kernel's receive time
# (CLOCK_REALTIME, struct timespec); the socket module does not name it.
SO_TIMESTAMPNS = 35
KERNEL_STAMPS = sys.platform == "linux"


def _ok(proto: str, body: bytes) -> bool:
    return b'"result"' in body if proto == "json" else b">Success</" in body[:400]


def _loop(sel: selectors.BaseSelector, until, stop_at: float) -> None:
    """Serve readiness until ``until()`` or the deadline (then TimeoutError)."""
    while not until():
        left = stop_at - time.perf_counter()
        if left <= 0:
            raise TimeoutError("the server did not answer in time")
        ready = sel.select(min(left, 1.0))
        now = time.perf_counter()  # the bytes were there by now, however long we take below
        for key, _mask in ready:
            c: Conn = key.data
            c.seen_at = now
            body = c.readable()
            if body is not None:
                c.on_reply(c, body)


def rates(spec: dict) -> dict:
    """Several ``rate`` runs in turn (``runs``: their specs), from this one process."""
    return {"runs": [rate({**spec, **run}) for run in spec["runs"]]}


def rate(spec: dict) -> dict:
    """``targets`` (a list of {host, port, vm}; default the spec's own host, port and vm):
    connection i calls on target i modulo their number, each with a session of its own
    pool -- several pools' masters, or one server, under one load."""
    proto = spec["proto"]
    targets = spec.get("targets") or [
        {"host": spec["host"], "port": spec["port"], "vm": spec.get("vm", "web1")}
    ]
    reqs = []
    for t in targets:
        host, port = t["host"], t["port"]
        sess = call(proto, host, port, "session.login_with_password", ["root", "xenroot"])
        vm = call(proto, host, port, "VM.get_by_name_label", [sess, t.get("vm", "web1")])[0]
        body = encode(proto, spec.get("method", "VM.get_power_state"), [sess, vm])
        reqs.append((host, port, request(proto, host, port, body)))
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(spec["clients"]):
        host, port, req = reqs[i % len(reqs)]
        conns.append(Conn(host, port))
        conns[-1].req = req
    state = {"count": 0, "bad": 0, "measuring": False, "all": 0}

    def on_reply(c: Conn, body: bytes) -> None:
        if not _ok(proto, body):
            state["bad"] += 1
        if state["measuring"]:
            state["count"] += 1
        state["all"] += 1
        c.send(c.req)

    for c in conns:
        c.on_reply = on_reply
        sel.register(c.sock, selectors.EVENT_READ, c)
        c.send(c.req)
    start = time.perf_counter()
    warm = start + spec.get("warmup", 0.2)
    _loop(sel, lambda: time.perf_counter() >= warm, warm + 60)
    state["measuring"] = True
    t0 = time.perf_counter()
    end = t0 + spec["seconds"]
    _loop(sel, lambda: time.perf_counter() >= end, end + 60)
    wall = time.perf_counter() - t0
    for c in conns:
        c.sock.close()
    if state["bad"]:
        raise RuntimeError(f"{state['bad']} calls failed")
    return {
        "calls": state["count"],
        "seconds": wall,
        "calls_per_s": state["count"] / wall,
        "total_calls": state["all"],  # warm-up included, over total_s
        "total_s": time.perf_counter() - start,
    }


def events(spec: dict) -> dict:
    proto, host, port = spec["proto"], spec["host"], spec["port"]
    sess = call(proto, host, port, "session.login_with_password", ["root", "xenroot"])
    pool = call(proto, host, port, "pool.get_all", [sess])[0]
    sel = selectors.DefaultSelector()
    waiters = [Conn(host, port, stamps=True) for _ in range(spec["waiters"])]
    trigger = Conn(host, port)
    lat: list[float] = []
    seen: list[float] = []
    for r in range(spec["rounds"]):
        token = call(proto, host, port, "event.from", [sess, ["pool"], "", 0.0])["token"]
        req = request(proto, host, port, encode(proto, "event.from", [sess, ["pool"], token, 30.0]))
        done: list[tuple[float, float]] = []  # (seen by select, received by the kernel)
        state = {"changed": 0.0, "trigger_back": False}

        def on_reply(c: Conn, body: bytes, done: list = done) -> None:
            done.append((c.seen_at, c.kernel_at))
            if not _ok(proto, body):
                raise RuntimeError(f"event.from failed: {body[:300]!r}")

        def on_trigger(c: Conn, body: bytes, state: dict = state) -> None:
            if not _ok(proto, body):
                raise RuntimeError(f"the change failed: {body[:300]!r}")
            state["trigger_back"] = True

        for c in waiters:
            c.on_reply = on_reply
            sel.register(c.sock, selectors.EVENT_READ, c)
            c.send(req)
        time.sleep(0.3)  # every waiter is blocked (event.from first sleeps 50 ms)
        key = f"bench-{os.getpid()}-{r}"  # a new key each round of each run
        change = encode(proto, "pool.add_to_other_config", [sess, pool, key, "v"])
        trigger.on_reply = on_trigger
        sel.register(trigger.sock, selectors.EVENT_READ, trigger)
        wall0 = time.time()  # the kernel's clock, for its stamps
        t0 = time.perf_counter()
        trigger.send(request(proto, host, port, change))
        _loop(
            sel,
            lambda done=done, state=state: len(done) == len(waiters) and state["trigger_back"],
            t0 + 30,
        )
        for c in [*waiters, trigger]:
            sel.unregister(c.sock)
        seen += [t - t0 for t, _k in done]
        lat += [k - wall0 if KERNEL_STAMPS else t - t0 for t, k in done]
    for c in [*waiters, trigger]:
        c.sock.close()
    lat.sort()
    seen.sort()
    return {"latencies_s": lat, "seen_latencies_s": seen, "kernel_stamps": KERNEL_STAMPS}


def burst(spec: dict) -> dict:
    proto, host, port = spec["proto"], spec["host"], spec["port"]
    sess = call(proto, host, port, "session.login_with_password", ["root", "xenroot"])
    req = request(proto, host, port, encode(proto, spec["method"], [sess, *spec["params"]]))
    sel = selectors.DefaultSelector()
    conns = [Conn(host, port) for _ in range(spec["clients"])]
    sizes: list[int] = []

    def on_reply(c: Conn, body: bytes) -> None:
        if not _ok(proto, body):
            raise RuntimeError(f"{spec['method']} failed: {body[:300]!r}")
        sizes.append(len(body))

    t0 = time.perf_counter()
    for c in conns:
        c.on_reply = on_reply
        sel.register(c.sock, selectors.EVENT_READ, c)
        c.send(req)
    _loop(sel, lambda: len(sizes) == len(conns), t0 + spec.get("timeout", 600))
    wall = time.perf_counter() - t0
    for c in conns:
        c.sock.close()
    return {"reply_bytes": sizes, "seconds": wall}


MODES = {"rate": rate, "rates": rates, "events": events, "burst": burst}


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    out = MODES[spec["mode"]](spec)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
