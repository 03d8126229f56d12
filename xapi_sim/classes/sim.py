"""The simulator's own control API (``sim.*``), documented in docs/control-api.md.

Not part of XAPI: absent from ``system.listMethods``; callable with any valid session on any
endpoint, naming any host of the world.
"""
from __future__ import annotations
