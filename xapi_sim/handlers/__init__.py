"""XAPI's non-RPC HTTP handlers, one module per family; importing this package registers
each with ``wire.routes`` (``@routes.get(path)`` / ``@routes.put(path)``). See docs/http.md."""

from . import dbdump, patch_upload, raw_vdi, rrd, system_status, xva  # noqa: F401
