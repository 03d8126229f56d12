"""The HTTP front: one selector loop per simulator, a bounded worker pool, no thread per
connection.

The loop thread (``Front``) owns every listening socket and every connection that is not
being served. It accepts, reads without blocking, tells TLS from plain HTTP by the first
byte (0x16 is a TLS handshake record), runs TLS handshakes without blocking, parses a
request head only once it is complete (``httpparse.parse_head``), reads the body
(Content-Length or chunked), and enforces the idle and request deadlines with a timer heap.
Only a complete request leaves the loop: the connection is unregistered from the selector
and handed, with the request, to a worker (``Workers``, at most ``MAX_WORKERS`` threads,
made on demand and ended after ``WORKER_IDLE`` seconds without work).

The worker interface is ``handler.handle(respond)``: the handler calls
``respond(data, close)`` exactly once, from any thread, at any later time -- today it does
so before ``handle`` returns, so a long-poll (``event.from`` with a timeout) keeps its worker
thread while it waits; a handler that parks such a call and responds from whatever wakes it
needs no change here. ``respond`` writes what it can at once (the worker owns the
connection until then) and hands the connection back to the loop, which writes the rest as
the peer reads it and then serves the next request already buffered (pipelined requests are
answered one at a time, in order) or waits for one. A handler may instead take the
connection over for an interactive exchange (``Conn.takeover``: blocking file objects, as
the thin-CLI protocol needs) and respond ``(None, True)`` when done.

A reply that closes the connection is followed by a lingering close: the write side is shut
down and whatever the peer still sends is read and dropped for up to ``LINGER`` seconds, so
the reply is not destroyed by a reset, and no byte after a refused request is ever parsed.

Listeners stop accepting while they hold ``MAX_CONNECTIONS`` connections (more wait in the
kernel's accept queue), and for a moment when the process runs out of file descriptors.
"""
from __future__ import annotations

import collections
import errno
import heapq
import itertools
import logging
import select
import selectors
import socket
import ssl
import threading
import time

from . import http as _http
from .httpparse import (HEAD_END, ChunkedDecoder, HttpError, parse_head, skip_empty_lines)

log = logging.getLogger(__name__)

MAX_WORKERS = 256          # worker threads per front (per simulator)
WORKER_IDLE = 0.5          # seconds an idle worker thread waits for work before it ends
WORKER_HOLD = 0.002        # seconds a worker waits for a connection's next request
LINGER = 2.0               # seconds of lingering close after a closing reply
RECV_SIZE = 256 * 1024
TLS_SEND_CHUNK = 64 * 1024
ACCEPT_BURST = 64
EMFILE_PAUSE = 0.25

_R, _W = selectors.EVENT_READ, selectors.EVENT_WRITE
_WANT = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

_poll = getattr(select, "poll", None)

# connection states
SNIFF, TLS_WAIT, HANDSHAKE, HEAD, BODY, BUSY, WRITE, LINGERING, CLOSED = range(9)


class Workers:
    """A bounded pool of daemon threads, grown on demand and shrunk when idle. Daemon
    threads, so that a worker blocked in a long-poll never holds up interpreter exit. Idle
    workers are woken last-idle-first, so under a light load the same few threads serve and
    the others time out and end."""

    def __init__(self, max_workers=MAX_WORKERS, name="xapi-sim-worker", idle=WORKER_IDLE):
        self.max_workers = max_workers
        self.name = name
        self.idle_seconds = idle
        self._lock = threading.Lock()
        self._jobs = collections.deque()
        self._idle = []            # the idle workers' wake-up events, most recent last
        self._threads = 0
        self._stopped = False
        self._seq = itertools.count(1)

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, fn, *args):
        with self._lock:
            if self._stopped:
                raise RuntimeError("worker pool stopped")
            self._jobs.append((fn, args))
            spawn = False
            if self._idle:
                self._idle.pop().set()
            elif self._threads < self.max_workers:
                self._threads += 1
                spawn = True
        if spawn:
            t = threading.Thread(target=self._work, name=f"{self.name}-{next(self._seq)}",
                                 daemon=True)
            try:
                t.start()
            except RuntimeError:     # cannot start a thread: the others take the job
                with self._lock:
                    self._threads -= 1
                log.exception("cannot start a worker thread")

    def _work(self):
        wake = threading.Event()
        while True:
            with self._lock:
                if self._jobs:
                    fn, args = self._jobs.popleft()
                elif self._stopped:
                    self._threads -= 1
                    return
                else:
                    wake.clear()
                    self._idle.append(wake)
                    fn = None
            if fn is not None:
                try:
                    fn(*args)
                except Exception:   # noqa: BLE001 -- a job's bug must not end the worker
                    log.exception("worker job failed")
                continue
            if not wake.wait(self.idle_seconds):
                with self._lock:
                    if wake in self._idle:         # not claimed meanwhile: end
                        self._idle.remove(wake)
                        self._threads -= 1
                        return

    def backlog(self) -> int:
        """Jobs waiting for a thread."""
        return len(self._jobs)

    def stop(self):
        """No new jobs; threads end once the queue is empty (not waited for)."""
        with self._lock:
            self._stopped = True
            for wake in self._idle:
                wake.set()
            self._idle.clear()


class Conn:
    """One accepted connection and its parsing state."""

    __slots__ = ("sock", "listener", "client_address", "buf", "state", "events", "deadline",
                 "req_deadline", "idle", "request_timeout", "head", "decoder", "scan", "eof",
                 "out", "out_then", "tls", "kill", "pending_out", "__weakref__")

    def __init__(self, sock, listener, addr, idle, request_timeout):
        self.sock = sock
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
        self.out = None          # memoryview being written by the loop
        self.out_then = None     # what to do once ``out`` is written: "close" | "next"
        self.tls = False
        self.kill = False        # the listener went away: close after the current reply
        self.pending_out = b""   # an interim reply (100 Continue) not yet fully sent

    def takeover(self, timeout):
        """For a handler running on a worker: the connection as blocking file objects
        (reader first returns what was already buffered). The handler must respond
        ``(None, True)`` when done; the front then closes the connection."""
        self.sock.settimeout(timeout)
        if self.pending_out:
            self.sock.sendall(self.pending_out)
            self.pending_out = b""
        return _Reader(self), _Writer(self.sock)


class _Reader:
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
            n = RECV_SIZE
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


class _Writer:
    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.sendall(data)
        return len(data)

    def flush(self):
        pass


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
        head = parse_head(bytes(buf[:m.end()]))
    except HttpError:
        return None
    if head.method not in _http.METHODS or head.chunked or head.expect_continue:
        return None
    n = head.length or 0
    if (head.method in ("POST", "PUT") and head.length is None) or n > _http.MAX_BODY or \
            len(buf) - m.end() < n:
        return None
    body = bytes(buf[m.end():m.end() + n])
    del buf[:m.end() + n]
    return head, body


class Front:
    """The event loop of one simulator: its listeners, their connections, its workers."""

    def __init__(self, name="xapi-sim", max_workers=None):
        self.name = name
        self.sel = selectors.DefaultSelector()
        self.workers = Workers(max_workers or MAX_WORKERS, f"{name}-worker")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, _R, None)
        self._wake_pending = False
        self._cmds = collections.deque()
        self._timers = []
        self._tseq = itertools.count()
        self._listeners = set()
        self._conns = set()
        self._tls_waiting = {}     # TLS source -> connections waiting for its context
        self._thread = None
        self._running = False
        self._stopped = False
        self._sleep_until = 0.0

    # -- control (any thread) ------------------------------------------------------------
    def start(self):
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-front",
                                        daemon=True)
        self._thread.start()
        return self

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn, timeout=10.0):
        """Run ``fn`` in the loop thread and wait for it (directly when not running)."""
        if self.in_loop() or not self._running:
            return fn()
        done = threading.Event()
        box = []

        def run():
            try:
                box.append(fn())
            finally:
                done.set()
        if not self._post(run):
            return fn()
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            if not self._thread.is_alive():      # the loop ended meanwhile: run it here
                self._run_commands()
                break
            if time.monotonic() > deadline:
                log.error("front %s: the loop did not run a command within %s s", self.name,
                          timeout)
                break
        return box[0] if box else None

    def add_listener(self, listener):
        self.call(lambda: self._add_listener(listener))

    def remove_listener(self, listener):
        """Stop accepting on ``listener`` and close its connections; a request being
        served gets its reply first."""
        self.call(lambda: self._remove_listener(listener))

    def stop(self):
        if self._stopped:
            return
        if self._running:
            self.call(self._shutdown)
            self._thread.join(5)
            self._running = False
            self._run_commands()     # posted after the loop's last pass
        else:
            self._shutdown()
        self.workers.stop()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def connections(self) -> int:
        return len(self._conns)

    def _post(self, fn) -> bool:
        if self._stopped:
            return False
        self._cmds.append(fn)
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"x")
            except (BlockingIOError, OSError):
                pass
        return True

    # -- the loop --------------------------------------------------------------------------
    def _loop(self):
        while not self._stopped:
            timeout = self._next_timeout()
            self._sleep_until = time.monotonic() + (timeout if timeout is not None else 3600)
            try:
                events = self.sel.select(timeout)
            except OSError:
                log.exception("front %s: select failed", self.name)
                time.sleep(0.05)
                continue
            self._sleep_until = 0.0
            for key, mask in events:
                obj = key.data
                if obj is None:
                    self._drain_wake()
                    continue
                try:
                    if isinstance(obj, Conn):
                        self._on_event(obj, mask)
                    else:
                        self._accept(obj)
                except Exception:  # noqa: BLE001 -- one connection's bug must not stop the loop
                    log.exception("front %s: event handler failed", self.name)
                    if isinstance(obj, Conn):
                        self._close(obj)
            self._run_commands()
            self._run_timers()
        try:
            self.sel.close()
        except OSError:
            pass

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._wake_pending = False

    def _run_commands(self):
        while self._cmds:
            fn = self._cmds.popleft()
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("front %s: command failed", self.name)

    # -- timers ----------------------------------------------------------------------------
    def _at(self, when, obj):
        heapq.heappush(self._timers, (when, next(self._tseq), obj))
        if len(self._timers) > 4 * len(self._conns) + 1024:
            live = [(c.deadline, next(self._tseq), c) for c in self._conns
                    if c.deadline is not None]
            live += [t for t in self._timers if not isinstance(t[2], Conn)]
            heapq.heapify(live)
            self._timers = live

    def _set_deadline(self, conn, when):
        conn.deadline = when
        if when is not None:
            self._at(when, conn)
            if when < self._sleep_until and not self.in_loop():
                self._post(lambda: None)

    def _next_timeout(self):
        if self._cmds:
            return 0
        while self._timers:
            when, _, obj = self._timers[0]
            if isinstance(obj, Conn) and (obj.deadline != when or obj.state == CLOSED):
                heapq.heappop(self._timers)
                continue
            return max(0.0, when - time.monotonic())
        return None

    def _run_timers(self):
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            when, _, obj = heapq.heappop(self._timers)
            if isinstance(obj, Conn):
                if obj.deadline == when and obj.state != CLOSED:
                    obj.deadline = None
                    try:
                        self._expired(obj)
                    except Exception:  # noqa: BLE001
                        log.exception("front %s: timeout handling failed", self.name)
                        self._close(obj)
            else:
                try:
                    obj()
                except Exception:  # noqa: BLE001
                    log.exception("front %s: timer failed", self.name)

    def _expired(self, conn):
        if conn.state in (HEAD, BODY) and (conn.buf or conn.state == BODY):
            # a request had begun: tell the client before closing (RFC 9110 §15.5.9)
            self._refuse(conn, HttpError(408, "request not received in time"))
        else:
            self._close(conn)

    # -- listeners -------------------------------------------------------------------------
    def _add_listener(self, lst):
        self._listeners.add(lst)
        lst.front = self
        self.sel.register(lst.sock, _R, lst)
        lst.accepting = True

    def _remove_listener(self, lst):
        if lst not in self._listeners:
            return
        self._listeners.discard(lst)
        self._pause(lst)
        lst.close()
        for c in list(self._conns):
            if c.listener is lst:
                if c.state == BUSY:
                    c.kill = True
                else:
                    self._close(c)

    def _pause(self, lst):
        if lst.accepting:
            try:
                self.sel.unregister(lst.sock)
            except (KeyError, ValueError, OSError):
                pass
            lst.accepting = False

    def _resume(self, lst):
        if not lst.accepting and lst in self._listeners and not lst.closed:
            self.sel.register(lst.sock, _R, lst)
            lst.accepting = True

    def _accept(self, lst):
        for _ in range(ACCEPT_BURST):
            if lst.closed:
                return
            if lst.nconns >= _http.MAX_CONNECTIONS:
                self._pause(lst)
                lst.full = True
                return
            try:
                sock, addr = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("front %s: cannot accept (%s); pausing %s s", self.name,
                                e.strerror, EMFILE_PAUSE)
                    self._pause(lst)
                    self._at(time.monotonic() + EMFILE_PAUSE, lambda: self._resume(lst))
                    return
                continue      # the peer went away before we accepted it
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            idle, req = lst.timeouts()
            conn = Conn(sock, lst, addr, idle, req)
            lst.nconns += 1
            self._conns.add(conn)
            self._watch(conn, _R)
            self._set_deadline(conn, time.monotonic() + idle)

    # -- connections -----------------------------------------------------------------------
    def _watch(self, conn, events):
        if events == conn.events:
            return
        if conn.events == 0:
            self.sel.register(conn.sock, events, conn)
        elif events == 0:
            self.sel.unregister(conn.sock)
        else:
            self.sel.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn):
        if conn.state == CLOSED:
            return
        if conn.events:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            conn.events = 0
        conn.state = CLOSED
        conn.deadline = None
        try:
            conn.sock.close()
        except OSError:
            pass
        self._conns.discard(conn)
        lst = conn.listener
        lst.nconns -= 1
        if lst.full and lst.nconns < _http.MAX_CONNECTIONS:
            lst.full = False
            self._resume(lst)

    def _on_event(self, conn, mask):
        st = conn.state
        if st == SNIFF:
            self._sniff(conn)
        elif st == HANDSHAKE:
            self._handshake(conn)
        elif st == LINGERING:
            self._read(conn)
        elif st in (HEAD, BODY):
            if mask & _W and conn.pending_out:
                self._flush_interim(conn)
            if mask & _R:
                self._read(conn)
        elif st == WRITE:
            self._write(conn)

    def _sniff(self, conn):
        try:
            first = conn.sock.recv(1, socket.MSG_PEEK)
        except _WANT:
            return
        except OSError:
            return self._close(conn)
        if not first:
            return self._close(conn)
        tls = conn.listener.tls
        if first == b"\x16" and tls is not None:
            self._watch(conn, 0)
            conn.deadline = None
            ctx = tls.ready
            if ctx is not None:
                return self._tls_begin(conn, ctx)
            conn.state = TLS_WAIT      # the host's certificate is made on a worker, once
            waiting = self._tls_waiting.get(tls)
            if waiting is not None:
                waiting.append(conn)
                return
            self._tls_waiting[tls] = [conn]
            try:
                self.workers.submit(self._make_context, tls)
            except RuntimeError:
                self._tls_made(tls, None)
            return
        conn.state = HEAD
        self._read(conn)

    def _make_context(self, tls):      # on a worker
        try:
            ctx = tls.context()
        except Exception:  # noqa: BLE001
            log.exception("front %s: cannot make the TLS context", self.name)
            ctx = None
        self._post(lambda: self._tls_made(tls, ctx))

    def _tls_made(self, tls, ctx):
        for conn in self._tls_waiting.pop(tls, ()):
            self._tls_begin(conn, ctx)

    def _tls_begin(self, conn, ctx):
        if conn.state == CLOSED:
            return
        if ctx is None or conn.kill or self._stopped:
            return self._close(conn)
        try:
            conn.sock = ctx.wrap_socket(conn.sock, server_side=True,
                                        do_handshake_on_connect=False)
        except (OSError, ValueError):
            return self._close(conn)
        conn.tls = True
        conn.state = HANDSHAKE
        self._set_deadline(conn, time.monotonic() + conn.request_timeout)
        self._handshake(conn)

    def _handshake(self, conn):
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self._watch(conn, _R)
        except ssl.SSLWantWriteError:
            return self._watch(conn, _W)
        except (OSError, ValueError):
            return self._close(conn)
        conn.state = HEAD
        self._watch(conn, _R)
        self._set_deadline(conn, time.monotonic() + conn.idle)
        self._read(conn)

    def _read(self, conn):
        """Read what is there (until the socket would block); then parse."""
        sock = conn.sock
        limit = _http.MAX_BODY + _http.MAX_HEAD + RECV_SIZE
        lingering = conn.state == LINGERING
        got = False
        while True:
            try:
                data = sock.recv(RECV_SIZE)
            except _WANT:
                break
            except (OSError, ValueError):
                return self._close(conn)
            if not data:
                conn.eof = True
                break
            if lingering:
                continue
            if not conn.buf:
                if conn.state == HEAD and conn.req_deadline is None:
                    conn.req_deadline = time.monotonic() + conn.request_timeout
            conn.buf += data
            got = True
            if len(conn.buf) > limit:
                break
        if lingering:
            if conn.eof:
                self._close(conn)
            return
        if got or conn.eof:
            self._process(conn)

    def _reading_deadline(self, conn):
        now = time.monotonic()
        if conn.req_deadline is None:
            self._set_deadline(conn, now + conn.idle)
        else:
            self._set_deadline(conn, min(conn.req_deadline, now + conn.idle))

    def _process(self, conn):
        """Parse as far as the buffer allows; hand a complete request to a worker."""
        H = _http
        if conn.state == HEAD:
            buf = conn.buf
            if conn.scan == 0 and buf:
                n = skip_empty_lines(buf)
                if n:
                    del buf[:n]
            if buf and conn.req_deadline is None:      # a pipelined request
                conn.req_deadline = time.monotonic() + conn.request_timeout
            m = HEAD_END.search(buf, max(0, conn.scan - 3))
            if m is None:
                if len(buf) > H.MAX_HEAD:
                    status = 414 if b"\n" not in buf else 431
                    return self._refuse(conn, HttpError(status, "request head too large"))
                conn.scan = len(buf)
                if conn.eof:
                    return self._close(conn)
                return self._reading_deadline(conn)
            if m.end() > H.MAX_HEAD:
                return self._refuse(conn, HttpError(431, "request head too large"))
            raw = bytes(buf[:m.end()])
            del buf[:m.end()]
            conn.scan = 0
            if conn.req_deadline is None:
                conn.req_deadline = time.monotonic() + conn.request_timeout
            try:
                head = parse_head(raw)
                if head.method not in H.METHODS:
                    raise HttpError(501, f"method {head.method} is not served")
                if head.method in ("POST", "PUT") and head.length is None and \
                        not head.chunked:
                    raise HttpError(411, "content-length required")
                if head.length is not None and head.length > H.MAX_BODY:
                    raise HttpError(413, f"body of {head.length} bytes exceeds the limit of "
                                         f"{H.MAX_BODY}")
            except HttpError as e:
                return self._refuse(conn, e)
            conn.head = head
            conn.decoder = ChunkedDecoder(H.MAX_BODY) if head.chunked else None
            conn.state = BODY
            if head.expect_continue and (head.chunked or head.length) and \
                    (head.chunked or len(buf) < head.length):
                self._interim(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        # BODY
        head = conn.head
        try:
            if conn.decoder is not None:
                done = conn.decoder.feed(conn.buf)
                body = b"".join(conn.decoder.parts) if done else None
            elif head.length:
                done = len(conn.buf) >= head.length
                body = bytes(conn.buf[:head.length]) if done else None
                if done:
                    del conn.buf[:head.length]
            else:
                done, body = True, b""
        except HttpError as e:
            return self._refuse(conn, e)
        if not done:
            if conn.eof:
                return self._close(conn)
            return self._reading_deadline(conn)
        self._dispatch(conn, head, body)

    def _interim(self, conn, data):
        try:
            n = conn.sock.send(data)
        except _WANT:
            n = 0
        except OSError:
            return self._close(conn)
        conn.pending_out = data[n:]
        if conn.pending_out:
            self._watch(conn, _R | _W)

    def _flush_interim(self, conn):
        self._interim(conn, conn.pending_out)
        if not conn.pending_out and conn.state in (HEAD, BODY):
            self._watch(conn, _R)

    def _dispatch(self, conn, head, body):
        conn.state = BUSY
        conn.req_deadline = None
        conn.head = conn.decoder = None
        self._watch(conn, 0)
        conn.deadline = None
        handler = conn.listener.handler_class(conn.listener, conn, head, body)
        try:
            self.workers.submit(self._serve, conn, handler)
        except RuntimeError:
            self._close(conn)

    # -- on a worker -----------------------------------------------------------------------
    def _serve(self, conn, handler):
        """Run requests of ``conn`` on this worker: the handed one, then any next one that
        arrives complete within ``WORKER_HOLD`` of the reply (a client calling in a loop
        is served without two thread hand-offs per call)."""
        while handler is not None:
            lock = threading.Lock()
            box = []
            sync = [True]

            def respond(data, close, box=box, sync=sync, lock=lock):
                with lock:
                    if box:
                        log.error("front %s: a handler responded twice", self.name)
                        return
                    box.append((data, close))
                    if sync[0]:
                        return          # answered within handle(): sent below
                self._respond(conn, data, close)    # answered later, from another thread
            try:
                handler.handle(respond)
            except Exception:  # noqa: BLE001 -- never leave a connection without an answer
                log.exception("front %s: request handler failed", self.name)
                with lock:
                    if not box:
                        box.append((_http.error_reply(500, "internal error"), True))
            with lock:
                sync[0] = False
                answer = box[0] if box else None
            if answer is None:
                return                  # parked: whoever completes it responds
            handler = self._respond(conn, *answer, hold=True)

    def _respond(self, conn, data, close, hold=False):
        """Write what the socket takes now; then either serve the connection's next request
        on this thread (``hold``: it arrived complete within ``WORKER_HOLD``; returns its
        handler) or give the connection back to the loop (returns None)."""
        if conn.pending_out and data:
            data = conn.pending_out + data
        conn.pending_out = b""
        rest = b""
        if data:
            view = memoryview(data)
            pos = 0
            try:
                while pos < len(view):
                    end = pos + TLS_SEND_CHUNK if conn.tls else len(view)
                    pos += conn.sock.send(view[pos:end])
            except _WANT:
                pass
            except (OSError, ValueError):
                close, pos = True, len(view)
            rest = view[pos:] if pos < len(view) else b""
        if hold and not (rest or close or conn.kill or self._stopped) and WORKER_HOLD > 0 \
                and not self.workers.backlog():
            nxt = self._next_request(conn)
            if nxt is not None:
                return nxt
        if not self._post(lambda: self._replied(conn, rest, close)):
            try:
                conn.sock.close()
            except OSError:
                pass
        return None

    def _next_request(self, conn):
        """Wait up to ``WORKER_HOLD`` for the connection's next request; its handler if it
        came whole and needs nothing special (else the loop takes over, buffer intact).
        A client may send the head and the body in separate writes: keep reading until
        the request is whole or the time is up."""
        if conn.buf:                       # pipelined: the next request may be here
            got = complete_request(conn.buf)
            if got is not None:
                return conn.listener.handler_class(conn.listener, conn, *got)
        sock = conn.sock
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
            except (OSError, ValueError):
                return None
            if not ready or conn.kill or self._stopped:
                return None
            while True:
                try:
                    data = sock.recv(RECV_SIZE)
                except _WANT:
                    break
                except (OSError, ValueError):
                    return None
                if not data:
                    conn.eof = True
                    return None
                conn.buf += data
            if len(conn.buf) > _http.MAX_HEAD + _http.MAX_BODY:
                return None
            got = complete_request(conn.buf)
            if got is not None:
                return conn.listener.handler_class(conn.listener, conn, *got)

    # -- back in the loop ------------------------------------------------------------------
    def _replied(self, conn, rest, close):
        if conn.state == CLOSED:
            return
        if conn.kill or self._stopped:
            close = True
        if conn.sock.gettimeout() != 0.0:        # taken over: back to non-blocking
            try:
                conn.sock.setblocking(False)
            except OSError:
                return self._close(conn)
        if rest:
            conn.out = rest if isinstance(rest, memoryview) else memoryview(rest)
            conn.out_then = "close" if close else "next"
            conn.state = WRITE
            self._watch(conn, _W)
            self._set_deadline(conn, time.monotonic() + conn.idle)
            return
        self._after_reply(conn, close)

    def _write(self, conn):
        view = conn.out
        pos = 0
        try:
            while pos < len(view):
                end = pos + TLS_SEND_CHUNK if conn.tls else len(view)
                pos += conn.sock.send(view[pos:end])
        except _WANT:
            pass
        except (OSError, ValueError):
            return self._close(conn)
        if pos < len(view):
            conn.out = view[pos:]
            if pos:
                self._set_deadline(conn, time.monotonic() + conn.idle)
            return
        conn.out = None
        then, conn.out_then = conn.out_then, None
        self._after_reply(conn, then == "close")

    def _after_reply(self, conn, close):
        if close:
            return self._linger(conn)
        conn.state = HEAD
        conn.req_deadline = None
        conn.scan = 0
        if conn.buf or conn.eof:
            if not conn.eof:
                self._watch(conn, _R)
            return self._process(conn)
        self._watch(conn, _R)
        self._set_deadline(conn, time.monotonic() + conn.idle)
        if conn.tls and conn.sock.pending():
            self._read(conn)

    def _refuse(self, conn, err):
        """Reply with an HTTP error and close (lingering)."""
        conn.head = conn.decoder = None
        data = conn.pending_out + _http.error_reply(err.status, err.text)
        conn.pending_out = b""
        conn.buf.clear()
        conn.state = BUSY
        self._watch(conn, 0)
        conn.deadline = None
        view = memoryview(data)
        pos = 0
        try:
            while pos < len(view):
                pos += conn.sock.send(view[pos:pos + TLS_SEND_CHUNK])
        except _WANT:
            pass
        except (OSError, ValueError):
            return self._close(conn)
        self._replied(conn, view[pos:] if pos < len(view) else b"", True)

    def _linger(self, conn):
        conn.buf.clear()
        if conn.eof:
            return self._close(conn)
        try:
            socket.socket.shutdown(conn.sock, socket.SHUT_WR)
        except OSError:
            return self._close(conn)
        conn.state = LINGERING
        self._watch(conn, _R)
        self._set_deadline(conn, time.monotonic() + LINGER)

    def _shutdown(self):
        self._stopped = True
        for lst in list(self._listeners):
            self._pause(lst)
            lst.close()
        self._listeners.clear()
        for c in list(self._conns):
            if c.state == BUSY:
                c.kill = True
            else:
                self._close(c)
