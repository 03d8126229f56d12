"""The ``VDI.list_changed_blocks`` bitmap (``cbt_log.py``): blktap's length, the SM's bit
order, and block comparison by digest (hypothesis properties)."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.cbt_log import (
    CBT_BLOCK_SIZE,
    bitmap_bytes,
    changed_blocks,
    decode_bitmap,
    encode_bitmap,
)

sizes = st.integers(min_value=1, max_value=64 * 1024 * CBT_BLOCK_SIZE)


@given(sizes, st.data())
def test_round_trip_and_length(size, data):
    nblocks = -(-size // CBT_BLOCK_SIZE)
    blocks = data.draw(st.sets(st.integers(min_value=0, max_value=nblocks - 1), max_size=50))
    text = encode_bitmap(blocks, size)
    raw = base64.b64decode(text)
    assert len(raw) == bitmap_bytes(size) == -(-nblocks // 8)
    assert decode_bitmap(text) == sorted(blocks)
    # most significant bit first: block i is bit 7 - i % 8 of byte i // 8
    for i in blocks:
        assert raw[i // 8] >> (7 - i % 8) & 1
    # Xen Orchestra: a 2 MiB VHD block (4 bytes) is read when any of its 32 bits is set
    vhd = {i // 32 for i in blocks}
    assert {j for j in range(-(-len(raw) // 4)) if any(raw[j * 4 : j * 4 + 4])} == vhd


digests = st.dictionaries(st.integers(0, 200), st.sampled_from(["a", "b", "c"]), max_size=30)


@given(digests, digests, sizes)
def test_changed_blocks_are_the_differing_ones(a, b, size):
    n = -(-size // CBT_BLOCK_SIZE)
    got = changed_blocks(a, b, size)
    assert got == sorted(set(got))
    assert got == changed_blocks(b, a, size)
    for i in range(min(n, 201)):
        assert (i in got) == (a.get(i) != b.get(i))
    assert changed_blocks(a, a, size) == []


class _World:
    """What ``CbtLogs`` needs of a world: a disk directory and its services."""

    def __init__(self, root):
        self.vdi_dir = str(root)
        self._services: dict = {}

    def service(self, cls):
        if cls not in self._services:
            self._services[cls] = cls(self)
        return self._services[cls]


def test_many_threads_keep_the_chains_whole(tmp_path):
    """Threads snapshotting, destroying and listing on their own chains concurrently: every
    chain ends up linked oldest -> newest -> the VDI."""
    import threading

    from xapi_sim.cbt_log import CbtLogs

    logs = CbtLogs.of(_World(tmp_path))
    errors = []

    def work(n):
        try:
            vdi = f"OpaqueRef:v{n}"
            logs.enable(vdi, CBT_BLOCK_SIZE * 8)
            snaps = [f"OpaqueRef:s{n}-{k}" for k in range(6)]
            for s in snaps:
                logs.snapshot(vdi, s, CBT_BLOCK_SIZE * 8)
            logs.remove(snaps[2])
            kept = [s for s in snaps if s != snaps[2]]
            for a, b in zip(kept, kept[1:] + [vdi], strict=True):
                assert logs.related(a, b) and not logs.related(b, a)
            assert logs.related(kept[0], vdi)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
