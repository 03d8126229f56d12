"""Per-world identifiers: one seeded random source, so ``--seed`` fixes every UUID and ref."""
from __future__ import annotations

import os
import random
import threading
import uuid as _uuid


class Ids:
    """UUIDs (version 4 form) and ``OpaqueRef:<uuid>`` refs from one seeded generator."""

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._rng = random.Random(seed if seed is not None else os.urandom(16))
        self._lock = threading.Lock()

    def uuid(self) -> str:
        with self._lock:
            bits = self._rng.getrandbits(128)
        return str(_uuid.UUID(int=bits, version=4))

    def ref(self) -> str:
        return "OpaqueRef:" + self.uuid()

    def random(self) -> float:
        with self._lock:
            return self._rng.random()
