"""The front's worker pool: a bounded set of daemon threads, made on demand and ended when
idle, that run complete requests (``front.Front`` hands them over; the loop itself never
runs a handler). Daemon threads, so that a worker blocked in a long-poll never holds up
interpreter exit.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading

log = logging.getLogger(__name__)

MAX_WORKERS = 256  # worker threads per front (per simulator)
WORKER_IDLE = 0.5  # seconds an idle worker thread waits for work before it ends


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
        self._jobs: collections.deque = collections.deque()
        self._idle = []  # the idle workers' wake-up events, most recent last
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
            t = threading.Thread(
                target=self._work, name=f"{self.name}-{next(self._seq)}", daemon=True
            )
            try:
                t.start()
            except RuntimeError:  # cannot start a thread: the others take the job
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
                except Exception:  # noqa: BLE001 -- a job's bug must not end the worker
                    log.exception("worker job failed")
                continue
            if not wake.wait(self.idle_seconds):
                with self._lock:
                    if wake in self._idle:  # not claimed meanwhile: end
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
