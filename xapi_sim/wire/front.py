"""The HTTP front: one selector loop per simulator, a bounded worker pool, no thread per
connection.

The loop thread (``Front``) owns every listening socket and every connection that is not
being served: it accepts, runs each connection's state machine (``connection.Conn``: TLS
sniffing and non-blocking handshakes, reading and parsing a request, writing what a worker
could not, lingering close) as the selector reports it ready, and fires deadlines from a
timer heap (``timers.Timers``). Only a complete request leaves the loop: the connection is
unregistered from the selector and handed, with the request, to a worker (``workers.Workers``,
at most ``MAX_WORKERS`` threads, made on demand and ended after ``WORKER_IDLE`` seconds
without work), which runs the handler, writes what the socket takes and posts the
connection back (``serving.py``). Pipelined requests are answered one at a time, in order.

Other threads talk to the loop only through ``post``/``call`` (a command queue and a
wake-up socket pair). Listeners stop accepting while they hold ``MAX_CONNECTIONS``
connections (more wait in the kernel's accept queue), and for a moment when the process
runs out of file descriptors. A host's TLS context is made once, on a worker, while the
connections that need it wait (``await_tls``).
"""

from __future__ import annotations

import collections
import errno
import logging
import selectors
import socket
import threading
import time

from . import http as _http
from .connection import BUSY, Conn, R, deadline_current
from .timers import Timers
from .workers import MAX_WORKERS, Workers

log = logging.getLogger(__name__)

ACCEPT_BURST = 64
EMFILE_PAUSE = 0.25


class Front:
    """The event loop of one simulator: its listeners, their connections, its workers."""

    def __init__(self, name="xapi-sim", max_workers=None):
        self.name = name
        self.sel = selectors.DefaultSelector()
        self.workers = Workers(max_workers or MAX_WORKERS, f"{name}-worker")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, R, None)
        self._wake_pending = False
        self._cmds: collections.deque = collections.deque()
        self.timers = Timers(deadline_current)
        self._listeners = set()
        self._conns = set()
        self._tls_waiting = {}  # TLS source -> connections waiting for its context
        self._thread = None
        self._running = False
        self.stopped = False
        self.sleep_until = 0.0
        self.inline_depth = 0  # quick reads being answered on the loop (Conn._dispatch)

    # -- control (any thread) ------------------------------------------------------------
    def start(self):
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-front", daemon=True)
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

        if not self.post(run):
            return fn()
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            # the loop ended meanwhile: run it here
            if self._thread is None or not self._thread.is_alive():
                self._run_commands()
                break
            if time.monotonic() > deadline:
                log.error(
                    "front %s: the loop did not run a command within %s s", self.name, timeout
                )
                break
        return box[0] if box else None

    def add_listener(self, listener):
        self.call(lambda: self._add_listener(listener))

    def remove_listener(self, listener):
        """Stop accepting on ``listener`` and close its connections; a request being
        served gets its reply first."""
        self.call(lambda: self._remove_listener(listener))

    def stop(self):
        if self.stopped:
            return
        if self._running:
            self.call(self._shutdown)
            if self._thread is not None:
                self._thread.join(5)
            self._running = False
            self._run_commands()  # posted after the loop's last pass
        else:
            self._shutdown()
        self.workers.stop()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def connections(self) -> int:
        return len(self._conns)

    def post(self, fn) -> bool:
        """Have the loop run ``fn`` (any thread); False once the front has stopped."""
        if self.stopped:
            return False
        self._cmds.append(fn)
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"x")
            except (BlockingIOError, OSError):
                pass  # the wake-up pipe is full: the loop is already due to wake
        return True

    # -- the loop --------------------------------------------------------------------------
    def _loop(self):
        while not self.stopped:
            timeout = 0 if self._cmds else self.timers.next_timeout()
            self.sleep_until = time.monotonic() + (timeout if timeout is not None else 3600)
            try:
                events = self.sel.select(timeout)
            except OSError:
                log.exception("front %s: select failed", self.name)
                time.sleep(0.05)
                continue
            self.sleep_until = 0.0
            for key, mask in events:
                obj = key.data
                if obj is None:
                    self._drain_wake()
                    continue
                try:
                    if isinstance(obj, Conn):
                        obj.on_event(mask)
                    else:
                        self._accept(obj)
                except Exception:  # noqa: BLE001 -- one connection's bug must not stop the loop
                    log.exception("front %s: event handler failed", self.name)
                    if isinstance(obj, Conn):
                        obj.close()
            self._run_commands()
            self._run_timers()
        try:
            self.sel.close()
        except OSError:
            pass  # stopping: the selector is discarded either way

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass  # drained (or the pipe closed at stop): nothing left to read
        self._wake_pending = False

    def _run_commands(self):
        while self._cmds:
            fn = self._cmds.popleft()
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("front %s: command failed", self.name)

    def _run_timers(self):
        for obj in self.timers.due(time.monotonic()):
            if isinstance(obj, Conn):
                obj.deadline = None
                try:
                    obj.expired()
                except Exception:  # noqa: BLE001
                    log.exception("front %s: timeout handling failed", self.name)
                    obj.close()
            else:
                try:
                    obj()
                except Exception:  # noqa: BLE001
                    log.exception("front %s: timer failed", self.name)

    # -- listeners -------------------------------------------------------------------------
    def _add_listener(self, lst):
        self._listeners.add(lst)
        lst.front = self
        self.sel.register(lst.sock, R, lst)
        lst.accepting = True

    def _remove_listener(self, lst):
        if lst not in self._listeners:
            return
        self._listeners.discard(lst)
        self._pause(lst)
        lst.close()
        self._end_connections(lambda c: c.listener is lst)

    def _end_connections(self, which):
        """Close the connections ``which`` selects; one being served closes after its
        reply."""
        for c in list(self._conns):
            if which(c):
                if c.state == BUSY:
                    c.kill = True
                else:
                    c.close()

    def _pause(self, lst):
        if lst.accepting:
            try:
                self.sel.unregister(lst.sock)
            except (KeyError, ValueError, OSError):
                pass  # the listener was already unregistered: pausing twice is harmless
            lst.accepting = False

    def _resume(self, lst):
        if not lst.accepting and lst in self._listeners and not lst.closed:
            self.sel.register(lst.sock, R, lst)
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
                    log.warning(
                        "front %s: cannot accept (%s); pausing %s s",
                        self.name,
                        e.strerror,
                        EMFILE_PAUSE,
                    )
                    self._pause(lst)
                    self.timers.at(time.monotonic() + EMFILE_PAUSE, lambda: self._resume(lst))
                    return
                continue  # the peer went away before we accepted it
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # not a TCP socket (or already reset): no Nagle to switch off
            idle, req = lst.timeouts()
            conn = Conn(sock, self, lst, addr, idle, req)
            lst.nconns += 1
            self._conns.add(conn)
            conn.watch(R)
            conn.set_deadline(time.monotonic() + idle)

    def forget(self, conn):
        """``conn`` has closed (``Conn.close``): its listener may accept again."""
        self._conns.discard(conn)
        lst = conn.listener
        lst.nconns -= 1
        if lst.full and lst.nconns < _http.MAX_CONNECTIONS:
            lst.full = False
            self._resume(lst)

    # -- TLS contexts ----------------------------------------------------------------------
    def await_tls(self, conn, tls):
        """``conn`` begins TLS once ``tls`` has made its context: on a worker, once, however
        many connections wait for it."""
        waiting = self._tls_waiting.get(tls)
        if waiting is not None:
            waiting.append(conn)
            return
        self._tls_waiting[tls] = [conn]
        try:
            self.workers.submit(self._make_context, tls)
        except RuntimeError:
            self._tls_made(tls, None)

    def _make_context(self, tls):  # on a worker
        try:
            ctx = tls.context()
        except Exception:  # noqa: BLE001
            log.exception("front %s: cannot make the TLS context", self.name)
            ctx = None
        self.post(lambda: self._tls_made(tls, ctx))

    def _tls_made(self, tls, ctx):
        for conn in self._tls_waiting.pop(tls, ()):
            conn.tls_begin(ctx)

    def _shutdown(self):
        self.stopped = True
        for lst in list(self._listeners):
            self._pause(lst)
            lst.close()
        self._listeners.clear()
        self._end_connections(lambda c: True)
