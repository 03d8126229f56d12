"""VM behaviour (lifecycle with CPU flags lives in ``vm_lifecycle.py``)."""

from __future__ import annotations
