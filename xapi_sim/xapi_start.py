"""The xapi start routine and host power: boot-time recalculation, shutdown and crash,
forgetting a host, installing another release, memory accounting.

``xapi_start`` mirrors what Dundee's ``xapi.ml`` startup and ``dbsync_slave.ml`` do for
levelling: rewrite ``host.cpu_info`` from the current hardware, recreate ``host_cpu`` rows,
refresh ``software_version``/API version, mark the host live, recompute ``pool.cpu_info``
(every start, on any host) and raise the CPU-feature alerts. Mixed into :class:`world.World`.
"""

from __future__ import annotations

from collections.abc import Callable

from . import allowed, host_guidances, install_certs, install_network, install_storage
from .datamodel import NULL_REF, Schema
from .levelling import cpus, policy
from .levelling import rules as lrules
from .rows import RowBuilders
from .runtime import HOST_OVERHEAD, HostRuntime, PoolRuntime


class XapiLifecycle(RowBuilders):
    """Host lifecycle for :class:`world.World`."""

    building: bool
    _new_pool: Callable[..., PoolRuntime]

    def rolling_upgrade_in_progress(self, pool: PoolRuntime) -> bool:
        return "rolling_upgrade_in_progress" in pool.db.get("pool", pool.ref)["other_config"]

    def xapi_start(self, h: HostRuntime, system_boot: bool = True):
        """One xapi start of ``h``: the Dundee startup sequence for levelling (spec §3, §4)."""
        db = h.db
        with db.lock:
            if h.next_hw is not None:
                h.hw, h.next_hw = h.next_hw, None
            release = h.product.release
            info = cpus.host_cpu_info(
                h.hw.cpu,
                h.hw.hidden_features,
                sockets=h.hw.sockets,
                cpus_per_socket=h.hw.cpus_per_socket,
                release=h.product.levelling,
                **({"mask": h.hw.mask} if release == "cream" else {}),
            )
            if h.hw.overrides:
                # verbatim values (test hooks; playback's recorded cpu_info) for the keys
                # this release reports: a host upgraded from 6.5 loses its v1-only keys
                info.update({k: v for k, v in h.hw.overrides.items() if k in info})
            row = db.get("host", h.ref)
            old = row["cpu_info"]
            enable = not h.disabled_until_reboot or system_boot
            if system_boot:
                h.disabled_until_reboot = False
            changes = dict(
                cpu_info=info,
                software_version=h.product.software_version_map(h.name_label),
                API_version_major=h.product.api_major,
                API_version_minor=h.product.api_minor,
                address=install_network.current_address(db, h),
            )
            if enable:
                changes["enabled"] = True
                h.user_disabled = False
            db.update("host", h.ref, **changes)
            pool = h.pool
            assert pool is not None
            rpu = self.rolling_upgrade_in_progress(pool)
            if release != "cream" and not rpu and not self.building:
                alert = policy.host_alert(old, info, rules=lrules.rules(h.product.levelling))
                if alert:
                    self.add_message(db, *alert, "Host", h.uuid)
            for r in list(db.get("host", h.ref)["host_CPUs"]):
                db.remove("host_cpu", r)
            for cpu_row in cpus.host_cpu_rows(info):
                self.new_row(db, "host_cpu", host=h.ref, **cpu_row)
            db.update("host_metrics", row["metrics"], live=True, last_updated=self.clock.now_ts())
            install_network.start_of_day(self, db, h, system_boot)
            install_certs.sync_at_start(self, db, h)  # Certificates_sync.update
            host_guidances.at_start(db, h, enable, system_boot)
            h.state = "up"
            h.started_once = True
            h.xapi_epoch += 1
            self.update_host_memory(h)
            self.recompute_pool_cpu_info(pool, h.product.levelling)
            self.update_host_allowed_operations(h)
            # the master's periodic DB GC pass; run at every start so the flag follows at once
            self.detect_rolling_upgrade(pool)
            if h.is_master:
                # xapi's start on the master (Cancel_tasks): stale operations go, and every
                # allowed_operations is recomputed by the checks
                allowed.refresh_all_allowed(self, db)

    def recompute_pool_cpu_info(self, pool: PoolRuntime, levelling: str | None = None):
        """``create_pool_cpuinfo`` (Dundee §4): intersection over every host record, alert.
        ``levelling``: the rules of the xapi that runs it (the starting host's; by default
        the master's) -- levelling/rules.py."""
        db = pool.db
        if "cpu_info" not in db.schema.classes["pool"].fields:
            return  # pre-Dundee pools have no pool.cpu_info
        with db.lock:
            r = lrules.rules(levelling or pool.master.product.levelling)
            rows = [row for _, row in db.rows("host")]
            infos = [row["cpu_info"] for row in rows]
            hvm = [any("hvm" in c for c in row["capabilities"]) for row in rows]
            new = policy.pool_cpu_info(infos, r, hvm)
            prow = db.get("pool", pool.ref)
            old = prow["cpu_info"]
            db.update("pool", pool.ref, cpu_info=new)
            alert = policy.pool_alert(
                old,
                new,
                n_hosts=len(infos),
                rpu_in_progress=self.rolling_upgrade_in_progress(pool),
                rules=r,
            )
            if alert and not self.building:
                self.add_message(db, *alert, "Pool", prow["uuid"])

    def detect_rolling_upgrade(self, pool: PoolRuntime):
        """``Db_gc.detect_rolling_upgrade``: flag the pool while platform versions differ."""
        db = pool.db
        with db.lock:
            master_v = pool.master.product.platform_version
            differ = any(
                row["software_version"].get("platform_version", "0.0.0") != master_v
                for _, row in db.rows("host")
            )
            oc = db.get("pool", pool.ref)["other_config"]
            if differ == ("rolling_upgrade_in_progress" in oc):
                return
            if differ:
                db.set(
                    "pool", pool.ref, "other_config", {**oc, "rolling_upgrade_in_progress": "true"}
                )
            else:
                oc = dict(oc)
                del oc["rolling_upgrade_in_progress"]
                db.set("pool", pool.ref, "other_config", oc)
            # VM allowed_operations follow the RPU "Miami" list while the flag is set
            for vm in db.refs("VM"):
                allowed.refresh_vm_allowed(self, db, vm)

    def host_down(self, h: HostRuntime, state="down"):
        """The host stops (shutdown, or a crash): not live, its endpoint stops answering.
        The pool level is *not* recomputed (§4: an offline host keeps holding it down)."""
        db = h.db
        with db.lock:
            row = db.get("host", h.ref)
            db.update("host_metrics", row["metrics"], live=False, last_updated=self.clock.now_ts())
            if state == "down":
                # a clean shutdown disables the host; a crash only stops it being live
                # (Dundee's check_host_liveness)
                db.set("host", h.ref, "enabled", False)
            h.state = state
            sim = getattr(self, "simulator", None)
            if sim is not None:  # socket work waits for the commit: no I/O under a pool lock
                db.txm.on_commit(lambda: sim.sync_listener(h))

    def host_boot(self, h: HostRuntime):
        """Power on: the endpoint answers again and a full xapi start runs (system boot).
        VMs the database still shows resident (the host died under them) are resynced as
        xenopsd no longer knows them: Halted, not resident (xapi_xenops.ml
        ``xapi_vms_not_in_xenopsd``). The endpoint answers again once the boot has
        committed, at its old address (no I/O under a pool lock); a host that never
        listened binds first, outside the locks, because its start records the address."""
        sim = getattr(self, "simulator", None)
        if sim is not None and not (h.port and h.address):
            h.db.txm.checkpoint()
            sim.listen(h)
        db = h.db
        with db.lock:
            h.state = "up"
            if sim is not None:
                db.txm.on_commit(lambda: sim.sync_listener(h))
            h.disabled_until_reboot = False
            for vm, row in self.resident_vms(h):
                db.update(
                    "VM",
                    vm,
                    power_state="Halted",
                    resident_on=NULL_REF,
                    scheduled_to_be_resident_on=NULL_REF,
                    domid=-1,
                )
                if db.exists("VM_metrics", row["metrics"]):
                    db.update("VM_metrics", row["metrics"], memory_actual=0, VCPUs_number=0)
                allowed.refresh_vm_allowed(self, db, vm)
                install_network.vifs_follow_power(self, db, vm)
            h.domid_seq = 0
        self.xapi_start(h, system_boot=True)

    def forget_host(self, h: HostRuntime):
        """Delete a host's records from its pool (Host.destroy / eject) and recompute the
        pool level, as Dundee's ``create_pool_cpuinfo`` call sites do (§4, §5.3)."""
        pool, db = h.pool, h.db
        assert pool is not None
        with db.lock:
            row = db.get("host", h.ref)
            for r in list(row["host_CPUs"]):
                db.remove("host_cpu", r)
            install_network.forget_host_network(db, h.ref)
            for vm, vrow in self.resident_vms(h, include_dom0=True):
                if vrow["is_control_domain"]:
                    if db.exists("VM_metrics", vrow["metrics"]):
                        db.remove("VM_metrics", vrow["metrics"])
                    db.remove("VM", vm)
            for vm, vrow in db.rows("VM"):
                if vrow["affinity"] == h.ref:
                    db.set("VM", vm, "affinity", NULL_REF)
            if db.exists("host_metrics", row["metrics"]):
                db.remove("host_metrics", row["metrics"])
            db.remove("host", h.ref)
            install_storage.collect_garbage(db)  # db_gc.ml: the host's PBDs go
            h.pool = None
            self.recompute_pool_cpu_info(pool)
        return row

    def install(self, h: HostRuntime, product):
        """Install another release on ``h`` and boot it (sim.host_install, the upgrade ISO).
        When the master moves to a newer release its database takes the new schema."""
        with h.db.lock:
            self.host_down(h)
            h.product = product
            if h.is_master and product.release != h.db.schema.release:
                h.db.upgrade_schema(Schema.for_release(product.release))
            self.host_boot(h)

    def rejoin_as_standalone(self, h: HostRuntime, password=None):
        """After eject: the host reboots as the master of a new pool of its own (review §11),
        keeping root's ``password`` (eject leaves dom0's /etc/passwd alone)."""
        pool = self._new_pool(h, password=password)
        with pool.db.lock:
            self._create_host_rows(pool, h)
            h.domid_seq = 0
            self.xapi_start(h, system_boot=True)

    def resident_vms(self, h: HostRuntime, include_dom0=False):
        db = h.db
        out = []
        for r in db.get("host", h.ref)["resident_VMs"]:
            row = db.tables["VM"].get(r)
            if row is not None and (include_dom0 or not row["is_control_domain"]):
                out.append((r, row))
        return out

    def update_host_memory(self, h: HostRuntime):
        db = h.db
        with db.lock:
            # resident VMs come from the host's resident_VMs relation: no table scan
            used = sum(row["memory_static_max"] for _, row in self.resident_vms(h, True))
            hrow = db.get("host", h.ref)
            free = max(0, h.hw.memory - HOST_OVERHEAD - used)
            h.memory_free = free
            # host_metrics.memory_free was removed from the API in tampa (6.1): the field
            # is written only where the pool's release still has it
            changes = {"memory_total": h.hw.memory}
            if "memory_free" in db.schema.classes["host_metrics"].fields:
                changes["memory_free"] = free
            m = db.get("host_metrics", hrow["metrics"])
            if any(m.get(k) != v for k, v in changes.items()):
                db.update("host_metrics", hrow["metrics"], **changes)

    def host_free_memory(self, h: HostRuntime) -> int:
        """What ``host.compute_free_memory`` answers: memory not used by resident domains."""
        free = getattr(h, "memory_free", None)
        if free is None:
            self.update_host_memory(h)
            free = h.memory_free
        return free

    def is_live(self, h: HostRuntime) -> bool:
        db = h.db
        return db.get("host_metrics", db.get("host", h.ref)["metrics"])["live"]

    def update_host_allowed_operations(self, h: HostRuntime):
        """``Xapi_host_helpers.update_allowed_operations`` (rules in ``checks/host.py``)."""
        allowed.refresh_host_allowed(self, h)


def boot_flags(world, host, is_hvm) -> dict:
    """The flags VM.start gives in ``host``'s pool: Dundee takes the pool level (§6);
    before Dundee the message forwarder recorded the host's own ``{vendor, features}``."""
    db = host.db
    if "cpu_info" in db.schema.classes["pool"].fields:
        r = lrules.rules(host.pool.master.product.levelling)
        return policy.vm_boot_flags(db.get("pool", host.pool.ref)["cpu_info"], is_hvm, r)
    info = db.get("host", host.ref)["cpu_info"]
    return {"vendor": info["vendor"], "features": info["features"]}


def next_domid(world, host_ref) -> int:
    """The next domid on a host (domids count up from 1 per host until it reboots)."""
    h = world.host(host_ref)
    n = getattr(h, "domid_seq", None)
    if n is None:
        n = max([r["domid"] for _, r in world.resident_vms(h)] + [0])
    n += 1
    h.domid_seq = n
    return n
