"""Per-world identifiers: one seeded random source, so ``--seed`` fixes every UUID and ref."""

from __future__ import annotations

import os
import random
import threading


class Ids:
    """UUIDs (version 4 form) and ``OpaqueRef:<uuid>`` refs from one seeded generator."""

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._rng = random.Random(seed if seed is not None else os.urandom(16))
        self._lock = threading.Lock()

    def uuid(self) -> str:
        with self._lock:
            bits = self._rng.getrandbits(128)
        # RFC 4122 version 4 / variant bits, as uuid.UUID(int=..., version=4) sets them
        bits = (bits & ~(0xF000 << 64) | (4 << 76)) & ~(0xC000 << 48) | (0x8000 << 48)
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def ref(self) -> str:
        return "OpaqueRef:" + self.uuid()

    def random(self) -> float:
        with self._lock:
            return self._rng.random()
