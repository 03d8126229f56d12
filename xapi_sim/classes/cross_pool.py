"""Cross-pool migration (Storage XenMotion between pools), Dundee semantics (spec §10, §12).

``host.migrate_receive`` on the destination pool returns the ``dest`` map; ``VM.migrate_send``
/ ``VM.assert_can_migrate`` on the *source* pool check, in Dundee's order: the version must not
decrease (``NOT_SUPPORTED_DURING_UPGRADE``), a non-halted copy needs force
(``VM_BAD_POWER_STATE``), the remote host must be enabled (``HOST_DISABLED``), then -- unless
forced or Halted -- the VM against the remote destination *host*'s ``cpu_info`` (never the
destination pool level). On arrival the post-move update (§11) runs against the landing host,
so an old-style or missing featureset is upgraded and extended with that host's words.

The destination may be another pool of the same world or a pool served by another xapi-sim
process. In the second case the source talks to the destination over the wire as XAPI pools
do: XML-RPC with the session from the ``dest`` map to read the destination host, then
``PUT /import_metadata`` to hand over the VM (xapi-sim's JSON stand-in for XAPI's XVA
metadata stream), after which the VM leaves the source pool.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.parse
import xmlrpc.client

from ..datamodel import NULL_REF
from ..errors import Failure, internal
from ..levelling import featureset, policy
from . import common as c

REMOTE_TIMEOUT = 30.0


class _LocalDest:
    """A destination host in this world, read from its pool's database."""

    def __init__(self, call, dest):
        ref = dest.get("host", "")
        h = call.world.hosts.get(ref)
        if h is None or h.pool is None or not h.db.exists("host", ref):
            raise Failure("HANDLE_INVALID", "host", ref)
        if dest.get("session_id", "") not in h.db.tables["session"]:
            raise Failure("SESSION_INVALID", dest.get("session_id", ""))
        self.h, self.ref = h, ref
        row = h.db.get("host", ref)
        self.software_version, self.enabled = row["software_version"], row["enabled"]
        self.cpu_info = row["cpu_info"]
        self.memory_free = h.world.host_free_memory(h)

    def land(self, vm, row, metrics):
        return land(self.h, vm, row, metrics)


class _RemoteDest:
    """A destination host served by another process: XAPI calls with the dest session."""

    def __init__(self, world, dest):
        self.url = dest.get("master", "")
        self.session = dest.get("session_id", "")
        self.ref = dest.get("host", "")
        if not self.url.startswith(("http://", "https://")):
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
        if not _allowed_remote(world, self.url):
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
        try:
            self.proxy = xmlrpc.client.ServerProxy(self.url, allow_none=True)
        except (OSError, ValueError) as e:    # e.g. "http://[::1/": not a usable URL
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED") from e
        row = self._call("host.get_record", self.ref)
        if not isinstance(row, dict) or not all(
                isinstance(row.get(k), t) for k, t in (("software_version", dict),
                                                        ("enabled", bool),
                                                        ("cpu_info", dict))):
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")   # not a XAPI host
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
            # unreachable, a bad port in the URL, not an XML-RPC server
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED") from e
        if not isinstance(res, dict):         # an XML-RPC server, but not a XAPI
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
        if res.get("Status") != "Success" or "Value" not in res:
            desc = res.get("ErrorDescription")
            if not isinstance(desc, list) or not desc:
                desc = ["INTERNAL_ERROR", "remote"]
            raise Failure(*desc)
        return res["Value"]

    def land(self, vm, row, metrics):
        """``PUT /import_metadata`` on the destination master."""
        from ..persist import enc
        u = urllib.parse.urlsplit(self.url)
        q = urllib.parse.urlencode({"session_id": self.session, "host": self.ref})
        body = json.dumps({"VM": enc(dict(row)), "VM_metrics": enc(dict(metrics or {})),
                           "ref": vm}).encode()
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        kw = {}
        if u.scheme == "https":
            import ssl
            kw["context"] = ssl._create_unverified_context()
        try:
            conn = cls(u.hostname, u.port, timeout=REMOTE_TIMEOUT, **kw)
            conn.request("PUT", f"/import_metadata?{q}", body,
                         {"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
        except OSError as e:
            raise Failure("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED") from e
        try:
            answer = json.loads(data)
        except ValueError:
            raise Failure("VM_MIGRATE_FAILED", vm, "", self.ref, data[:200].decode(
                "utf-8", "replace")) from None
        if resp.status != 200:
            raise Failure(*answer.get("error", ["VM_MIGRATE_FAILED", vm, "", self.ref, ""]))
        return answer["vm"]


def _dest(call, dest):
    dest = dest or {}
    if dest.get("host", "") in call.world.hosts:
        return _LocalDest(call, dest)
    return _RemoteDest(call.world, dest)


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


def _checks(call, vm, row, d, options):
    copy = (options or {}).get("copy") == "true"
    force = (options or {}).get("force") == "true"
    src_v = call.db.get("host", row["resident_on"] if row["resident_on"] != NULL_REF
                        else call.pool.master.ref)["software_version"].get("platform_version")
    try:
        cmp = policy.compare_platform_versions(d.software_version.get("platform_version"),
                                               src_v)
    except ValueError as e:
        raise internal(str(e)) from None
    if cmp < 0:
        raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
    if copy and row["power_state"] != "Halted" and not force:
        raise Failure("VM_BAD_POWER_STATE", vm, "halted", row["power_state"].lower())
    if not d.enabled:
        raise Failure("HOST_DISABLED", d.ref)
    if not force and "cpu_info" not in call.db.schema.classes["pool"].fields:
        reason = _v1_check(row, d.cpu_info)
        if reason:
            raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, d.ref, reason)
    elif not force:
        try:
            reason = policy.check_vm_compatible(row["power_state"], row["last_boot_CPU_flags"],
                                                c.is_hvm(row), d.cpu_info)
        except featureset.InvalidFeatureString as e:
            raise internal(f"Cpuid_helpers.InvalidFeatureString(\"{e}\")") from None
        if reason:
            raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, d.ref, reason)
    need = row["memory_static_max"]
    if row["power_state"] in ("Running", "Paused") and need > d.memory_free:
        raise Failure("HOST_NOT_ENOUGH_FREE_MEMORY", need, d.memory_free)


def _v1_check(row, dest_info):
    """A pre-Dundee (6.5 SP1) source runs levelling v1 (§12): the VM's 4-word set must be a
    subset of the destination host's old-style ``features`` (which Dundee hosts publish for
    exactly this), vendors equal; live migrations only."""
    if row["power_state"] not in ("Running", "Paused"):
        return None
    flags = row["last_boot_CPU_flags"]
    if "vendor" in flags and flags["vendor"] != dest_info.get("vendor"):
        return policy.REASON_VENDOR
    try:
        vm_words = featureset.parse_oldstyle(flags.get("features", ""))
        host_words = featureset.parse_oldstyle(dest_info.get("features", ""))
    except featureset.InvalidFeatureString:
        return None
    if any(v & ~h for v, h in zip(vm_words, host_words)):
        return policy.REASON_FEATURES
    return None


def assert_can_migrate_cross_pool(call, vm, row, dest, options):
    _checks(call, vm, row, _dest(call, dest), options)


def migrate_send_cross_pool(call, vm, row, dest, live, options):
    """The caller holds the VM's ``migrate_send`` operation (its checks are done)."""
    d = _dest(call, dest)
    _checks(call, vm, row, d, options)
    src_db, world = call.db, call.world
    metrics = row["metrics"]
    mrow = src_db.get("VM_metrics", metrics) if src_db.exists("VM_metrics", metrics) else None
    new_ref = d.land(vm, row, mrow)
    src_host = row["resident_on"]
    src_db.remove("VM", vm)
    if mrow is not None:
        src_db.remove("VM_metrics", metrics)
    if src_host != NULL_REF and src_db.exists("host", src_host):
        world.update_host_memory(world.host(src_host))
    return new_ref


def land(dest_h, vm, row, metrics):
    """The destination half (``pool_migrate_complete``): create the VM on ``dest_h``, run
    the post-move flag update against it, account its memory. Returns the VM's ref there."""
    from .vm_lifecycle import _next_domid, refresh_allowed
    world, db = dest_h.world, dest_h.db
    with db.lock:
        mref = row.get("metrics", NULL_REF)
        if metrics and mref != NULL_REF and not db.exists("VM_metrics", mref):
            full = db.schema.classes["VM_metrics"].defaults()
            full.update({k: v for k, v in metrics.items() if k in full})
            db.add("VM_metrics", mref, full)
        if db.exists("VM", vm):
            raise Failure("VM_MIGRATE_FAILED", vm, "", dest_h.ref, "VM already exists here")
        running = row["power_state"] in ("Running", "Paused")
        new = db.schema.classes["VM"].defaults()
        new.update({k: v for k, v in row.items() if k in new})
        new.update(resident_on=dest_h.ref if running else NULL_REF, affinity=dest_h.ref,
                   scheduled_to_be_resident_on=NULL_REF, current_operations={},
                   domid=_next_domid(world, dest_h.ref) if running else -1,
                   snapshots=[], children=[], snapshot_of=NULL_REF, parent=NULL_REF,
                   consoles=[], VIFs=[], VBDs=[], crash_dumps=[], VGPUs=[],
                   attached_PCIs=[])
        db.add("VM", vm, new)
        info = db.get("host", dest_h.ref)["cpu_info"]
        if new["power_state"] != "Halted":
            try:
                upd = policy.updated_vm_flags(new["last_boot_CPU_flags"], c.is_hvm(new), info)
            except featureset.InvalidFeatureString:
                upd = None
            if upd is not None:
                db.set("VM", vm, "last_boot_CPU_flags", upd)
        world.update_host_memory(dest_h)
        refresh_allowed(None, vm, world=world, db=db, pool=dest_h.pool)
    return vm


def import_metadata(host, query, body):
    """``PUT /import_metadata?session_id=&host=``: receive a migrating VM (remote source).
    Returns (HTTP status line, content type, body)."""
    from ..persist import dec

    def fail(status, *desc):
        return status, b"application/json", json.dumps({"error": list(desc)}).encode()

    db = host.db
    sess = (query.get("session_id") or [""])[0]
    if sess not in db.tables["session"]:
        return fail(b"403 Forbidden", "SESSION_INVALID", sess)
    if not host.is_master:
        return fail(b"403 Forbidden", "HOST_IS_SLAVE", host.pool.master.address)
    target = (query.get("host") or [""])[0]
    dest_h = host.world.hosts.get(target)
    if dest_h is None or dest_h.pool is not host.pool:
        return fail(b"404 Not Found", "HANDLE_INVALID", "host", target)
    try:
        doc = json.loads(body)
        row, metrics, ref = dec(doc["VM"]), dec(doc.get("VM_metrics") or {}), doc["ref"]
        if not isinstance(row, dict) or not isinstance(ref, str):
            raise ValueError("bad document")
    except (ValueError, KeyError, TypeError) as e:
        return fail(b"400 Bad Request", "INTERNAL_ERROR", f"import_metadata: {e}")
    try:
        vm = land(dest_h, ref, row, metrics)
    except Failure as f:
        return fail(b"409 Conflict", *f.description)
    return b"200 OK", b"application/json", json.dumps({"vm": vm}).encode()
