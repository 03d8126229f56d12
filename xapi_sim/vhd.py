"""The VHD dynamic disk format, written and read as streams (``format=vhd`` of
``/import_raw_vdi`` and ``/export_raw_vdi``, which xapi hands to ``vhd-tool``).

The layout is Microsoft's "Virtual Hard Disk Image Format Specification" as vhd-tool
writes it: a copy of the footer (512 bytes, cookie ``conectix``, disk type 3 = dynamic),
the dynamic disk header (1024 bytes, cookie ``cxsparse``) at offset 512, the block
allocation table (BAT: one big-endian sector offset per 2 MiB block, ``0xFFFFFFFF`` for an
unallocated block) at offset 1536, then each allocated block as its sector bitmap (one bit
per 512-byte sector, padded to a sector) followed by its data, and the footer again. All
integers are big-endian; a checksum is the ones' complement of the byte sum of the
structure with its checksum field zeroed.

Writing streams (the BAT is known before any data, so the length is too); reading takes a
sequential ``read(n)`` and visits the blocks in file order, so neither needs the whole disk
in memory. Pure: no I/O here.
"""

from __future__ import annotations

import struct
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Iterator

SECTOR = 512
BLOCK = 2 * 1024 * 1024
FOOTER_COOKIE = b"conectix"
HEADER_COOKIE = b"cxsparse"
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z
DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING = 2, 3, 4
UNUSED = 0xFFFFFFFF
HEADER_OFFSET = SECTOR
BAT_OFFSET = 3 * SECTOR
MAX_SIZE = 2040 * 1024**3  # 2040 GiB, the format's dynamic-disk limit as vhd-util has it

_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
_HEADER = struct.Struct(">8sQQIIII16sI4s512s192s256s")


class VhdError(ValueError):
    """Not a VHD this reader accepts (with why)."""


def checksum(data: bytes) -> int:
    return (~sum(data)) & 0xFFFFFFFF


def geometry(size: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) as the specification's appendix computes."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def footer(size: int, disk_uuid: bytes, timestamp: int, disk_type: int = DISK_DYNAMIC) -> bytes:
    cyl, heads, spt = geometry(size)
    data_offset = HEADER_OFFSET if disk_type != DISK_FIXED else 0xFFFFFFFFFFFFFFFF
    fields = [
        FOOTER_COOKIE,
        2,  # features: reserved bit always set
        0x00010000,
        data_offset,
        max(0, timestamp - VHD_EPOCH) & 0xFFFFFFFF,
        b"tap\x00",
        0x00010003,
        b"Lnux",
        size,
        size,
        cyl,
        heads,
        spt,
        disk_type,
        0,
        disk_uuid,
        0,
        bytes(427),
    ]
    raw = _FOOTER.pack(*fields)
    fields[14] = checksum(raw)
    return _FOOTER.pack(*fields)


def dynamic_header(size: int, block: int = BLOCK) -> bytes:
    entries = -(-size // block)
    fields = [
        HEADER_COOKIE,
        0xFFFFFFFFFFFFFFFF,
        BAT_OFFSET,
        0x00010000,
        entries,
        block,
        0,
        bytes(16),
        0,
        bytes(4),
        bytes(512),
        bytes(192),
        bytes(256),
    ]
    raw = _HEADER.pack(*fields)
    fields[6] = checksum(raw)
    return _HEADER.pack(*fields)


def _pad(n: int) -> int:
    return -(-n // SECTOR) * SECTOR


def bitmap_size(block: int = BLOCK) -> int:
    return _pad(block // SECTOR // 8)


def stream_length(size: int, nblocks: int, block: int = BLOCK) -> int:
    """Bytes ``write`` produces for a disk of ``size`` with ``nblocks`` allocated."""
    entries = -(-size // block)
    return BAT_OFFSET + _pad(4 * entries) + nblocks * (bitmap_size(block) + block) + SECTOR


def write(
    size: int,
    blocks: Iterable[int],
    read_block: Callable[[int], bytes],
    disk_uuid: bytes | None = None,
    timestamp: int = VHD_EPOCH,
    block: int = BLOCK,
) -> Iterator[bytes]:
    """The pieces of a dynamic VHD of virtual ``size`` whose allocated blocks are
    ``blocks`` (indices); ``read_block(i)`` gives block ``i``'s bytes (the last block of
    a size that is not a multiple of the block may be short: it is padded with zeros)."""
    if size < 0 or size > MAX_SIZE:
        raise VhdError(f"virtual size {size} is out of the VHD range")
    disk_uuid = disk_uuid or uuid_mod.uuid4().bytes
    entries = -(-size // block)
    order = sorted(set(blocks))
    if order and (order[0] < 0 or order[-1] >= entries):
        raise VhdError("a block index is outside the disk")
    foot = footer(size, disk_uuid, timestamp)
    yield foot
    yield dynamic_header(size, block)
    bat = [UNUSED] * entries
    bsize = bitmap_size(block)
    first = (BAT_OFFSET + _pad(4 * entries)) // SECTOR
    for n, i in enumerate(order):
        bat[i] = first + n * (bsize + block) // SECTOR
    table = struct.pack(f">{entries}I", *bat)
    yield table + bytes(_pad(len(table)) - len(table))
    bitmap = b"\xff" * (block // SECTOR // 8) + bytes(bsize - block // SECTOR // 8)
    for i in order:
        data = read_block(i)
        if len(data) > block:
            raise VhdError(f"block {i} is larger than the block size")
        yield bitmap
        yield data if len(data) == block else data + bytes(block - len(data))
    yield foot


class Reader:
    """A dynamic VHD read sequentially from ``read(n)`` (which returns fewer bytes only at
    the end of the stream). ``size`` is known once constructed; ``blocks()`` yields
    ``(offset, data)`` for each allocated block in file order (``data`` has the sectors
    whose bitmap bit is clear zeroed, and is cut at the virtual size)."""

    def __init__(self, read: Callable[[int], bytes]):
        self._read = read
        self.pos = 0
        foot = self._exact(SECTOR, "footer")
        f = _FOOTER.unpack(foot)
        if f[0] != FOOTER_COOKIE:
            raise VhdError("no VHD footer cookie (conectix) at the start of the stream")
        if checksum(foot[:64] + bytes(4) + foot[68:]) != f[14]:
            raise VhdError("the VHD footer checksum does not match")
        self.disk_type, self.size, self.uuid = f[13], f[9], f[15]
        if self.disk_type != DISK_DYNAMIC:
            kind = {DISK_FIXED: "fixed", DISK_DIFFERENCING: "differencing"}.get(
                self.disk_type, str(self.disk_type)
            )
            raise VhdError(f"only dynamic VHDs can be streamed, not {kind}")
        self._skip_to(f[3])
        head = self._exact(1024, "dynamic header")
        h = _HEADER.unpack(head)
        if h[0] != HEADER_COOKIE:
            raise VhdError("no dynamic disk header cookie (cxsparse)")
        if checksum(head[:36] + bytes(4) + head[40:]) != h[6]:
            raise VhdError("the VHD dynamic header checksum does not match")
        self.block, entries = h[5], h[4]
        if self.block < SECTOR or self.block % SECTOR or self.block > 256 * BLOCK:
            raise VhdError(f"unsupported block size {self.block}")
        if entries * self.block < self.size:
            raise VhdError("the BAT does not cover the virtual size")
        self._skip_to(h[2])
        table = self._exact(4 * entries, "BAT")
        self.bat = struct.unpack(f">{entries}I", table)

    def _exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise VhdError(f"the stream ends inside the {what}")
        self.pos += n
        return data

    def _skip_to(self, offset: int) -> None:
        if offset < self.pos:
            raise VhdError("the VHD structures are not in stream order")
        while self.pos < offset:
            n = min(offset - self.pos, 1 << 20)
            if len(self._read(n)) != n:
                raise VhdError("the stream ends before a VHD structure")
            self.pos += n

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        bsize = bitmap_size(self.block)
        order = sorted((s, i) for i, s in enumerate(self.bat) if s != UNUSED)
        for sector, i in order:
            self._skip_to(sector * SECTOR)
            bitmap = self._exact(bsize, "sector bitmap")
            data = self._exact(self.block, "data block")
            if any(b != 0xFF for b in bitmap[: self.block // SECTOR // 8]):
                data = _mask(data, bitmap)
            off = i * self.block
            if off < self.size:
                yield off, data[: self.size - off]


def _mask(data: bytes, bitmap: bytes) -> bytes:
    out = bytearray(data)
    for s in range(len(data) // SECTOR):
        if not bitmap[s >> 3] & (0x80 >> (s & 7)):
            out[s * SECTOR : (s + 1) * SECTOR] = bytes(SECTOR)
    return bytes(out)
