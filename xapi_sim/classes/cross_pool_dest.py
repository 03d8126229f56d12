"""The destination half of a cross-pool migration (``pool_migrate_complete`` and the
``PUT /import_metadata`` end of the wire protocol; see ``cross_pool.py``): land a VM on a
host, remember which migration IDs landed or were aborted, so a repeated import answers the
same ref and a late import after an abort is refused."""

from __future__ import annotations

import collections
import json
import logging
import threading

from ..datamodel import NULL_REF
from ..errors import Failure
from ..levelling import featureset, policy
from ..rowcodec import dec
from ..xapi_start import next_domid
from . import common as c
from . import guest_agent

log = logging.getLogger(__name__)
IMPORTS_KEEP = 10_000  # migration IDs a destination remembers (landed, aborted)


def _pool_of(world, db):
    for p in world.pools:
        if p.db is db:
            return p
    return None


def _update_memory(world, db, host_ref):
    h = world.hosts.get(host_ref)
    if h is not None and h.pool is not None and h.db is db and db.exists("host", host_ref):
        world.update_host_memory(h)


def _refresh(world, db, vm):
    pool = _pool_of(world, db)
    if pool is not None:
        c.refresh_vm_allowed(world, db, vm)


def land(dest_h, vm, row, metrics, guest_metrics=None):
    """The destination half (``pool_migrate_complete``): create the VM on ``dest_h``, run
    the post-move flag update against it, account its memory. Returns the VM's ref there.
    A VM whose ref or uuid the destination already has is refused."""
    world, db = dest_h.world, dest_h.db
    with db.lock:
        if db.exists("VM", vm) or row.get("uuid") in db.uuids["VM"]:
            raise Failure("VM_MIGRATE_FAILED", vm, "", dest_h.ref, "VM already exists here")
        mref = row.get("metrics", NULL_REF)
        if metrics and mref != NULL_REF and not db.exists("VM_metrics", mref):
            db.carry("VM_metrics", mref, metrics)
        gref = row.get("guest_metrics", NULL_REF)
        agent = False
        if guest_metrics and gref != NULL_REF and not db.exists("VM_guest_metrics", gref):
            db.carry("VM_guest_metrics", gref, guest_metrics)  # import.ml: they travel too
        elif not db.exists("VM_guest_metrics", gref):
            gref = NULL_REF
            # the guest's agent reports to its new host (xapi_guest_agent.ml makes a fresh
            # row for a VM whose guest_metrics names none); a guest never seen with drivers
            # (no guest metrics at the source) has none to report
            agent = row.get("guest_metrics", NULL_REF) != NULL_REF
        running = row["power_state"] in ("Running", "Paused")
        db.carry(
            "VM",
            vm,
            row,
            resident_on=dest_h.ref if running else NULL_REF,
            affinity=dest_h.ref,
            scheduled_to_be_resident_on=NULL_REF,
            current_operations={},
            domid=next_domid(world, dest_h.ref) if running else -1,
            snapshot_of=NULL_REF,
            parent=NULL_REF,
            attached_PCIs=[],
            guest_metrics=gref,
        )
        new = db.get("VM", vm)
        if gref == NULL_REF and agent and new["power_state"] == "Running":
            guest_agent.report(world, db, vm)
        info = db.get("host", dest_h.ref)["cpu_info"]
        if new["power_state"] != "Halted":
            try:
                upd = policy.updated_vm_flags(new["last_boot_CPU_flags"], c.is_hvm(new), info)
            except featureset.InvalidFeatureString:
                upd = None
            if upd is not None:
                db.set("VM", vm, "last_boot_CPU_flags", upd)
        world.update_host_memory(dest_h)
        c.refresh_vm_allowed(world, db, vm)
    return vm


# -- the destination side of the wire protocol ------------------------------------------------


class Imports:
    """The destination's memory of migrations (a world service): the VM each migration ID
    landed, and the IDs its source aborted. Decisions about one ID are made under
    ``lock`` (a leaf lock, taken under a database lock, never the other way)."""

    def __init__(self, world):
        self.lock = threading.Lock()
        self.landed: collections.OrderedDict = collections.OrderedDict()  # id -> (db, ref)
        self.aborted: collections.OrderedDict = collections.OrderedDict()  # id -> None

    @classmethod
    def of(cls, world) -> Imports:
        return world.service(cls)

    @staticmethod
    def _keep(d):
        while len(d) > IMPORTS_KEEP:
            d.popitem(last=False)


def _import(dest_h, vm, row, metrics, migration, guest_metrics=None):
    """Land ``vm`` for ``migration`` in one transaction of the destination pool."""
    world, db = dest_h.world, dest_h.db
    imports = Imports.of(world)
    with db.lock as txn:
        if migration:
            with imports.lock:
                prior = imports.landed.get(migration)
            if prior is not None and prior[0] is db and db.exists("VM", prior[1]):
                return prior[1]  # the same request again: answered, not repeated
        ref = land(dest_h, vm, row, metrics, guest_metrics)
        if migration:
            with imports.lock:
                if migration in imports.aborted:  # the source gave up on it: roll back
                    raise Failure(
                        "VM_MIGRATE_FAILED",
                        vm,
                        "",
                        dest_h.ref,
                        "the migration was aborted by its source",
                    )
                imports.landed[migration] = (db, ref)
                imports._keep(imports.landed)

            def forget():
                with imports.lock:
                    if imports.landed.get(migration) == (db, ref):
                        del imports.landed[migration]

            txn.on_rollback.append(forget)
    return ref


def _abort_import(world, migration):
    """Mark ``migration`` aborted and destroy what it landed. Returns whether there was a
    copy. Against a concurrent import of the same ID: whichever takes ``Imports.lock``
    first wins -- the import then refuses, or the abort finds (and, once the import's
    transaction has committed, destroys) its VM."""
    imports = Imports.of(world)
    with imports.lock:
        imports.aborted[migration] = None
        imports._keep(imports.aborted)
        prior = imports.landed.pop(migration, None)
    if prior is None:
        return False
    db, ref = prior
    with db.lock:
        row = db.tables["VM"].get(ref)
        if row is None:
            return False
        for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
            if db.exists(cls, row[field]):
                db.remove(cls, row[field])
        db.remove("VM", ref)
        _update_memory(world, db, row["resident_on"])
    log.info("migration %s aborted by its source: destroyed the VM %s it landed", migration, ref)
    return True


def import_metadata(host, query, body):
    """``PUT /import_metadata?session_id=&host=&migration=``: receive a migrating VM from a
    source in another process; with ``&abort=true``, abort that migration (see the module
    docstring). Returns (HTTP status line, content type, body)."""

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
    migration = (query.get("migration") or [""])[0]
    if (query.get("abort") or [""])[0] == "true":
        if not migration:
            return fail(
                b"400 Bad Request", "INTERNAL_ERROR", "import_metadata: abort of no migration"
            )
        destroyed = _abort_import(host.world, migration)
        return (
            b"200 OK",
            b"application/json",
            json.dumps({"aborted": True, "destroyed": destroyed}).encode(),
        )
    try:
        doc = json.loads(body)
        row, metrics, ref = dec(doc["VM"]), dec(doc.get("VM_metrics") or {}), doc["ref"]
        gm = dec(doc.get("VM_guest_metrics") or {})
        if not isinstance(row, dict) or not isinstance(ref, str):
            raise ValueError("bad document")
    except (ValueError, KeyError, TypeError) as e:
        return fail(b"400 Bad Request", "INTERNAL_ERROR", f"import_metadata: {e}")
    try:
        vm = _import(dest_h, ref, row, metrics, migration, gm)
    except Failure as f:
        return fail(b"409 Conflict", *f.description)
    return b"200 OK", b"application/json", json.dumps({"vm": vm}).encode()
