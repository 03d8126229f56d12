"""The journal's system calls (a seam for injected faults) and errors as XAPI reports them."""

from __future__ import annotations

import errno as errno_mod
import json
import logging
import os
import threading
import zlib

from ..errors import Failure
from ..rowcodec import dec, enc  # noqa: F401 -- also used by importers of persist

log = logging.getLogger(__name__)

# -- errors as XAPI reports them --------------------------------------------------------------

# OCaml's Unix.error constructors in declaration order (otherlibs/unix/unix.ml); an errno is
# reported as the first constructor with its number (so EAGAIN, not EWOULDBLOCK), and one
# that has none as EUNKNOWNERR n.
_OCAML_UNIX_ERRORS = (
    "E2BIG EACCES EAGAIN EBADF EBUSY ECHILD EDEADLK EDOM EEXIST EFAULT EFBIG EINTR EINVAL "
    "EIO EISDIR EMFILE EMLINK ENAMETOOLONG ENFILE ENODEV ENOENT ENOEXEC ENOLCK ENOMEM ENOSPC "
    "ENOSYS ENOTDIR ENOTEMPTY ENOTTY ENXIO EPERM EPIPE ERANGE EROFS ESPIPE ESRCH EXDEV "
    "EWOULDBLOCK EINPROGRESS EALREADY ENOTSOCK EDESTADDRREQ EMSGSIZE EPROTOTYPE ENOPROTOOPT "
    "EPROTONOSUPPORT ESOCKTNOSUPPORT EOPNOTSUPP EPFNOSUPPORT EAFNOSUPPORT EADDRINUSE "
    "EADDRNOTAVAIL ENETDOWN ENETUNREACH ENETRESET ECONNABORTED ECONNRESET ENOBUFS EISCONN "
    "ENOTCONN ESHUTDOWN ETOOMANYREFS ETIMEDOUT ECONNREFUSED EHOSTDOWN EHOSTUNREACH ELOOP "
    "EOVERFLOW"
).split()
_OCAML_BY_ERRNO: dict = {}
for _name in _OCAML_UNIX_ERRORS:
    _num = getattr(errno_mod, _name, None)
    if _num is not None:
        _OCAML_BY_ERRNO.setdefault(_num, _name)


def unix_error_text(err: int | None, fn: str, arg: str = "") -> str:
    """``Printexc.to_string (Unix.Unix_error (e, fn, arg))`` as OCaml's Unix module prints
    it: ``Unix.Unix_error(Unix.ENOSPC, "write", "")``.

    XAPI answers an exception it has no mapping for with ``INTERNAL_ERROR`` carrying that
    text (xen-api ``ocaml/idl/ocaml_backend/exnHelper.ml``, Dundee; ``ocaml/xapi/exnHelper.ml``
    at HEAD: the catch-all ``e -> internal_error, [Printexc.to_string e]``)."""
    name = _OCAML_BY_ERRNO.get(err) if err is not None else None
    if name is None:
        name = f"EUNKNOWNERR {err if err is not None else 0}"
    return f"Unix.Unix_error(Unix.{name}, {json.dumps(fn)}, {json.dumps(arg)})"


class JournalWriteError(OSError):
    """A journal system call failed; ``fn`` is its name (write, fsync, ftruncate)."""

    def __init__(self, err: OSError, fn: str):
        super().__init__(err.errno, err.strerror)
        self.fn = fn

    def failure(self) -> Failure:
        return Failure("INTERNAL_ERROR", unix_error_text(self.errno, self.fn))


# -- the journal's system calls: a seam for injected faults ------------------------------------


class FileOps:
    """The system calls the journal and the snapshot writer make (``Journal.ops``)."""

    def open(self, path, flags, mode=0o644):
        return os.open(path, flags, mode)

    def write(self, fd, data) -> int:
        return os.write(fd, data)

    def fsync(self, fd):
        os.fsync(fd)

    def ftruncate(self, fd, size):
        os.ftruncate(fd, size)

    def close(self, fd):
        os.close(fd)


class FaultyOps(FileOps):
    """``FileOps`` with faults to inject (tests; no root needed).

    * ``fail_write(nth, err, partial)``: the ``nth`` write from now writes ``partial``
      bytes, then raises ``err`` (a short write cut by the error);
    * ``fail_fsync(nth, err)``, ``fail_truncate(nth, err)``: the ``nth`` fsync / ftruncate
      from now raises;
    * ``space``: bytes left on the simulated disk (None: unlimited). A write larger than
      that writes what fits and returns the short count, as Linux does; a write when
      nothing is left raises ENOSPC. Truncation gives the space back.

    ``injected`` lists every fault raised, as (call, errno name)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"write": 0, "fsync": 0, "ftruncate": 0}
        self.planned: dict = {}  # (call, count) -> (errno, partial bytes)
        self.space: int | None = None
        self.injected: list = []

    def _plan(self, call, nth, err, partial=0):
        if nth < 1:
            raise ValueError("nth counts from 1")
        with self.lock:
            self.planned[(call, self.counts[call] + nth)] = (err, partial)

    def fail_write(self, nth=1, err=errno_mod.ENOSPC, partial=0):
        self._plan("write", nth, err, partial)

    def fail_fsync(self, nth=1, err=errno_mod.EIO):
        self._plan("fsync", nth, err)

    def fail_truncate(self, nth=1, err=errno_mod.EIO):
        self._plan("ftruncate", nth, err)

    def _next(self, call):
        with self.lock:
            self.counts[call] += 1
            fault = self.planned.pop((call, self.counts[call]), None)
            if fault is not None:
                self.injected.append((call, errno_mod.errorcode.get(fault[0], fault[0])))
            return fault

    def _raise(self, err, call):
        raise OSError(err, f"{os.strerror(err)} (injected into {call})")

    def write(self, fd, data) -> int:
        fault = self._next("write")
        if fault is not None:
            err, partial = fault
            if partial:
                super().write(fd, bytes(data[:partial]))
                with self.lock:
                    if self.space is not None:
                        self.space = max(0, self.space - partial)
            self._raise(err, "write")
        with self.lock:
            room = self.space
        if room is not None:
            if room <= 0:
                with self.lock:
                    self.injected.append(("write", "ENOSPC"))
                self._raise(errno_mod.ENOSPC, "write")
            data = bytes(data[:room])
        n = super().write(fd, data)
        with self.lock:
            if self.space is not None:
                self.space -= n
        return n

    def fsync(self, fd):
        fault = self._next("fsync")
        if fault is not None:
            self._raise(fault[0], "fsync")
        super().fsync(fd)

    def ftruncate(self, fd, size):
        fault = self._next("ftruncate")
        if fault is not None:
            self._raise(fault[0], "ftruncate")
        before = os.fstat(fd).st_size
        super().ftruncate(fd, size)
        with self.lock:
            if self.space is not None and before > size:
                self.space += before - size


def frame(payload: dict) -> bytes:
    """One journal line: ``<crc32 of the JSON, 8 hex digits> <JSON>\\n``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
