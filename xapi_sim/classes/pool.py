"""pool: generic messages come from the datamodel; join/eject live in ``pool_join.py``."""

from __future__ import annotations
