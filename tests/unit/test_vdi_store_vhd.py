"""``vdi_store.py`` (sparse disk contents, many threads) and ``vhd.py`` (the dynamic VHD
format: a hypothesis round trip, and what a reader refuses)."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim import vhd, xva
from xapi_sim.vdi_store import VdiStore

MiB = 1024 * 1024


def _store(tmp_path):
    return VdiStore(types.SimpleNamespace(vdi_dir=str(tmp_path)))


def test_unwritten_disk_reads_as_zeros_and_takes_nothing(tmp_path):
    s = _store(tmp_path)
    assert s.read("OpaqueRef:a", 0, 10) == bytes(10)
    assert s.allocated("OpaqueRef:a") == 0 and s.extents("OpaqueRef:a") == []
    s.write("OpaqueRef:a", 0, bytes(MiB), 64 * MiB)  # zeros over a hole: nothing written
    assert not s.exists("OpaqueRef:a")


def test_sparse_writes_extents_resize_copy_remove(tmp_path):
    s = _store(tmp_path)
    size = 64 * MiB
    s.write("OpaqueRef:a", 10 * MiB, b"\x01" * MiB, size)
    assert os.path.getsize(s.path("OpaqueRef:a")) == size
    assert s.allocated("OpaqueRef:a") < 4 * MiB
    ext = s.extents("OpaqueRef:a")
    assert ext and ext[0][0] <= 10 * MiB and ext[-1][0] + ext[-1][1] >= 11 * MiB
    assert s.data_blocks("OpaqueRef:a") == 1
    s.write("OpaqueRef:a", 10 * MiB, bytes(16), size)  # zeros over data are written
    assert s.read("OpaqueRef:a", 10 * MiB, 17) == bytes(16) + b"\x01"
    s.resize("OpaqueRef:a", 2 * size)
    assert s.read("OpaqueRef:a", 10 * MiB + 16, 4) == b"\x01" * 4
    s.copy("OpaqueRef:a", "OpaqueRef:b", 2 * size)
    assert s.read("OpaqueRef:b", 10 * MiB + 16, 4) == b"\x01" * 4
    assert s.allocated("OpaqueRef:b") < 4 * MiB
    chunks = list(s.chunks("OpaqueRef:b", 16 * MiB, MiB))
    assert [off for off, d in chunks if d is not None] == [10 * MiB]
    s.remove("OpaqueRef:a")
    assert not s.exists("OpaqueRef:a") and s.exists("OpaqueRef:b")


def test_temporary_directory_goes_with_the_world():
    class W:
        vdi_dir = None

    w = W()
    s = VdiStore(w)
    s.write("OpaqueRef:x", 0, b"1", 10)
    root = s.root
    assert os.path.isdir(root)
    s.cleanup()
    assert not os.path.exists(root)


def test_many_threads_write_copy_resize_read(tmp_path):
    """Writers on disjoint regions of one disk, copies, resizes and reads of others, all at
    once: every region ends with what its writer wrote."""
    s = _store(tmp_path)
    size = 32 * MiB
    errors = []
    barrier = threading.Barrier(12)

    def writer(i):
        try:
            barrier.wait()
            for k in range(8):
                off = (i * 8 + k) * 64 * 1024
                s.write("OpaqueRef:shared", off, bytes([i + 1]) * 4096, size)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    def other(i):
        try:
            barrier.wait()
            key = f"OpaqueRef:own{i}"
            s.write(key, i * MiB, bytes([i + 1]) * 1000, size)
            s.resize(key, size + MiB)
            s.copy(key, f"OpaqueRef:copy{i}", size + MiB)
            assert s.read(f"OpaqueRef:copy{i}", i * MiB, 1000) == bytes([i + 1]) * 1000
            s.read("OpaqueRef:shared", 0, MiB)
            s.allocated("OpaqueRef:shared")
            s.remove(key)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=other, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for i in range(8):
        for k in range(8):
            off = (i * 8 + k) * 64 * 1024
            assert s.read("OpaqueRef:shared", off, 4096) == bytes([i + 1]) * 4096
    for i in range(4):
        assert not s.exists(f"OpaqueRef:own{i}") and s.exists(f"OpaqueRef:copy{i}")


# -- VHD ------------------------------------------------------------------------------------------

BLOCK = 4096  # small blocks keep the property fast; the format is the same


def _vhd_bytes(size, contents: dict[int, bytes], block=BLOCK) -> bytes:
    def read_block(i):
        out = bytearray(min(block, size - i * block))
        for off, data in contents.items():
            lo, hi = max(off, i * block), min(off + len(data), (i + 1) * block, size)
            if lo < hi:
                out[lo - i * block : hi - i * block] = data[lo - off : hi - off]
        return bytes(out)

    blocks = {
        i
        for off, data in contents.items()
        for i in range(off // block, (off + len(data) - 1) // block + 1)
    }
    return b"".join(vhd.write(size, blocks, read_block, b"\x01" * 16, 1_000_000_000, block))


@st.composite
def disks(draw):
    size = draw(st.integers(1, 12)) * vhd.SECTOR * 8
    n = draw(st.integers(0, 4))
    contents = {}
    for _ in range(n):
        off = draw(st.integers(0, size - 1))
        data = draw(st.binary(min_size=1, max_size=min(3000, size - off)))
        contents[off] = data
    return size, contents


@settings(max_examples=60, deadline=None)
@given(disks())
def test_vhd_round_trip(disk):
    size, contents = disk
    data = _vhd_bytes(size, contents)
    blocks = {
        i
        for off, d in contents.items()
        for i in range(off // BLOCK, (off + len(d) - 1) // BLOCK + 1)
    }
    assert len(data) == vhd.stream_length(size, len(blocks), BLOCK)
    r = vhd.Reader(io.BytesIO(data).read)
    assert r.size == size and r.block == BLOCK
    out = bytearray(size)
    for off, piece in r.blocks():
        out[off : off + len(piece)] = piece
    assert bytes(out) == _vhd_expected(size, contents)


def _vhd_expected(size, contents):
    out = bytearray(size)
    for off, data in contents.items():
        out[off : off + len(data)] = data
    return bytes(out[:size])


def test_vhd_structures_and_refusals():
    data = _vhd_bytes(2 * MiB, {0: b"abc"}, block=vhd.BLOCK)
    assert data[:8] == b"conectix" and data[512:520] == b"cxsparse" and data[-512:] == data[:512]
    assert vhd.checksum(data[:64] + bytes(4) + data[68:512]).to_bytes(4, "big") == data[64:68]
    bad = bytearray(data)
    bad[100] ^= 1
    with pytest.raises(vhd.VhdError, match="checksum"):
        vhd.Reader(io.BytesIO(bytes(bad)).read)
    with pytest.raises(vhd.VhdError, match="conectix"):
        vhd.Reader(io.BytesIO(bytes(1024)).read)
    fixed = vhd.footer(MiB, bytes(16), 0, vhd.DISK_FIXED)
    with pytest.raises(vhd.VhdError, match="fixed"):
        vhd.Reader(io.BytesIO(fixed).read)
    with pytest.raises(vhd.VhdError, match="ends"):
        list(vhd.Reader(io.BytesIO(data[:2000]).read).blocks())
    # a cleared bitmap bit reads as zeros
    mask = bytearray(data)
    first = 1536 + 512  # the BAT is one sector; the block's bitmap follows
    mask[first] = 0x7F
    r = vhd.Reader(io.BytesIO(bytes(mask)).read)
    [(off, piece)] = list(r.blocks())
    assert off == 0 and piece[:3] == bytes(3)


def test_vhd_geometry_matches_the_specification():
    assert vhd.geometry(2 * 1024**3) == (4161, 16, 63)
    assert vhd.geometry(127 * 1024**3)[1:] == (16, 255)


def test_xva_tar_members_read_with_tarfile_and_back():
    import tarfile

    stream = (
        xva.member("ova.xml", b"<value/>")
        + b"".join(xva.disk_members("Ref:3", 3 * xva.CHUNK + 5, _chunks(3 * xva.CHUNK + 5)))
        + xva.END
    )
    names = tarfile.open(fileobj=io.BytesIO(stream)).getnames()
    assert names == [
        "ova.xml",
        "Ref:3/00000000",
        "Ref:3/00000000.checksum",
        "Ref:3/00000002",
        "Ref:3/00000002.checksum",
        "Ref:3/00000003",
        "Ref:3/00000003.checksum",
    ]
    r = xva.TarReader(io.BytesIO(stream).read)
    got = []
    while (e := r.next()) is not None:
        got.append((e[0], r.data()))
    assert [n for n, _ in got] == names
    assert got[4][1] == hashlib.sha1(b"\x07" * xva.CHUNK).hexdigest().encode()
    assert got[1][1] == bytes(xva.CHUNK) and got[5][1] == bytes(5)  # first and last kept


def _chunks(size):
    for off in range(0, size, xva.CHUNK):
        n = min(xva.CHUNK, size - off)
        yield off, (b"\x07" * n if off == 2 * xva.CHUNK else None)
