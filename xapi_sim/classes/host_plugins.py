"""``host.call_plugin``: the dom0 plugins clients call, as a simulated host ships them; and
``host.power_on`` / ``host.set_power_on_mode``, which drive the ``power-on-host`` plugin.

xapi (``xapi_plugins.ml``, the same in every release's source, ``79e9af82c7^`` to ``v24.19.2``) runs
``/etc/xapi.d/plugins/<plugin>`` with the call as an XML-RPC ``methodCall`` (the session and
the string map ``args``) and reads its ``methodResponse``; message forwarding sends the call
to the host named (``do_op_on``: HOST_OFFLINE when it is dead). Plugins answer through
``XenAPIPlugin.dispatch`` (xen-api ``scripts/examples/python/XenAPIPlugin.py``):

* a plugin not in the directory: XENAPI_MISSING_PLUGIN [plugin];
* a function the plugin does not have: UNKNOWN_XENAPI_PLUGIN_FUNCTION [fn];
* an API failure of a call the plugin makes: that failure;
* another Python exception in it: XENAPI_PLUGIN_FAILURE [fn, exception class, message];
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
* ``power-on-host`` (every release; xen-api ``scripts/poweron/power-on.py``): ``main`` with
  ``remote_host_uuid`` powers that host on by its ``power_on_mode``: ``wake-on-lan`` (the
  magic packet to its management PIF's MAC), ``DRAC`` (and ``iLO`` before 8.3, REQ-811
  removed it) with ``power_on_config`` ``power_on_ip``, ``power_on_user`` and the secret
  ``power_on_password_secret``; any other mode is a custom script of that name, which a
  simulated dom0 does not have (the import fails). Then it waits for the host's xapi: the
  simulated host boots and "True" is the answer.
* ``hyperthreading.py`` (XCP-ng 8.3; xcp-ng-xapi-plugins): ``get_hyperthreading`` -- JSON
  ``true``/``false``, whether ``xl info threads_per_core`` is above 1 (simulated CPUs have
  one thread per core). Xen Orchestra asks it for hosts without ``cpu_info:threads_per_core``.

Any other plugin is missing, as on a host without it: Xen Orchestra treats
XENAPI_MISSING_PLUGIN as "not available" for ``smartctl.py``, ``raid.py`` and the others.

``host.set_power_on_mode`` (``xapi_host.ml``) sets the mode and config, then destroys the
secrets the *old* config named under keys ending ``password_secret``
(``Xapi_secret.clean_out_passwds`` -- even one the new config names again), and refreshes the
host's allowed operations. ``host.power_on`` (run on the master) is ``with_host_operation
power_on`` -- HOST_IS_LIVE, HOST_POWER_ON_MODE_DISABLED (``checks/host.py``) -- then the
plugin's ``main``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..allowed import since
from ..dispatch import api
from ..errors import Failure
from ..runtime import GiB
from . import common as c

# dom0's root filesystem: 4 GiB on 6.5 to 7.1, 18 GiB from 8.0 on; the installed system
# and logs take about 2.3 GiB of it
_DOM0_ROOT, _DOM0_ROOT_LATER = 4 * GiB, 18 * GiB
_DOM0_USED = 2400 * 1024 * 1024
# dom0's plugins ran under Python 2 until XenServer 8 (23.30.0); iLO.py was there until 8.2
# (CP-33061), whose power-on.py then caught ModuleNotFoundError -- a name Python 2 lacks.
# A release between two profiles' sources (a played-back database) behaves as the earlier.
POWER_ON_PLUGIN = "power-on-host"  # Constants.power_on_plugin / power_on_fn
POWER_ON_FN = "main"


class _Plugin:
    """A plugin run: the call (its session and world), the host it runs on, what it reads."""

    def __init__(self, call, host_ref):
        row = call.db.get("host", host_ref)
        self.call = call
        db = call.db
        self.with_ilo = not since(db, "stockholm")
        self.python2 = not since(db, "23.30.0")
        self.dom0_root = _DOM0_ROOT_LATER if since(db, "stockholm") else _DOM0_ROOT
        self.cpu_info = row["cpu_info"]
        self.brand = row["software_version"].get("product_brand", "")

    @property
    def free_root_bytes(self) -> int:
        return self.dom0_root - _DOM0_USED

    def no_custom_script(self, name):
        """What ``power-on.py`` raises for a mode whose script dom0 lacks: the ImportError
        of ``__import__`` (6.5 to 7.1); on 8.2 the NameError of its ``except
        ModuleNotFoundError`` under Python 2; from XenServer 8 the ModuleNotFoundError."""
        if self.with_ilo:
            return ImportError(f"No module named {name}")
        if self.python2:
            return NameError("global name 'ModuleNotFoundError' is not defined")
        return ModuleNotFoundError(f"No module named '{name}'")


class HOST_POWER_ON_NOT_CONFIGURED(Exception):  # noqa: N801,N818 -- power-on.py's name
    """What ``power-on.py`` raises for a host whose ``power_on_mode`` is empty."""


def _size(args) -> str:
    if "size" not in args:
        raise Exception("MISSING_SIZE")  # noqa: TRY002 -- what the script raises
    return args["size"]


def _perfmon(_p, _args) -> str:
    return "True"


def _power_on_main(p: _Plugin, args) -> str:
    """``power-on.py`` ``main``: the remote host, its mode and config, the mode's action,
    then ``waitForXapi`` -- here the host boots."""
    db, world = p.call.db, p.call.world
    remote = db.by_uuid("host", args["remote_host_uuid"])
    row = db.get("host", remote)
    mode, config = row["power_on_mode"], row["power_on_config"]
    if mode == "wake-on-lan":
        pif = next((r for r in row["PIFs"] if db.get("PIF", r)["management"]), None)
        if pif is None:
            raise Exception(  # noqa: TRY002 -- wlan.py's own
                f"Failed to find a management interface (PIF) for host uuid {row['uuid']}"
            )
    elif mode == "DRAC" or (mode == "iLO" and p.with_ilo):
        for key in ("power_on_ip", "power_on_user", "power_on_password_secret"):
            if key not in config:
                raise KeyError(key)
        db.get("secret", db.by_uuid("secret", config["power_on_password_secret"]))
    elif mode != "":
        raise p.no_custom_script(mode)
    else:
        raise HOST_POWER_ON_NOT_CONFIGURED()
    h = world.host(remote)
    if h.state != "up":
        world.host_boot(h)
    return "True"


_DISK_SPACE: dict[str, Callable[[_Plugin, dict], str]] = {
    "get_avail_host_disk_space": lambda p, a: str(p.free_root_bytes),
    "get_reclaimable_disk_space": lambda p, a: "0",
    "check_patch_upload": lambda p, a: str(int(_size(a)) < p.free_root_bytes),
    "cleanup_disk_space": lambda p, a: "",
    "get_required_space": lambda p, a: _size(a),
}

_HYPERTHREADING: dict[str, Callable[[_Plugin, dict], str]] = {
    "get_hyperthreading": lambda p, a: json.dumps(int(p.cpu_info.get("threads_per_core", "1")) > 1),
}

_EVERY_HOST = {
    "perfmon": dict.fromkeys(("stop", "start", "restart", "refresh", "debug_mem"), _perfmon),
    "disk-space": _DISK_SPACE,
    POWER_ON_PLUGIN: {POWER_ON_FN: _power_on_main},
}
_XCP_NG = {"hyperthreading.py": _HYPERTHREADING}


def plugins_of(p: _Plugin) -> dict:
    """The plugin directory of the host ``p`` runs on: name -> {function: implementation}."""
    return {**_EVERY_HOST, **(_XCP_NG if p.brand == "XCP-ng" else {})}


def _run(call, host, plugin, fn, args) -> str:
    """``Xapi_plugins.call_plugin`` on ``host``."""
    p = _Plugin(call, host)
    functions = plugins_of(p).get(plugin)
    if functions is None:
        raise Failure("XENAPI_MISSING_PLUGIN", plugin)
    impl = functions.get(fn)
    if impl is None:
        raise Failure("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)
    try:
        return impl(p, dict(args))
    except Failure:
        raise  # an API call of the plugin failed: XenAPIPlugin passes its error on
    except Exception as e:  # noqa: BLE001 -- XenAPIPlugin.dispatch turns it into the failure
        raise Failure("XENAPI_PLUGIN_FAILURE", fn, type(e).__name__, str(e)) from None


@api("host.call_plugin")
def call_plugin(call, host, plugin, fn, args):
    c.on_host(call, host)
    return _run(call, host, plugin, fn, args)


@api("host.set_power_on_mode")
def set_power_on_mode(call, self, power_on_mode, power_on_config):
    db = call.db
    with db.lock:
        old = db.get("host", self)["power_on_config"]
        db.update("host", self, power_on_mode=power_on_mode, power_on_config=power_on_config)
        for key, uuid in old.items():
            if key.endswith("password_secret") and uuid in db.uuids["secret"]:
                db.remove("secret", db.uuids["secret"][uuid])
        c.refresh_host_allowed(call.world, call.world.host(self))


@api("host.power_on")
def power_on(call, host):
    with call.db.lock, c.with_operation(call, "host", host, "power_on") as token:
        uuid = call.db.get("host", host)["uuid"]
        token.mark()
        # the plugin runs on the master, the host that takes the call
        if _run(call, call.host.ref, POWER_ON_PLUGIN, POWER_ON_FN, {"remote_host_uuid": uuid}) != (
            "True"
        ):
            raise Failure("INTERNAL_ERROR", "The host failed to power on.")
