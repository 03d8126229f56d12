"""``host.call_plugin``: the dom0 plugins clients call, as a simulated host ships them.

xapi (``xapi_plugins.ml``, the same at 1.9.0 and v24.16.0) runs
``/etc/xapi.d/plugins/<plugin>`` with the call as an XML-RPC ``methodCall`` (the session and
the string map ``args``) and reads its ``methodResponse``; message forwarding sends the call
to the host named (``do_op_on``: HOST_OFFLINE when it is dead). Plugins answer through
``XenAPIPlugin.dispatch`` (xen-api ``scripts/examples/python/XenAPIPlugin.py``):

* a plugin not in the directory: XENAPI_MISSING_PLUGIN [plugin];
* a function the plugin does not have: UNKNOWN_XENAPI_PLUGIN_FUNCTION [fn];
* a Python exception in it: XENAPI_PLUGIN_FAILURE [fn, exception class, message];
* otherwise the string it returns.

The plugins simulated here, each function answering what the script computes:

* ``perfmon`` (every release; xen-api ``scripts/plugins/perfmon``): ``start``, ``stop``,
  ``restart``, ``refresh``, ``debug_mem`` -- "True" (the daemon took the command).
  XenCenter calls ``refresh`` after it edits a performance alert.
* ``disk-space`` (every release; xen-api ``scripts/plugins/disk-space``, from dom0.hg):
  ``get_avail_host_disk_space`` (dom0's free root space in bytes),
  ``check_patch_upload`` (``size`` < that), ``get_required_space`` (``size``),
  ``get_reclaimable_disk_space`` (uploaded hotfix files: none are kept on a simulated host,
  "0"), ``cleanup_disk_space`` (""). XenCenter calls them before a patch upload. A
  missing ``size`` is the script's ``Exception("MISSING_SIZE")``, a non-integer one the
  ``ValueError`` of ``int()``.
* ``hyperthreading.py`` (XCP-ng 8.3; xcp-ng-xapi-plugins): ``get_hyperthreading`` -- JSON
  ``true``/``false``, whether ``xl info threads_per_core`` is above 1 (simulated CPUs have
  one thread per core). Xen Orchestra asks it for hosts without ``cpu_info:threads_per_core``.

Any other plugin is missing, as on a host without it: Xen Orchestra treats
XENAPI_MISSING_PLUGIN as "not available" for ``smartctl.py``, ``raid.py`` and the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..dispatch import api
from ..errors import Failure
from ..runtime import GiB
from . import common as c

# dom0's root filesystem: 4 GiB on 6.5 to 7.1, 18 GiB from 8.0 on; the installed system
# and logs take about 2.3 GiB of it
_DOM0_ROOT = {"cream": 4 * GiB, "dundee": 4 * GiB, "ely": 4 * GiB}
_DOM0_ROOT_LATER = 18 * GiB
_DOM0_USED = 2400 * 1024 * 1024


class _Host:
    """What a plugin may read of the host it runs on."""

    def __init__(self, call, host_ref):
        row = call.db.get("host", host_ref)
        self.release = call.db.schema.release
        self.cpu_info = row["cpu_info"]
        self.brand = row["software_version"].get("product_brand", "")

    @property
    def free_root_bytes(self) -> int:
        return _DOM0_ROOT.get(self.release, _DOM0_ROOT_LATER) - _DOM0_USED


def _size(args) -> str:
    if "size" not in args:
        raise Exception("MISSING_SIZE")  # noqa: TRY002 -- what the script raises
    return args["size"]


def _perfmon(_host, _args) -> str:
    return "True"


_DISK_SPACE: dict[str, Callable[[_Host, dict], str]] = {
    "get_avail_host_disk_space": lambda h, a: str(h.free_root_bytes),
    "get_reclaimable_disk_space": lambda h, a: "0",
    "check_patch_upload": lambda h, a: str(int(_size(a)) < h.free_root_bytes),
    "cleanup_disk_space": lambda h, a: "",
    "get_required_space": lambda h, a: _size(a),
}

_HYPERTHREADING: dict[str, Callable[[_Host, dict], str]] = {
    "get_hyperthreading": lambda h, a: json.dumps(int(h.cpu_info.get("threads_per_core", "1")) > 1),
}

_EVERY_HOST = {
    "perfmon": dict.fromkeys(("stop", "start", "restart", "refresh", "debug_mem"), _perfmon),
    "disk-space": _DISK_SPACE,
}
_XCP_NG = {"hyperthreading.py": _HYPERTHREADING}


def plugins_of(host: _Host) -> dict:
    """The plugin directory of ``host``: name -> {function: implementation}."""
    return {**_EVERY_HOST, **(_XCP_NG if host.brand == "XCP-ng" else {})}


@api("host.call_plugin")
def call_plugin(call, host, plugin, fn, args):
    c.on_host(call, host)
    h = _Host(call, host)
    functions = plugins_of(h).get(plugin)
    if functions is None:
        raise Failure("XENAPI_MISSING_PLUGIN", plugin)
    impl = functions.get(fn)
    if impl is None:
        raise Failure("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)
    try:
        return impl(h, dict(args))
    except Exception as e:  # noqa: BLE001 -- XenAPIPlugin.dispatch turns it into the failure
        raise Failure("XENAPI_PLUGIN_FAILURE", fn, type(e).__name__, str(e)) from None
