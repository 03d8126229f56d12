"""The client side of a cross-pool migration to a pool served by another process.

What the source pool sends over the wire (:mod:`cross_pool` has the protocol): XML-RPC with
the ``dest`` map's session to read the destination host, ``PUT /import_metadata`` to land
the VM and, on an unknown outcome, to abort it. Every call has a bounded client timeout
(``world.migration_timeout`` if set, else ``REMOTE_TIMEOUT``); only loopback destinations
are contacted unless the world allows any address. Outcomes are sorted as
``migrate_send'`` needs them (xen-api ``ocaml/xapi/xapi_vm_migrate.ml``): a :class:`Failure`
is a refusal (nothing happened there), :class:`_Unknown` may or may not have happened,
:class:`_NotSent` certainly did not.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl
import urllib.parse
import xmlrpc.client

from ..errors import Failure
from ..rowcodec import enc

REMOTE_TIMEOUT = 30.0  # seconds: each call to a remote destination (client side)


class _Unknown(Exception):
    """The destination may or may not have done what it was asked (a timeout, a reset after
    the request was sent, an answer that is not one)."""


class _NotSent(_Unknown):
    """The request never reached the destination (no connection)."""


def remote_timeout(world) -> float:
    return float(getattr(world, "migration_timeout", REMOTE_TIMEOUT))


class _TimeoutTransport(xmlrpc.client.Transport):
    """XML-RPC over HTTP with a bounded timeout on every socket operation."""

    def __init__(self, timeout):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class _SafeTimeoutTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout):
        super().__init__(context=ssl._create_unverified_context())
        self.timeout = timeout

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class _RemoteDest:
    """A destination host served by another process: XAPI calls with the dest session.
    Constructing it only validates the ``dest`` map; :meth:`connect` reads the host."""

    def __init__(self, world, dest):
        self.url = dest.get("master", "")
        self.session = dest.get("session_id", "")
        self.ref = dest.get("host", "")
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
        if not _allowed_remote(world, self.url):
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
        self.timeout = remote_timeout(world)
        try:
            u = urllib.parse.urlsplit(self.url)
            self.hostname, self.port, self.https = u.hostname, u.port, u.scheme == "https"
            transport = (_SafeTimeoutTransport if self.https else _TimeoutTransport)(self.timeout)
            self.proxy = xmlrpc.client.ServerProxy(self.url, allow_none=True, transport=transport)
        except (OSError, ValueError) as e:  # e.g. "http://[::1/": not a usable URL
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED") from e

    def connect(self):
        """Read the destination host (no lock may be held: this is network I/O)."""
        row = self._call("host.get_record", self.ref)
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), t)
            for k, t in (("software_version", dict), ("enabled", bool), ("cpu_info", dict))
        ):
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")  # not a XAPI host
        self.software_version, self.enabled = row["software_version"], row["enabled"]
        self.cpu_info = row["cpu_info"]
        try:
            self.memory_free = int(self._call("host.compute_free_memory", self.ref))
        except (TypeError, ValueError):
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED") from None

    def _call(self, method, *args):
        try:
            fn = self.proxy
            for part in method.split("."):
                fn = getattr(fn, part)
            res = fn(self.session, *args)
        except (OSError, ValueError, http.client.HTTPException, xmlrpc.client.Error) as e:
            # unreachable, a timeout, a bad port in the URL, not an XML-RPC server
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED") from e
        if not isinstance(res, dict):  # an XML-RPC server, but not a XAPI
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
        if res.get("Status") != "Success" or "Value" not in res:
            desc = res.get("ErrorDescription")
            if not isinstance(desc, list) or not desc:
                desc = ["INTERNAL_ERROR", "remote"]
            raise Failure(*[str(x) for x in desc])
        return res["Value"]

    def _put(self, params, body):
        """``PUT /import_metadata`` on the destination master: (HTTP status, JSON object).
        Raises :class:`_NotSent` if no connection was made, :class:`_Unknown` if the
        request may have been acted upon without a usable answer."""
        q = urllib.parse.urlencode({"session_id": self.session, "host": self.ref, **params})
        assert self.hostname is not None
        try:
            conn: http.client.HTTPConnection
            if self.https:
                conn = http.client.HTTPSConnection(
                    self.hostname,
                    self.port,
                    timeout=self.timeout,
                    context=ssl._create_unverified_context(),
                )
            else:
                conn = http.client.HTTPConnection(self.hostname, self.port, timeout=self.timeout)
            conn.connect()
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise _NotSent(f"{type(e).__name__}: {e}") from e
        try:
            conn.request("PUT", f"/import_metadata?{q}", body, {"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise _Unknown(f"{type(e).__name__}: {e}") from e
        finally:
            conn.close()
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or resp.status >= 500:
            raise _Unknown(f"HTTP {resp.status}: {data[:200]!r}")
        return resp.status, answer

    def land(self, vm, row, metrics, migration, guest_metrics=None):
        """Phase 2: the destination imports the VM. Returns its ref there; a
        :class:`Failure` is a refusal (nothing imported), :class:`_Unknown` an unknown
        outcome."""
        body = json.dumps(
            {
                "VM": enc(dict(row)),
                "VM_metrics": enc(dict(metrics or {})),
                "VM_guest_metrics": enc(dict(guest_metrics or {})),
                "ref": vm,
            }
        ).encode()
        try:
            status, answer = self._put({"migration": migration}, body)
        except _NotSent as e:
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED") from e
        if status == 200:
            if isinstance(answer.get("vm"), str):
                return answer["vm"]
            raise _Unknown(f"no VM in the answer {answer!r:.200}")
        err = answer.get("error")
        if not isinstance(err, list) or not err or not all(isinstance(x, str) for x in err):
            err = ["VM_MIGRATE_FAILED", vm, "", self.ref, f"HTTP {status}"]
        raise Failure(*err)

    def abort(self, migration) -> bool:
        """Make sure the destination keeps no copy from ``migration`` and never lands one.
        Returns whether it had one (now destroyed); :class:`_Unknown` if not confirmed."""
        status, answer = self._put({"migration": migration, "abort": "true"}, b"")
        if status == 200 and answer.get("aborted") is True:
            return bool(answer.get("destroyed"))
        raise _Unknown(f"abort answered HTTP {status}: {answer!r:.200}")


def _allowed_remote(world, url) -> bool:
    """Remote destinations are other xapi-sim processes on this machine (loopback) unless
    the world allows any address (``xapi-sim serve --allow-remote-migration``): a ``dest``
    map is client input, and the server must not be steered to arbitrary hosts."""
    if getattr(world, "allow_remote_migration", False):
        return True
    try:
        host = urllib.parse.urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
