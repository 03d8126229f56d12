"""host: clocks, simple queries and the live hostname (lifecycle and levelling live in
``host_lifecycle.py``).

``get_log`` and ``dmesg_clear`` are forwarded to the host (``do_op_on``: HOST_OFFLINE), where
xapi answers NOT_IMPLEMENTED ["get_log"] / ["dmesg_clear"]; ``list_methods`` answers
NOT_IMPLEMENTED ["list_method"], sic (``xapi_host.ml``, from 6.5's source ``79e9af82c7^``
to 8.3's ``v24.19.2``).
"""

from __future__ import annotations

import string

from ..allowed import rpu_in_progress
from ..dispatch import after_write, api
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


HOSTNAME_CHARS = frozenset(string.ascii_letters + string.digits + "-.")
DOM0_STEM = "Control domain on host: "


def hostname_error(hostname: str) -> str | None:
    """``Xapi_host.set_hostname_live``'s checks, in order: the ``HOST_NAME_INVALID`` reason
    for ``hostname``, or None. Letters, digits, ``-`` and ``.`` only, no ``-`` first or last,
    1 to 255 bytes (OCaml strings: the length is in bytes)."""
    size = len(hostname.encode("utf-8"))
    if size == 0:
        return "hostname empty"
    if size > 255:
        return "hostname is too long"
    if hostname[0] == "-" or hostname[-1] == "-" or not set(hostname) <= HOSTNAME_CHARS:
        return "hostname contains invalid characters"
    return None


@api("host.set_hostname_live")
def set_hostname_live(call, host, hostname):
    """xen-api ``xapi_host.ml`` ``set_hostname_live`` (the same from ``dundee-lcm`` to
    ``v24.16.0``) behind ``message_forwarding.ml``'s ``do_op_on`` (``HOST_OFFLINE`` for a host
    that is not live): an AD-joined host refuses (``AUTH_ALREADY_ENABLED [type, service]``),
    then the name is checked (``HOST_NAME_INVALID [reason]``); ``hostname`` is set and
    ``Helpers.update_domain_zero_name`` renames the host's control domain if it still has
    its default name (``Control domain on host: ...``). ``name_label`` is left alone."""
    db = call.db
    with db.lock:
        on_host(call, host)
        row = db.get("host", host)
        if row["external_auth_type"] == "AD":
            raise Failure(
                "AUTH_ALREADY_ENABLED", row["external_auth_type"], row["external_auth_service_name"]
            )
        reason = hostname_error(hostname)
        if reason is not None:
            raise Failure("HOST_NAME_INVALID", reason)
        db.set("host", host, "hostname", hostname)
        for vm in row["resident_VMs"]:
            dom0 = db.tables["VM"].get(vm)
            if dom0 is None or not dom0["is_control_domain"]:
                continue
            name = dom0["name_label"]
            if name.startswith(DOM0_STEM) and name != DOM0_STEM + hostname:
                db.set("VM", vm, "name_label", DOM0_STEM + hostname)


def _set_with_other_config(db, host, field, value, text) -> None:
    """The field, then ``other_config:<field>`` as its text: removed first and added back,
    as xapi keeps the legacy key in step."""
    oc = {k: v for k, v in db.get("host", host)["other_config"].items() if k != field}
    db.update("host", host, **{field: value, "other_config": {**oc, field: text}})


@api("host.set_iscsi_iqn")
def set_iscsi_iqn(call, host, value):
    """``Xapi_host.set_iscsi_iqn`` (8.0 on), forwarded (HOST_OFFLINE): an empty IQN is
    INVALID_VALUE ["value", ""]."""
    with call.db.lock:
        on_host(call, host)
        if value == "":
            raise Failure("INVALID_VALUE", "value", value)
        _set_with_other_config(call.db, host, "iscsi_iqn", value, value)


@api("host.set_multipathing")
def set_multipathing(call, host, value):
    """``Xapi_host.set_multipathing`` (8.0 on), forwarded (HOST_OFFLINE); the legacy key is
    ``string_of_bool``."""
    with call.db.lock:
        on_host(call, host)
        _set_with_other_config(call.db, host, "multipathing", value, "true" if value else "false")


@after_write("host", "other_config")
def other_config_watcher(call, host):
    """``Xapi_host_helpers.Configuration.watch_other_configs`` (8.0 on): on a host's change,
    outside a rolling upgrade, a non-empty ``other_config:iscsi_iqn`` that differs from
    ``iscsi_iqn`` is applied with ``host.set_iscsi_iqn``, and an ``other_config:multipathing``
    of "true"/"false" (``bool_of_string``) that differs from ``multipathing`` with
    ``host.set_multipathing``. Those calls go to the host: a dead one is left as it is (the
    watcher logs the failure). xapi's watcher follows events; here it runs with the edit."""
    db = call.db
    row = db.get("host", host)
    if "iscsi_iqn" not in row or rpu_in_progress(db):
        return
    h = call.world.host(host)
    if h.state != "up" or not call.world.is_live(h):
        return
    oc = row["other_config"]
    iqn = oc.get("iscsi_iqn", "")
    if iqn and iqn != row["iscsi_iqn"]:
        _set_with_other_config(db, host, "iscsi_iqn", iqn, iqn)
    mp = oc.get("multipathing")
    if mp in ("true", "false") and (mp == "true") != row["multipathing"]:
        _set_with_other_config(db, host, "multipathing", mp == "true", mp)


@api("host.get_sched_gran")
def get_sched_gran(call, self):
    """``Xapi_host.get_sched_gran`` (1.271 on), forwarded (HOST_OFFLINE): ``xen-cmdline
    --get-xen sched-gran`` of a host booted with Xen's default has no entry: ``cpu``."""
    on_host(call, self)
    return "cpu"


@api("host.set_sched_gran")
def set_sched_gran(call, self, value):
    """``Xapi_host.set_sched_gran``, forwarded: xapi.conf's
    ``allow-host-sched-gran-modification`` is false unless an administrator sets it, so a
    host refuses with OPERATION_NOT_ALLOWED ["Disabled by xapi.conf"]."""
    on_host(call, self)
    raise Failure("OPERATION_NOT_ALLOWED", "Disabled by xapi.conf")


@api("host.syslog_reconfigure")
def syslog_reconfigure(call, host):
    """``Xapi_host.syslog_reconfigure``, forwarded (HOST_OFFLINE): the host re-runs its
    syslog configuration script with ``logging:syslog_destination`` (``--remote=<dest>``, or
    ``--noremote`` when empty) and answers nothing. dom0's syslog daemon is not simulated:
    what a client can see is the ``logging`` map it set with ``host.set_logging``."""
    on_host(call, host)
