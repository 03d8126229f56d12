"""One clock per world: the time XAPI stamps on rows, tasks, sessions, events and messages.

Injectable: ``Clock(source)`` reads seconds since the epoch from ``source`` (``time.time``
by default); tests pass their own source or ``advance`` the clock to make timeouts (task GC,
session expiry) happen without waiting. XAPI writes ``datetime`` fields in UTC as
``YYYYMMDDTHH:MM:SSZ`` (``Date.to_string`` in xen-api's ``ocaml/libs/clock``), except
``host.get_servertime``'s local-time sibling ``get_server_localtime`` (no ``Z``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .datamodel import Timestamp

UTC_FORMAT = "%Y%m%dT%H:%M:%SZ"
LOCAL_FORMAT = "%Y%m%dT%H:%M:%S"


class Clock:
    """Wall-clock seconds and XAPI timestamps for one world."""

    def __init__(self, source: Callable[[], float] = time.time):
        self._source = source
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        """Seconds since the epoch."""
        return self._source() + self._offset

    def __call__(self) -> float:
        return self.time()

    def set_source(self, source: Callable[[], float]) -> None:
        self._source = source

    def advance(self, seconds: float) -> None:
        """Move this world's time forward (tests: expire tasks or sessions at once)."""
        with self._lock:
            self._offset += seconds

    @staticmethod
    def ts_of(seconds: float) -> Timestamp:
        return Timestamp(time.strftime(UTC_FORMAT, time.gmtime(seconds)))

    def now_ts(self) -> Timestamp:
        """Now, as XAPI writes a ``datetime`` field (UTC)."""
        return self.ts_of(self.time())

    def local_ts(self) -> Timestamp:
        """Now in the host's local time zone (``host.get_server_localtime``)."""
        return Timestamp(time.strftime(LOCAL_FORMAT, time.localtime(self.time())))
