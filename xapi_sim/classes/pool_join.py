"""pool.join / pool.join_force / pool.eject (spec §5, review §2 and §11); the pre-join
checks follow the joining host's release (xen-api ``Xapi_pool.pre_join_checks`` at each
profile's revision, docs/releases.md).

``join`` runs on the joining host and is given the master's address. It logs in to that
address (``HOST_IS_SLAVE`` from a member propagates; nothing listening there is
``JOINING_HOST_CONNECTION_FAILED``), then runs the pre-join checks in XAPI's order, then
merges the joiner's objects into the pool database. The new host record has
``cpu_info = {}`` until the joiner's first xapi start as a member, which writes it and
recomputes the pool level -- the join itself recomputes nothing. Only the CPU *vendor* is
compared with ``pool.cpu_info`` (``HOSTS_NOT_HOMOGENEOUS ["CPUs differ"]``); ``join_force``
skips that and the software check. A pre-Dundee (6.5 SP1) master applies the levelling-v1
rule instead: vendor and ``features`` must equal the master host's.

``eject`` (on the master, naming a member) deletes the member's record, recomputes the pool
level, and the host restarts as the master of a new pool of its own.
"""

from __future__ import annotations

import threading

from .. import install_network, install_storage
from ..dispatch import api
from ..errors import Failure
from ..sessions import authenticate, destroy_session
from . import common as c

# -- the pre-join checks of each release (xen-api ``Xapi_pool.pre_join_checks``) ------------
#
# Dundee (review §2) and cream run checks 4-9 and 11 below. From 7.1 (branch 1.14-lcm) the
# API version and then the database schema must match the master's (CA-247399); 7.1 compares
# the build number in the software check, 8.2 CU1 (1.249-lcm) no longer does (CA-249786);
# XenServer 8 (v23.30.0) and XCP-ng 8.3 (v24.19.2) compare the ``xapi`` version instead of
# the platform version and add, last: TLS verification, CA certificate names, updates in
# progress here and in the pool. Every release ends its Dundee-era checks with the
# management interfaces' primary address type. Checks on objects the simulator does not
# model (HA, clustering, shared SRs, external auth, licences, vswitch, updates, network
# purpose) always pass.

_SOFTWARE_KEYS = {
    "dundee": ("platform_version", "name", "build_number", "git_id", "linux"),
    "ely": ("platform_version", "name", "build_number", "git_id", "linux"),
    "stockholm": ("platform_version", "name", "git_id", "linux"),
    "nile": ("xapi", "name", "git_id", "linux"),
}
_SOFTWARE_DIFFERS = {"dundee": "software version differs"}  # later: "Software version differs"
_LATER_CHECKS = {
    "dundee": ("address_type",),
    "ely": ("api_version", "db_schema", "address_type"),
    "stockholm": ("api_version", "db_schema", "address_type"),
    "nile": (
        "api_version",
        "db_schema",
        "address_type",
        "tls_verification",
        "ca_certificates",
        "not_updating_on_me",
        "no_hosts_updating",
    ),
}
# profile -> the code line whose checks it runs
_LINE = {
    "cream": "dundee",
    "dundee": "dundee",
    "ely": "ely",
    "stockholm": "stockholm",
    "nile": "nile",
    "xcp-ng-8.3": "nile",
}


def _software_tuple(sv: dict, line: str):
    def value(key):
        if key == "name":
            return sv.get("product_brand") or sv.get("platform_name")
        if key == "linux":
            return "installed" if "xs:linux" in sv else "not present"
        return sv.get(key, "")

    return tuple(value(k) for k in _SOFTWARE_KEYS[line])


def _later_check(name, jdb, mdb, jrow, mrow, joiner, master):
    jsv, msv = jrow["software_version"], mrow["software_version"]
    if name == "api_version":
        mine = f"{jrow['API_version_major']}.{jrow['API_version_minor']}"
        theirs = f"{mrow['API_version_major']}.{mrow['API_version_minor']}"
        if mine != theirs:
            raise Failure("POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION", mine, theirs)
    elif name == "db_schema":
        mine, theirs = jsv.get("db_schema", ""), msv.get("db_schema", "")
        if not mine or not theirs or mine != theirs:
            raise Failure("POOL_JOINING_HOST_MUST_HAVE_SAME_DB_SCHEMA", mine, theirs)
    elif name == "address_type":
        # assert_homogeneous_primary_address_type: the management PIFs' address types
        def address_type(db, h):
            pif = install_network.management_pif(db, h.ref)
            return None if pif is None else db.get("PIF", pif).get("primary_address_type")

        if address_type(jdb, joiner) != address_type(mdb, master):
            raise Failure("OPERATION_NOT_ALLOWED", "Primary address type differs")
    elif name == "tls_verification":
        mine = jdb.get("pool", joiner.pool.ref).get("tls_verification_enabled", False)
        theirs = mdb.get("pool", master.pool.ref).get("tls_verification_enabled", False)
        if mine != theirs:
            raise Failure("POOL_JOINING_HOST_TLS_VERIFICATION_MISMATCH")
    elif name == "ca_certificates":
        # same name, different fingerprint; neither side has CA certificates in the simulator
        def cas(db):
            if "Certificate" not in db.schema.classes:
                return {}
            return {
                r.get("name", ""): r["fingerprint"]
                for _, r in db.rows("Certificate")
                if r.get("type") == "ca"
            }

        mine_c, theirs_c = cas(jdb), cas(mdb)
        if any(theirs_c.get(n, fp) != fp for n, fp in mine_c.items()):
            raise Failure("POOL_JOINING_HOST_CA_CERTIFICATES_CONFLICT")
    elif name in ("not_updating_on_me", "no_hosts_updating"):
        db, pool = (jdb, joiner.pool) if name == "not_updating_on_me" else (mdb, master.pool)
        ops = db.get("pool", pool.ref)["current_operations"].values()
        if "apply_updates" in ops:
            raise Failure("NOT_SUPPORTED_DURING_UPGRADE")


def _pre_join_checks(call, master, force):
    """``Xapi_pool.pre_join_checks`` in the joining host's release's order (review §2)."""
    joiner = call.host
    line = _LINE.get(joiner.product.profile, "dundee")
    jdb, mdb = joiner.db, master.db
    # 4. not joining itself
    if master.pool is joiner.pool:
        if len(jdb.refs("host")) > 1:
            raise Failure("OPERATION_NOT_ALLOWED", "Host is already part of a pool")
        raise Failure("OPERATION_NOT_ALLOWED", "Host cannot become slave of itself")
    # 5. the joiner knows only itself
    if len(jdb.refs("host")) > 1:
        raise Failure("JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS")
    # 6. no Running non-control VM (Paused and Suspended are not counted)
    for _vm, row in jdb.rows("VM"):
        if not row["is_control_domain"] and row["power_state"] == "Running":
            raise Failure("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS")
    # 7. no VM with current operations
    for _vm, row in jdb.rows("VM"):
        if row["current_operations"]:
            raise Failure("JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS")
    jrow = jdb.get("host", joiner.ref)
    mrow = mdb.get("host", master.ref)
    jsv, msv = jrow["software_version"], mrow["software_version"]
    # 8. assert_hosts_compatible: platform version and product brand (or platform name)
    if (jsv.get("platform_version"), jsv.get("product_brand") or jsv.get("platform_name")) != (
        msv.get("platform_version"),
        msv.get("product_brand") or msv.get("platform_name"),
    ):
        raise Failure("HOSTS_NOT_COMPATIBLE")
    # 9. assert_hosts_homogeneous, only when not forced
    if not force:
        if _software_tuple(jsv, line) != _software_tuple(msv, line):
            raise Failure(
                "HOSTS_NOT_HOMOGENEOUS", _SOFTWARE_DIFFERS.get(line, "Software version differs")
            )
        prow = mdb.get("pool", master.pool.ref)
        if "cpu_info" in prow:
            if jrow["cpu_info"].get("vendor") != prow["cpu_info"].get("vendor"):
                raise Failure("HOSTS_NOT_HOMOGENEOUS", "CPUs differ")
        else:  # levelling v1: vendor and features equal to the master host's (§5.2)
            ji, mi = jrow["cpu_info"], mrow["cpu_info"]
            if (ji.get("vendor"), ji.get("features")) != (mi.get("vendor"), mi.get("features")):
                raise Failure("HOSTS_NOT_HOMOGENEOUS", "CPUs differ")
    # 11. only physical PIFs (no bonds, VLANs or tunnels)
    install_network.assert_only_physical_pifs(jdb)
    # 12-15 pass; 16 (the address type) and the checks later releases added, in order
    for name in _LATER_CHECKS[line]:
        _later_check(name, jdb, mdb, jrow, mrow, joiner, master)


def _find_master(call, address):
    master = call.world.host_by_address(address)
    if master is None or master.state != "up" or master.pool is None:
        raise Failure("JOINING_HOST_CONNECTION_FAILED")
    if not master.is_master:
        raise Failure("HOST_IS_SLAVE", master.pool.master.address)
    return master


def _merge(world, joiner, pool):
    """Import the joiner's host, metrics, dom0 and VMs into the pool database."""
    jdb, mdb = joiner.db, pool.db
    old_pool = joiner.pool
    with jdb.lock, mdb.lock:
        hrow = dict(jdb.get("host", joiner.ref))
        moved_vms = []
        for vm, row in jdb.rows("VM"):
            if row["is_a_template"] and not row["is_control_domain"]:
                continue
            moved_vms.append((vm, row))
        metrics = hrow["metrics"]
        mdb.carry("host_metrics", metrics, jdb.get("host_metrics", metrics))
        # Xapi_host.create on the master: a fresh record, cpu_info = {} until first start
        mdb.carry("host", joiner.ref, hrow, cpu_info={}, enabled=False)
        netmap = install_network.merge_networks(world, jdb, mdb)
        for vm, row in moved_vms:
            if jdb.exists("VM_metrics", row["metrics"]):
                mdb.carry("VM_metrics", row["metrics"], jdb.get("VM_metrics", row["metrics"]))
            mdb.carry("VM", vm, row)
        install_storage.on_join(world, jdb, mdb, joiner)
        install_network.merge_vifs(jdb, mdb, netmap, [vm for vm, _ in moved_vms])
        joiner.pool = pool
        world.drop_pool(old_pool)
    with jdb.cond:
        # the joiner's xapi restarts as a member: its own sessions are gone (sessions are
        # not persisted), so calls and event waits on them end with SESSION_INVALID
        for ref in list(jdb.tables["session"]):
            destroy_session(world, jdb, ref)


def _join(call, master_address, master_username, master_password, force):
    world, joiner = call.world, call.host
    # Client.Session.login_with_password to the master: its pool's password, and its
    # failed-login delay, waited before any lock is taken
    authenticate(world, _find_master(call, master_address), master_username, master_password)
    master = _find_master(call, master_address)
    # both pools' locks, taken in the store's order (store.py lock discipline)
    world.txm.current().lock(master.db, joiner.db)
    master = _find_master(call, master_address)  # re-checked under the locks
    _pre_join_checks(call, master, force)
    _merge(world, joiner, master.pool)
    _restart_as_member(world, joiner)


def _restart_as_member(world, h):
    """The joiner's xapi restarts as a member; its first start writes cpu_info and recomputes
    the pool level. ``World.join_restart_delay`` seconds later (0: before join returns)."""
    delay = getattr(world, "join_restart_delay", 0.0)
    if not delay:
        world.xapi_start(h, system_boot=False)
        return
    t = threading.Timer(delay, world.xapi_start, args=(h,), kwargs={"system_boot": False})
    t.daemon = True
    t.start()


@api("pool.join")
def join(call, master_address, master_username, master_password):
    _join(call, master_address, master_username, master_password, force=False)


@api("pool.join_force")
def join_force(call, master_address, master_username, master_password):
    _join(call, master_address, master_username, master_password, force=True)


@api("pool.eject")
def eject(call, host):
    world = call.world
    with call.db.lock:
        h = c.runtime_host(call, host)
        if h.state != "up" or not world.is_live(h):
            raise Failure("HOST_OFFLINE", host)
        if call.db.get("pool", call.pool.ref)["ha_enabled"]:
            raise Failure("HA_IS_ENABLED")
        if h.is_master:
            raise Failure("INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master")
        for _vm, row in world.resident_vms(h):
            if row["power_state"] != "Halted":
                raise Failure("OPERATION_NOT_ALLOWED", "VM resident on host")
        password = call.pool.password
        world.forget_host(h)
        # reset-and-reboot: master of a new pool with a fresh database, same uuid; root's
        # password is the one it had (eject does not touch dom0's /etc/passwd)
        world.rejoin_as_standalone(h, password)
        # its xapi start refreshes every allowed_operations (Cancel_tasks)
        c.refresh_all_allowed(world, h.db)
