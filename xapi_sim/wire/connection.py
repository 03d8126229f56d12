"""One connection of the HTTP front and its state machine, run by the loop thread.

A connection starts in ``SNIFF``: its first byte tells TLS (0x16, a handshake record) from
plain HTTP. TLS waits for the host's context if it is not made yet (``TLS_WAIT``, see
``Front.await_tls``) and then shakes hands without blocking (``HANDSHAKE``). In ``HEAD`` it
reads until the request head is complete, parses it (``httpparse.parse_head``) and reads
the body (``BODY``: Content-Length or chunked, ``100 Continue`` sent when asked for) --
unless the request goes to a streaming handler (``routes.py``), which leaves the loop as
soon as its head is in and reads its body itself on the worker. A complete request leaves
the loop (``BUSY``: unregistered, handed with its handler to a
worker, see ``serving.py``); the reply comes back through ``replied``, and what the worker
could not send the loop writes as the peer reads (``WRITE``). Then the next request, which
may already be buffered, or a lingering close (``LINGERING``): the write side is shut down
and what the peer still sends is read and dropped for up to ``LINGER`` seconds, so the reply
is not destroyed by a reset and no byte after a refused request is ever parsed.

Deadlines: ``idle`` while waiting for a request or for the peer to read, ``request_timeout``
from the first byte of a request until it is whole (``408`` if it had begun).
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time

from . import http as _http
from . import routes, serving
from .httpparse import HEAD_END, ChunkedDecoder, HttpError, parse_head, skip_empty_lines

log = logging.getLogger(__name__)

LINGER = 2.0  # seconds of lingering close after a closing reply
RECV_SIZE = 256 * 1024
TLS_SEND_CHUNK = 64 * 1024
INLINE_DEPTH = 8  # pipelined quick reads answered on the loop, one after another, at most

R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
WANT = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

_local = threading.local()


def _scratch() -> memoryview:
    """This thread's receive buffer: ``recv(RECV_SIZE)`` would allocate a bytes object of
    that size per read -- above glibc's mmap threshold until the process has freed a chunk
    as big, so in a fresh process each read costs an mmap and an munmap."""
    view = getattr(_local, "scratch", None)
    if view is None:
        view = _local.scratch = memoryview(bytearray(RECV_SIZE))
    return view


# connection states
SNIFF, TLS_WAIT, HANDSHAKE, HEAD, BODY, BUSY, WRITE, LINGERING, CLOSED = range(9)


def _noop():
    pass


def _streamed(listener, head) -> bool:
    """Whether ``head`` goes to a streaming handler (``routes.py``): it is handed to a
    worker as soon as it is in, its body left to the handler. The listener's own exact
    handlers (``http_handlers``) take buffered bodies."""
    path = head.path
    if head.method == "POST" and (path == "/" or path == "/jsonrpc"):
        return False  # the API itself (the common case, decided without a route search)
    if path in getattr(listener, "http_handlers", {}):
        return False
    route = routes.find(head.method, path)
    return route is not None and route.stream


def deadline_current(conn, when) -> bool:
    """Whether a timer entry ``when`` for ``conn`` still stands (``timers.Timers``)."""
    return conn.deadline == when and conn.state != CLOSED


class Conn:
    """One accepted connection, its parsing state, and its transitions (loop thread, but
    for what a worker does while the connection is ``BUSY``: ``fill``, ``send_some``,
    ``takeover``)."""

    __slots__ = (
        "sock",
        "front",
        "listener",
        "client_address",
        "buf",
        "state",
        "events",
        "deadline",
        "req_deadline",
        "idle",
        "request_timeout",
        "head",
        "decoder",
        "scan",
        "eof",
        "out",
        "out_then",
        "tls",
        "kill",
        "pending_out",
        "out_more",
        "__weakref__",
    )

    def __init__(self, sock, front, listener, addr, idle, request_timeout):
        self.sock = sock
        self.front = front
        self.listener = listener
        self.client_address = addr
        self.buf = bytearray()
        self.state = SNIFF
        self.events = 0
        self.deadline = None
        self.req_deadline = None
        self.idle = idle
        self.request_timeout = request_timeout
        self.head = None
        self.decoder = None
        self.scan = 0
        self.eof = False
        self.out = None  # memoryview being written by the loop
        self.out_more: list = []  # the reply's later pieces, written after ``out``
        self.out_then = None  # what to do once ``out`` is written: "close" | "next"
        self.tls = False
        self.kill = False  # the listener went away: close after the current reply
        self.pending_out = b""  # an interim reply (100 Continue) not yet fully sent

    # -- for workers -----------------------------------------------------------------------
    def takeover(self, timeout):
        """For a handler running on a worker: the connection as blocking file objects
        (reader first returns what was already buffered). The handler must respond
        ``(None, True)`` when done; the front then closes the connection."""
        self.sock.settimeout(timeout)
        if self.pending_out:
            self.sock.sendall(self.pending_out)
            self.pending_out = b""
        return serving.Reader(self), serving.Writer(self.sock)

    def handler_for(self, head, body):
        return self.listener.handler_class(self.listener, self, head, body)

    def fill(self, limit) -> bool:
        """Receive until the socket would block, the peer closes (``eof``) or more than
        ``limit`` bytes are buffered; while lingering, drop what comes. Whether anything
        was buffered; a socket error is raised (OSError, ValueError)."""
        buf = self.buf
        lingering = self.state == LINGERING
        got = False
        scratch = _scratch()
        while True:
            try:
                n = self.sock.recv_into(scratch)
            except WANT:
                return got
            if not n:
                self.eof = True
                return got
            if lingering:
                continue
            if not buf and self.state == HEAD and self.req_deadline is None:
                self.req_deadline = time.monotonic() + self.request_timeout
            buf += scratch[:n]
            got = True
            if len(buf) > limit:
                return got
            if n < RECV_SIZE and not self.tls:
                # the kernel had no more for now: another recv would only fail with
                # EAGAIN (the selector is level-triggered, so more data or an EOF that
                # arrives meanwhile is reported at the next pass)
                return got

    def send_some(self, view) -> int:
        """Send from ``view`` until done or the socket would block (a TLS record at most
        ``TLS_SEND_CHUNK``, retried whole after a would-block); how far it got. A socket
        error is raised (OSError, ValueError)."""
        pos, n = 0, len(view)
        step = TLS_SEND_CHUNK if self.tls else n
        try:
            while pos < n:
                pos += self.sock.send(view[pos : pos + step])
        except WANT:
            pass  # the socket buffer is full: the loop writes the rest later
        return pos

    # -- selector and deadline -------------------------------------------------------------
    def watch(self, events):
        if events == self.events:
            return
        sel = self.front.sel
        if self.events == 0:
            sel.register(self.sock, events, self)
        elif events == 0:
            sel.unregister(self.sock)
        else:
            sel.modify(self.sock, events, self)
        self.events = events

    def set_deadline(self, when):
        self.deadline = when
        front = self.front
        front.timers.at(when, self)
        if when < front.sleep_until and not front.in_loop():
            front.post(_noop)

    def _reading_deadline(self):
        now = time.monotonic()
        if self.req_deadline is None:
            self.set_deadline(now + self.idle)
        else:
            self.set_deadline(min(self.req_deadline, now + self.idle))

    def expired(self):
        if self.state in (HEAD, BODY) and (self.buf or self.state == BODY):
            # a request had begun: tell the client before closing (RFC 9110 §15.5.9)
            self.refuse(HttpError(408, "request not received in time"))
        else:
            self.close()

    def close(self):
        if self.state == CLOSED:
            return
        if self.events:
            try:
                self.front.sel.unregister(self.sock)
            except (KeyError, ValueError, OSError):
                pass  # already unregistered (or the socket is gone): nothing to undo
            self.events = 0
        self.state = CLOSED
        self.deadline = None
        try:
            self.sock.close()
        except OSError:
            pass  # closing a socket the peer already reset: it is closed either way
        self.front.forget(self)

    # -- events ----------------------------------------------------------------------------
    def on_event(self, mask):
        st = self.state
        if st == SNIFF:
            self._sniff()
        elif st == HANDSHAKE:
            self._handshake()
        elif st == LINGERING:
            self._read()
        elif st in (HEAD, BODY):
            if mask & W and self.pending_out:
                self._flush_interim()
            if mask & R:
                self._read()
        elif st == WRITE:
            self._write()

    def _sniff(self):
        try:
            first = self.sock.recv(1, socket.MSG_PEEK)
        except WANT:
            return
        except OSError:
            return self.close()
        if not first:
            return self.close()
        tls = self.listener.tls
        if first == b"\x16" and tls is not None:
            self.watch(0)
            self.deadline = None
            ctx = tls.ready
            if ctx is not None:
                return self.tls_begin(ctx)
            self.state = TLS_WAIT  # the host's certificate is made on a worker, once
            return self.front.await_tls(self, tls)
        self.state = HEAD
        self._read()

    def tls_begin(self, ctx):
        if self.state == CLOSED:
            return
        if ctx is None or self.kill or self.front.stopped:
            return self.close()
        try:
            self.sock = ctx.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError):
            return self.close()
        self.tls = True
        self.state = HANDSHAKE
        self.set_deadline(time.monotonic() + self.request_timeout)
        self._handshake()

    def _handshake(self):
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self.watch(R)
        except ssl.SSLWantWriteError:
            return self.watch(W)
        except (OSError, ValueError):
            return self.close()
        self.state = HEAD
        self.watch(R)
        self.set_deadline(time.monotonic() + self.idle)
        self._read()

    def _read(self):
        """Read what is there (until the socket would block); then parse."""
        try:
            got = self.fill(_http.MAX_BODY + _http.MAX_HEAD + RECV_SIZE)
        except (OSError, ValueError):
            return self.close()
        if self.state == LINGERING:
            if self.eof:
                self.close()
            return
        if got or self.eof:
            self._process()

    def _process(self):
        """Parse as far as the buffer allows; hand a complete request to a worker."""
        H = _http
        if self.state == HEAD:
            buf = self.buf
            if self.scan == 0 and buf:
                n = skip_empty_lines(buf)
                if n:
                    del buf[:n]
            if buf and self.req_deadline is None:  # a pipelined request
                self.req_deadline = time.monotonic() + self.request_timeout
            m = HEAD_END.search(buf, max(0, self.scan - 3))
            if m is None:
                if len(buf) > H.MAX_HEAD:
                    status = 414 if b"\n" not in buf else 431
                    return self.refuse(HttpError(status, "request head too large"))
                self.scan = len(buf)
                if self.eof:
                    return self.close()
                return self._reading_deadline()
            if m.end() > H.MAX_HEAD:
                return self.refuse(HttpError(431, "request head too large"))
            raw = bytes(buf[: m.end()])
            del buf[: m.end()]
            self.scan = 0
            if self.req_deadline is None:
                self.req_deadline = time.monotonic() + self.request_timeout
            try:
                head = parse_head(raw)
                if head.method not in H.METHODS:
                    raise HttpError(501, f"method {head.method} is not served")
                if head.method in ("POST", "PUT") and head.length is None and not head.chunked:
                    raise HttpError(411, "content-length required")
                if _streamed(self.listener, head):
                    # a streaming handler reads the body itself, incrementally (routes.py)
                    self.head = None
                    return self._dispatch(head, None)
                if head.length is not None and head.length > H.MAX_BODY:
                    raise HttpError(
                        413, f"body of {head.length} bytes exceeds the limit of {H.MAX_BODY}"
                    )
            except HttpError as e:
                return self.refuse(e)
            self.head = head
            self.decoder = ChunkedDecoder(H.MAX_BODY) if head.chunked else None
            self.state = BODY
            if (
                head.expect_continue
                and (head.chunked or head.length)
                and (head.chunked or len(buf) < (head.length or 0))
            ):
                self._interim(b"HTTP/1.1 100 Continue\r\n\r\n")
                if self.state == CLOSED:
                    return
        # BODY
        assert self.head is not None
        head = self.head
        try:
            if self.decoder is not None:
                done = self.decoder.feed(self.buf)
                body = b"".join(self.decoder.parts) if done else None
            elif head.length:
                done = len(self.buf) >= head.length
                body = bytes(self.buf[: head.length]) if done else None
                if done:
                    del self.buf[: head.length]
            else:
                done, body = True, b""
        except HttpError as e:
            return self.refuse(e)
        if not done:
            if self.eof:
                return self.close()
            return self._reading_deadline()
        self._dispatch(head, body)

    def _interim(self, data):
        try:
            n = self.sock.send(data)
        except WANT:
            n = 0
        except OSError:
            return self.close()
        self.pending_out = data[n:]
        if self.pending_out:
            self.watch(R | W)

    def _flush_interim(self):
        self._interim(self.pending_out)
        if not self.pending_out and self.state in (HEAD, BODY):
            self.watch(R)

    def _dispatch(self, head, body):
        self.state = BUSY
        self.req_deadline = None
        self.head = self.decoder = None
        self.deadline = None
        handler = self.handler_for(head, body)
        front = self.front
        # a quick read is answered here, on the loop (serving.serve_inline); pipelined
        # requests answered that way recurse through _after_reply, hence the bound
        if body is not None and head.method == "POST" and front.inline_depth < INLINE_DEPTH:
            front.inline_depth += 1
            try:
                if serving.serve_inline(self, handler):
                    return
            finally:
                front.inline_depth -= 1
        self.watch(0)
        try:
            front.workers.submit(serving.serve, self, handler)
        except RuntimeError:
            self.close()

    # -- replies ---------------------------------------------------------------------------
    def replied(self, rest, close):
        """Back from a worker (posted): ``rest`` is what it could not send."""
        if self.state == CLOSED:
            return
        if self.kill or self.front.stopped:
            close = True
        if self.sock.gettimeout() != 0.0:  # taken over: back to non-blocking
            try:
                self.sock.setblocking(False)
            except OSError:
                return self.close()
        if isinstance(rest, list):  # a reply in pieces (serving.send_reply): first, then more
            rest = [r for r in rest if len(r)]
            self.out_more = [memoryview(r) for r in rest[1:]]
            rest = rest[0] if rest else b""
        if rest:
            self.out = rest if isinstance(rest, memoryview) else memoryview(rest)
            self.out_then = "close" if close else "next"
            self.state = WRITE
            self.watch(W)
            self.set_deadline(time.monotonic() + self.idle)
            return
        self._after_reply(close)

    def _write(self):
        view = self.out
        assert view is not None
        try:
            pos = self.send_some(view)
        except (OSError, ValueError):
            return self.close()
        if pos < len(view):
            self.out = view[pos:]
            if pos:
                self.set_deadline(time.monotonic() + self.idle)
            return
        if self.out_more:  # the next piece of the reply, at the next readiness
            self.out = self.out_more.pop(0)
            self.set_deadline(time.monotonic() + self.idle)
            return
        self.out = None
        then, self.out_then = self.out_then, None
        self._after_reply(then == "close")

    def _after_reply(self, close):
        if close:
            return self._linger()
        self.state = HEAD
        self.req_deadline = None
        self.scan = 0
        if self.buf or self.eof:
            if not self.eof:
                self.watch(R)
            return self._process()
        self.watch(R)
        self.set_deadline(time.monotonic() + self.idle)
        if self.tls and self.sock.pending():
            self._read()

    def refuse(self, err):
        """Reply with an HTTP error and close (lingering)."""
        self.head = self.decoder = None
        view = memoryview(self.pending_out + _http.error_reply(err.status, err.text))
        self.pending_out = b""
        self.buf.clear()
        self.state = BUSY
        self.watch(0)
        self.deadline = None
        try:
            pos = self.send_some(view)
        except (OSError, ValueError):
            return self.close()
        self.replied(view[pos:] if pos < len(view) else b"", True)

    def _linger(self):
        self.buf.clear()
        if self.eof:
            return self.close()
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            return self.close()
        self.state = LINGERING
        self.watch(R)
        self.set_deadline(time.monotonic() + LINGER)
