"""What a worker does with a complete request of the HTTP front: run its handler, write the
reply, and either serve the connection's next request or give the connection back to the
loop (``Conn.replied``).

The worker interface is ``handler.handle(respond)``: the handler calls
``respond(data, close)`` exactly once, from any thread, at any later time -- today it does
so before ``handle`` returns, so a long-poll (``event.from`` with a timeout) keeps its worker
thread while it waits; a handler that parks such a call and responds from whatever wakes it
needs no change here. A handler may instead take the connection over for an interactive
exchange (``Conn.takeover``: blocking file objects, as the thin-CLI protocol needs) and
respond ``(None, True)`` when done. The registered HTTP handlers (``routes.py``) take the
connection over the same way to stream a body in or a reply out, and give it back
non-blocking with ``(b"", False)`` to keep it alive or ``(None, True)`` to close it.

The worker owns the connection from the hand-over until it posts it back, so nothing here
locks the connection; the loop does not touch it meanwhile.
"""

from __future__ import annotations

import logging
import select
import threading
import time

from ..dispatch import queue_reply
from ..errors import NotQuick
from . import http as _http
from .httpparse import HEAD_END, HttpError, parse_head

log = logging.getLogger(__name__)

WORKER_HOLD = 0.002  # seconds a worker waits for a connection's next request
TAKEOVER_READ = 256 * 1024  # what read() of a taken-over connection asks the socket for

_poll = getattr(select, "poll", None)


def complete_request(buf: bytearray):
    """(head, body) of a whole, plainly framed request at the start of ``buf`` (consumed),
    or None -- incomplete, chunked, ``Expect``-ing, oversized or malformed requests are
    left in place for the loop, which reads them incrementally and refuses them."""
    if buf[:1] in (b"\r", b"\n"):
        return None
    m = HEAD_END.search(buf)
    if m is None or m.end() > _http.MAX_HEAD:
        return None
    try:
        head = parse_head(bytes(buf[: m.end()]))
    except HttpError:
        return None
    if head.method not in _http.METHODS or head.chunked or head.expect_continue:
        return None
    n = head.length or 0
    if (
        (head.method in ("POST", "PUT") and head.length is None)
        or n > _http.MAX_BODY
        or len(buf) - m.end() < n
    ):
        return None
    body = bytes(buf[m.end() : m.end() + n])
    del buf[: m.end() + n]
    return head, body


def serve(conn, handler):
    """Run requests of ``conn`` on this worker: the handed one, then any next one that
    arrives complete within ``WORKER_HOLD`` of the reply (a client calling in a loop
    is served without two thread hand-offs per call)."""
    name = conn.front.name
    while handler is not None:
        lock = threading.Lock()
        box: list = []
        sync = [True]

        def respond(data, close, box=box, sync=sync, lock=lock):
            with lock:
                if box:
                    log.error("front %s: a handler responded twice", name)
                    return
                box.append((data, close))
                if sync[0]:
                    return  # answered within handle(): sent below
            send_reply(conn, data, close)  # answered later, from another thread

        try:
            handler.handle(respond)
        except Exception:  # noqa: BLE001 -- never leave a connection without an answer
            log.exception("front %s: request handler failed", name)
            with lock:
                if not box:
                    box.append((_http.error_reply(500, "internal error"), True))
        with lock:
            sync[0] = False
            answer = box[0] if box else None
        if answer is None:
            return  # parked: whoever completes it responds
        handler = send_reply(conn, answer[0], answer[1], hold=True)


def serve_inline(conn, handler) -> bool:
    """On the loop thread: run ``handler`` there if its request is a quick read (a field, a
    record: no lock to wait for, nothing to write) and send its reply -- no hand-over to a
    worker and back, which for such calls costs more than the call. False, with nothing
    done, when the request is anything else (``NotQuick``): the loop gives it to a worker.
    """
    handler.inline = True
    box: list = []

    def respond(data, close):
        if box:
            log.error("front %s: a handler responded twice", conn.front.name)
            return
        box.append((data, close))

    try:
        handler.handle(respond)
    except NotQuick:
        if box:  # cannot happen: NotQuick comes before anything is done
            log.error("front %s: a quick call answered, then refused", conn.front.name)
        else:
            handler.inline = False
            return False
    except Exception:  # noqa: BLE001 -- never leave a connection without an answer
        log.exception("front %s: request handler failed", conn.front.name)
        if not box:
            box.append((_http.error_reply(500, "internal error"), True))
    if not box:  # a quick call never parks: a bug -- do not leave the client waiting
        log.error("front %s: a quick call did not answer", conn.front.name)
        box.append((_http.error_reply(500, "internal error"), True))
    data, close = box[0]
    rest, close = write_now(conn, data, close)
    conn.replied(rest, close)
    return True


def write_now(conn, data, close):
    """Write what the socket takes now of ``data`` -- the reply's bytes, or a list of
    pieces sent in turn without joining them (a big reply shared by many waiters is not
    copied per connection); (what is left, close)."""
    if type(data) is bytes and data and not conn.pending_out and not conn.tls:
        # the usual: a plain reply in one piece, one send (nothing else between the writes
        # of an answering batch's burst)
        try:
            n = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):  # a plain socket's would-block
            n = 0
        except (OSError, ValueError):
            return b"", True
        return (memoryview(data)[n:] if n < len(data) else b""), close
    pieces = data if isinstance(data, list) else [data] if data else []
    if conn.pending_out and pieces:
        pieces = [conn.pending_out, *pieces]
    conn.pending_out = b""
    rest: bytes | memoryview | list = b""
    for i, piece in enumerate(pieces):
        view = memoryview(piece)
        try:
            pos = conn.send_some(view)
        except (OSError, ValueError):
            close, rest = True, b""
            break
        if pos < len(view):
            rest = [view[pos:], *pieces[i + 1 :]]
            break
    return rest, close


class _Queued:
    """A reply of an answering batch (``dispatch.answering_batch``): written with the
    others in one pass, then its connection given back."""

    __slots__ = ("conn", "data", "close", "rest")

    def __init__(self, conn, data, close):
        self.conn, self.data, self.close = conn, data, close
        self.rest: bytes | memoryview | list = b""  # what the loop still has to write

    def write(self):
        self.rest, self.close = write_now(self.conn, self.data, self.close)

    def done(self):
        give_back(self.conn, self.rest, self.close)


def send_reply(conn, data, close, hold=False):
    """Write what the socket takes now; then either serve the connection's next request
    on this thread (``hold``: it arrived complete within ``WORKER_HOLD``; returns its
    handler) or give the connection back to the loop (returns None). A parked call's reply
    answered in a batch is queued there instead (``dispatch.answering_batch``)."""
    if not hold and queue_reply(_Queued(conn, data, close)):
        return None
    rest, close = write_now(conn, data, close)
    front = conn.front
    if (
        hold
        and not (rest or close or conn.kill or front.stopped)
        and WORKER_HOLD > 0
        and not front.workers.backlog()
    ):
        nxt = next_request(conn)
        if nxt is not None:
            return nxt
    give_back(conn, rest, close)
    return None


def give_back(conn, rest, close) -> None:
    """Post the connection back to its loop (``Conn.replied``: ``rest`` is what the loop
    still has to write), or close it if the loop has stopped."""
    if not conn.front.post(lambda: conn.replied(rest, close)):
        try:
            conn.sock.close()
        except OSError:
            pass  # the loop has stopped and the peer is gone: closed either way


def next_request(conn):
    """Wait up to ``WORKER_HOLD`` for the connection's next request; its handler if it
    came whole and needs nothing special (else the loop takes over, buffer intact).
    A client may send the head and the body in separate writes: keep reading until
    the request is whole or the time is up."""
    if conn.buf:  # pipelined: the next request may be here
        got = complete_request(conn.buf)
        if got is not None:
            return conn.handler_for(*got)
    sock = conn.sock
    front = conn.front
    limit = _http.MAX_HEAD + _http.MAX_BODY
    deadline = time.monotonic() + WORKER_HOLD
    while True:
        left = deadline - time.monotonic()
        try:
            if conn.tls and sock.pending():
                ready = True
            elif left <= 0:
                ready = False
            elif _poll is not None:
                p = _poll()
                p.register(sock, select.POLLIN)
                ready = bool(p.poll(left * 1000))
            else:
                ready = bool(select.select([sock], [], [], left)[0])
            if not ready or conn.kill or front.stopped:
                return None
            conn.fill(limit)
        except (OSError, ValueError):
            return None
        if conn.eof or len(conn.buf) > limit:
            return None
        got = complete_request(conn.buf)
        if got is not None:
            return conn.handler_for(*got)


class Reader:
    """A taken-over connection's reading side: what was buffered, then the socket."""

    def __init__(self, conn):
        self.conn = conn

    def read(self, n=-1):
        buf = self.conn.buf
        if buf:
            take = len(buf) if n is None or n < 0 else min(n, len(buf))
            out = bytes(buf[:take])
            del buf[:take]
            return out
        if n is None or n < 0:
            n = TAKEOVER_READ
        try:
            return self.conn.sock.recv(n)
        except OSError:
            return b""

    def readline(self, limit=-1):
        out = bytearray()
        while limit < 0 or len(out) < limit:
            b = self.read(1)
            if not b:
                break
            out += b
            if b == b"\n":
                break
        return bytes(out)


class Writer:
    """A taken-over connection's writing side (blocking)."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.sendall(data)
        return len(data)

    def flush(self):
        pass
