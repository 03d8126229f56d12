"""host: clocks and simple queries (lifecycle and levelling live in ``host_lifecycle.py``)."""

from __future__ import annotations

from ..dispatch import api


@api("host.get_servertime")
def get_servertime(call, host):
    call.db.get("host", host)
    return call.world.clock.now_ts()


@api("host.get_server_localtime")
def get_server_localtime(call, host):
    """Local time without a timezone designator, as XAPI sends it."""
    call.db.get("host", host)
    return call.world.clock.local_ts()


@api("host.compute_free_memory")
def compute_free_memory(call, host):
    """Memory not used by resident domains (xapi_host.ml compute_free_memory)."""
    call.db.get("host", host)
    return call.world.host_free_memory(call.world.host(host))


@api("host.compute_memory_overhead")
def compute_memory_overhead(call, host):
    return call.db.get("host", host)["memory_overhead"]
