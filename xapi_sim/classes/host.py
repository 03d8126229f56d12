"""host: clocks and simple queries (lifecycle and levelling live in ``host_lifecycle.py``).

``get_log`` and ``dmesg_clear`` are forwarded to the host (``do_op_on``: HOST_OFFLINE), where
xapi answers NOT_IMPLEMENTED ["get_log"] / ["dmesg_clear"]; ``list_methods`` answers
NOT_IMPLEMENTED ["list_method"], sic (``xapi_host.ml``, 1.9.0 to v24.16.0).
"""

from __future__ import annotations

from ..dispatch import api
from ..errors import Failure
from .common import on_host


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


def _forwarded_not_implemented(name):
    def handler(call, host):
        on_host(call, host)
        raise Failure("NOT_IMPLEMENTED", name)

    return handler


api("host.get_log")(_forwarded_not_implemented("get_log"))
api("host.dmesg_clear")(_forwarded_not_implemented("dmesg_clear"))


@api("host.list_methods")
def list_methods(call):
    raise Failure("NOT_IMPLEMENTED", "list_method")
