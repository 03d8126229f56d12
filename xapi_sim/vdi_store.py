"""VDI contents, stored sparsely on disk: one sparse file per VDI under the world's disk
directory (``world.vdi_dir``: ``<state-dir>/vdis`` with ``--state-dir``, else a temporary
directory removed with the world).

A VDI without a file reads as zeros of its virtual size: a file appears with the first
non-zero write. Writes of zeros over holes are skipped, so an imported disk takes only what
holds data (``allocated``), and ``extents`` lists the data regions (``SEEK_DATA`` /
``SEEK_HOLE``) for sparse copies and exports -- as ``stream_vdi.ml`` skips empty chunks and
``vhd-tool`` writes only allocated blocks.

No lock: every operation opens the file, works with positional reads and writes, and closes
it, so concurrent readers and writers of distinct regions never share a file offset; a
remove unlinks (an open reader finishes on the old inode). The keys are VDI references.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator

BLOCK = 2 * 1024 * 1024  # the VHD block size: physical utilisation counts these
COPY_CHUNK = 1024 * 1024
_ZERO = bytes(COPY_CHUNK)


def is_zero(data) -> bool:
    n = len(data)
    if n <= COPY_CHUNK:
        return data == _ZERO[:n]
    return bytes(data).count(0) == n


class VdiStore:
    """The world's disk contents (``world.service(VdiStore)``)."""

    def __init__(self, world):
        root = getattr(world, "vdi_dir", None)
        self.temporary = root is None
        if root is None:
            root = tempfile.mkdtemp(prefix="xapi-sim-vdis-")
            # the directory goes with the world (or at exit, whichever comes first)
            self._finalizer = weakref.finalize(world, shutil.rmtree, root, True)
        else:
            os.makedirs(root, exist_ok=True)
        self.root = root

    @classmethod
    def of(cls, world) -> VdiStore:
        return world.service(cls)

    def cleanup(self) -> None:
        """Remove a temporary directory now (the world is done)."""
        if self.temporary:
            self._finalizer()

    def path(self, key: str) -> str:
        name = key.split(":", 1)[-1]
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a VDI key: {key!r}")
        return os.path.join(self.root, name + ".img")

    # -- queries ---------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def allocated(self, key: str) -> int:
        """Bytes the file takes on disk (0 without a file)."""
        try:
            return os.stat(self.path(key)).st_blocks * 512
        except FileNotFoundError:
            return 0

    def extents(self, key: str, size: int | None = None) -> list[tuple[int, int]]:
        """(offset, length) of the regions that may hold data, in order, within ``size``."""
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            end = os.fstat(fd).st_size if size is None else min(size, os.fstat(fd).st_size)
            return list(_extents(fd, end))
        finally:
            os.close(fd)

    def data_blocks(self, key: str, block: int = BLOCK) -> int:
        """How many ``block``-sized blocks hold data (a VHD's allocated blocks)."""
        seen: set[int] = set()
        for off, length in self.extents(key):
            seen.update(range(off // block, (off + length - 1) // block + 1))
        return len(seen)

    # -- reading and writing ---------------------------------------------------------------
    def read(self, key: str, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` (zeros where nothing was written)."""
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except FileNotFoundError:
            return bytes(n)
        try:
            data = os.pread(fd, n, offset)
        finally:
            os.close(fd)
        return data + bytes(n - len(data)) if len(data) < n else data

    def write(self, key: str, offset: int, data, size: int) -> None:
        """Write ``data`` at ``offset`` of a disk of ``size`` bytes (the file is made, or
        grown, to that size); zeros over a hole are not written."""
        if is_zero(data) and not self._has_data(key, offset, len(data)):
            return
        fd = os.open(self.path(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
        finally:
            os.close(fd)

    def _has_data(self, key: str, offset: int, n: int) -> bool:
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            end = os.fstat(fd).st_size
            if offset >= end:
                return False
            try:
                pos = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    return False
                return True  # no SEEK_DATA here: assume data
            return pos < offset + n
        finally:
            os.close(fd)

    def chunks(self, key: str, size: int, chunk: int) -> Iterator[tuple[int, bytes | None]]:
        """(offset, data) for each ``chunk``-sized piece of the first ``size`` bytes, with
        ``None`` for a piece that lies wholly in a hole (no read needed)."""
        ext = self.extents(key, size)
        i = 0
        for off in range(0, size, chunk):
            n = min(chunk, size - off)
            while i < len(ext) and ext[i][0] + ext[i][1] <= off:
                i += 1
            if i < len(ext) and ext[i][0] < off + n:
                yield off, self.read(key, off, n)
            else:
                yield off, None

    # -- whole disks -----------------------------------------------------------------------
    def resize(self, key: str, size: int) -> None:
        """The disk is now ``size`` bytes; its data is kept (cut if it shrinks)."""
        try:
            fd = os.open(self.path(key), os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def copy(self, src: str, dst: str, size: int) -> None:
        """``dst`` gets ``src``'s first ``size`` bytes, sparsely (replacing its contents)."""
        self.remove(dst)
        tmp = self.path(dst) + ".part"
        try:
            sfd = os.open(self.path(src), os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            dfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(dfd, size)
                for off, length in _extents(sfd, min(size, os.fstat(sfd).st_size)):
                    pos, end = off, off + length
                    while pos < end:
                        data = os.pread(sfd, min(COPY_CHUNK, end - pos), pos)
                        if not data:
                            break
                        if not is_zero(data):
                            os.pwrite(dfd, data, pos)
                        pos += len(data)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        os.replace(tmp, self.path(dst))

    def remove(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass  # never written: nothing to free


def _extents(fd: int, end: int) -> Iterator[tuple[int, int]]:
    pos = 0
    while pos < end:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return
            yield pos, end - pos  # no SEEK_DATA: the rest may all be data
            return
        if start >= end:
            return
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
        yield start, stop - start
        pos = stop
