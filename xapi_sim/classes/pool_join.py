"""pool.join / pool.join_force / pool.eject, Dundee semantics (spec §5, review §2 and §11).

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


def _software_tuple(sv: dict):
    return (
        sv.get("platform_version"),
        sv.get("platform_name"),
        sv.get("build_number"),
        sv.get("git_id"),
        "installed" if "xs:linux" in sv else "not present",
    )


def _pre_join_checks(call, master, force):
    """``Xapi_pool.pre_join_checks`` in Dundee's order (review §2)."""
    joiner = call.host
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
    # 8. assert_hosts_compatible
    if (jsv.get("platform_version"), jsv.get("product_brand") or jsv.get("platform_name")) != (
        msv.get("platform_version"),
        msv.get("product_brand") or msv.get("platform_name"),
    ):
        raise Failure("HOSTS_NOT_COMPATIBLE")
    # 9. assert_hosts_homogeneous, only when not forced
    if not force:
        if _software_tuple(jsv) != _software_tuple(msv):
            raise Failure("HOSTS_NOT_HOMOGENEOUS", "software version differs")
        prow = mdb.get("pool", master.pool.ref)
        if "cpu_info" in prow:
            if jrow["cpu_info"].get("vendor") != prow["cpu_info"].get("vendor"):
                raise Failure("HOSTS_NOT_HOMOGENEOUS", "CPUs differ")
        else:  # levelling v1: vendor and features equal to the master host's (§5.2)
            ji, mi = jrow["cpu_info"], mrow["cpu_info"]
            if (ji.get("vendor"), ji.get("features")) != (mi.get("vendor"), mi.get("features")):
                raise Failure("HOSTS_NOT_HOMOGENEOUS", "CPUs differ")
    # 10-16 (shared SRs, PIFs, external auth, licences, network backend, patches, address
    # type) concern objects this simulator does not model: they always pass.
    # 11. only physical PIFs (no bonds, VLANs or tunnels)
    install_network.assert_only_physical_pifs(jdb)


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
