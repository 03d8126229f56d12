"""Changed block tracking logs, as the SM backends keep them beside each VDI (sm v2.30.7
``drivers/VDI.py``, ``cbtutil.py``; blktap ``include/cbt-util.h``), and the bitmap
``VDI.list_changed_blocks`` answers.

A CBT-enabled VDI has a log ``<vdi>.cbtlog`` next to its contents (``vdi_store.py``) holding
the chain pointers ``parent`` and ``child`` (the null UUID, here ``""``, for none) and the
disk's size. The SM keeps them in step:

* ``configure_blocktracking`` enable: a new log, no parent, no child; disable: the log goes
  and its parent's ``child`` is cleared;
* ``snapshot`` of a CBT-enabled VDI (``_cbt_snapshot``): the VDI's log becomes the
  snapshot's (its parent now points at the snapshot), and the VDI gets a new log whose
  parent is the snapshot, the snapshot's child being the VDI -- so a chain runs oldest
  snapshot -> ... -> newest snapshot -> the VDI;
* ``delete`` of a VDI with a log: its parent and child are linked to each other, the log
  goes; ``data_destroy`` (``delete(data_only=True)``) keeps the log.

Where blktap records every write in the log's bitmap, the simulator records what a block
holds: ``data_destroy`` keeps a digest of each 64 KiB block that holds data in the log, so
that ``list_changed_blocks`` can still compare the snapshot with a later one once its data
is gone. A block is "changed" when its bytes differ (see docs/storage.md).

The bitmap (``VDI.list_changed_blocks``): one bit per 64 KiB block (``CBT_BLOCK_SIZE``) of
the target's size, ``ceil(ceil(size / 64 KiB) / 8)`` bytes (``bitmap_size``), block ``i``
the bit ``0x80 >> (i % 8)`` of byte ``i // 8`` (the SM reverses blktap's bit order with
``bitarray.bytereverse`` and returns ``tobytes()`` of a big-endian bitarray), base64.

The log files are small JSON documents written whole (``os.replace``); one lock per world
serialises the chain's read-modify-write steps (never a database lock: callers hold none).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterable

from .vdi_store import VdiStore, is_zero

CBT_BLOCK_SIZE = 64 * 1024


def bitmap_bytes(size: int) -> int:
    """blktap ``bitmap_size``: bytes of the bitmap of a disk of ``size`` bytes."""
    blocks = -(-size // CBT_BLOCK_SIZE)
    return -(-blocks // 8)


def encode_bitmap(blocks: Iterable[int], size: int) -> str:
    """The base64 bitmap of the changed ``blocks`` (indexes) of a disk of ``size`` bytes."""
    out = bytearray(bitmap_bytes(size))
    for i in blocks:
        if 0 <= i < len(out) * 8:
            out[i // 8] |= 0x80 >> (i % 8)
    return base64.b64encode(bytes(out)).decode("ascii")


def decode_bitmap(text: str) -> list[int]:
    """The block indexes a bitmap marks, in order (what a client reads back)."""
    data = base64.b64decode(text)
    return [i for i in range(len(data) * 8) if data[i // 8] & (0x80 >> (i % 8))]


def digest_blocks(store: VdiStore, key: str, size: int) -> dict[int, str]:
    """Block index -> digest of each 64 KiB block of ``key`` that holds non-zero data."""
    seen: set[int] = set()
    for off, length in store.extents(key, size):
        seen.update(range(off // CBT_BLOCK_SIZE, (off + length - 1) // CBT_BLOCK_SIZE + 1))
    out = {}
    for i in sorted(seen):
        start = i * CBT_BLOCK_SIZE
        data = store.read(key, start, min(CBT_BLOCK_SIZE, size - start))
        if not is_zero(data):
            out[i] = hashlib.blake2b(data, digest_size=16).hexdigest()
    return out


def changed_blocks(a: dict[int, str], b: dict[int, str], size: int) -> list[int]:
    """Blocks of a disk of ``size`` bytes whose digests differ (absent = zeros)."""
    n = -(-size // CBT_BLOCK_SIZE)
    return sorted(i for i in set(a) | set(b) if i < n and a.get(i) != b.get(i))


class CbtLogs:
    """The world's CBT logs (``world.service(CbtLogs)``), keyed by VDI reference."""

    def __init__(self, world):
        self.store = VdiStore.of(world)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, world) -> CbtLogs:
        return world.service(cls)

    def _path(self, key: str) -> str:
        return self.store.path(key)[: -len(".img")] + ".cbtlog"

    def read(self, key: str) -> dict | None:
        try:
            with open(self._path(key), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return bool(key) and os.path.exists(self._path(key))

    def _write(self, key: str, log: dict) -> None:
        tmp = self._path(key) + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(log, f)
        os.replace(tmp, self._path(key))

    def _unlink(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass  # already gone (a VDI never written, or removed before): nothing to undo

    def _set(self, key: str, **fields) -> None:
        log = self.read(key) if key else None
        if log is not None:
            log.update(fields)
            self._write(key, log)

    # -- the SM's steps --------------------------------------------------------------------
    def enable(self, key: str, size: int) -> None:
        """``_create_cbt_log``: a fresh log (no parent, no child)."""
        with self._lock:
            if self.read(key) is None:
                self._write(key, {"parent": "", "child": "", "size": size})

    def disable(self, key: str) -> None:
        """``configure_blocktracking`` disable: the log goes, its parent's child is null."""
        with self._lock:
            log = self.read(key)
            if log is None:
                return
            self._unlink(key)
            self._set(log["parent"], child="")

    def snapshot(self, vdi: str, snap: str, size: int) -> None:
        """``_cbt_snapshot``: the VDI's log becomes the snapshot's; a new one for the VDI."""
        with self._lock:
            log = self.read(vdi)
            if log is None:
                return
            self._write(snap, {**log, "child": vdi, "size": size})
            self._set(log["parent"], child=snap)
            self._write(vdi, {"parent": snap, "child": "", "size": size})

    def remove(self, key: str) -> None:
        """``delete``: parent and child linked to each other, the log removed."""
        with self._lock:
            log = self.read(key)
            if log is None:
                return
            self._set(log["parent"], child=log["child"])
            self._set(log["child"], parent=log["parent"])
            self._unlink(key)

    def keep_digests(self, key: str, size: int) -> None:
        """Before ``data_destroy`` removes the data: its block digests into the log."""
        digests = digest_blocks(self.store, key, size)
        with self._lock:
            self._set(key, digests={str(i): d for i, d in digests.items()})

    # -- list_changed_blocks ---------------------------------------------------------------
    def related(self, frm: str, to: str) -> bool:
        """Both have logs and ``to`` is reached from ``frm`` through child pointers."""
        if not (self.exists(frm) and self.exists(to)):
            return False
        seen = {frm}
        cur = frm
        while True:
            log = self.read(cur)
            nxt = log["child"] if log is not None else ""
            if not self.exists(nxt) or nxt in seen:
                return False
            if nxt == to:
                return True
            seen.add(nxt)
            cur = nxt

    def digests(self, key: str, size: int) -> dict[int, str]:
        """The blocks' digests: kept ones after ``data_destroy``, else from the data."""
        log = self.read(key)
        if log is not None and "digests" in log:
            return {int(i): d for i, d in log["digests"].items()}
        return digest_blocks(self.store, key, size)
