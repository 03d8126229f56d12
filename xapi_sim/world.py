"""A simulated world: pools (one database each), hosts with hardware, and their lifecycles.

"Where" lives here -- which pool database a host belongs to, whether its xapi is up, what
hardware it will report at its next xapi start -- while the API behaviour lives in
``classes/``. Everything that changes rows goes through ``store.Database``.

The xapi start routine (``xapi_start``) mirrors what Dundee's ``xapi.ml`` startup and
``dbsync_slave.ml`` do for levelling: rewrite ``host.cpu_info`` from the current hardware,
recreate ``host_cpu`` rows, refresh ``software_version``/API version, mark the host live,
recompute ``pool.cpu_info`` (every start, on any host) and raise the CPU-feature alerts.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid as uuid_mod

import attrs

from . import datamodel, products
from .clock import Clock
from .datamodel import NULL_REF, Schema
from .errors import Failure
from .ids import Ids
from .levelling import cpus, policy
from .store import Database, Transactions

log = logging.getLogger(__name__)

GiB = 1 << 30
MiB = 1 << 20

DOM0_MEMORY = 752 * MiB
HOST_OVERHEAD = 2 * GiB // 32  # memory_overhead reported by Xen for a host (64 MiB)

# Dundee limits (XenServer 7.0 configuration limits; refused with XAPI's errors).
MAX_VCPUS_PER_VM = 32
MAX_VM_MEMORY = 1536 * GiB
MAX_PCPUS_PER_HOST = 512
MAX_VMS_PER_HOST = 1000


@attrs.define
class Hardware:
    """What a host's firmware and CPU report at xapi start (changed by sim.host_set_hardware)."""

    cpu: str
    hidden_features: tuple = ()
    sockets: int = 1
    cpus_per_socket: int = 8
    memory: int = 64 * GiB
    mask: tuple | None = None   # pre-Dundee set_cpu_features mask (6.5 SP1 pools)
    overrides: dict = attrs.Factory(dict)  # test hook: verbatim vendor/features_pv/features_hvm

    @property
    def cpu_count(self) -> int:
        return self.sockets * self.cpus_per_socket


_MISSING = object()


class HostRuntime:
    """A simulated host: its endpoint, its running product and hardware, and its state.

    Its runtime state is part of the calls' transactions: a change made inside one is
    undone if the transaction rolls back (``__setattr__`` records the old value)."""

    _TRACKED = frozenset({"state", "pool", "product", "hw", "next_hw", "started_once",
                          "disabled_until_reboot", "user_disabled", "address", "port",
                          "memory_free", "domid_seq"})

    def __setattr__(self, name, value):
        if name in HostRuntime._TRACKED:
            world = self.__dict__.get("world")
            txn = world.txm.current() if world is not None else None
            if txn is not None:
                old = self.__dict__.get(name, _MISSING)
                txn.on_rollback.append(lambda: self._restore(name, old))
        object.__setattr__(self, name, value)

    def _restore(self, name, old):
        if old is _MISSING:
            self.__dict__.pop(name, None)
        else:
            object.__setattr__(self, name, old)

    def __init__(self, world, ref, uuid, name_label, product, hardware):
        self.world = world
        self.ref = ref
        self.uuid = uuid
        self.name_label = name_label
        self.product = product
        self.hw = hardware
        self.next_hw: Hardware | None = None
        self.pool: PoolRuntime | None = None
        self.address = ""
        self.port = 0
        self.server = None
        self.state = "up"          # up | down | crashed
        self.started_once = False
        self.disabled_until_reboot = False
        self.user_disabled = False
        self.xapi_epoch = 0        # xapi starts so far: local sessions die with their xapi

    @property
    def url(self) -> str:
        scheme = "https" if self.world.tls else "http"
        return f"{scheme}://{self.address_for_url}:{self.port}/"

    @property
    def address_for_url(self):
        return self.address.rsplit(":", 1)[0] if self.address.count(":") == 1 else self.address

    @property
    def is_master(self) -> bool:
        return self.pool is not None and self.pool.master is self

    @property
    def db(self) -> Database:
        return self.pool.db

    def __repr__(self):
        return f"<host {self.name_label} {self.address}>"


class PoolRuntime:
    def __init__(self, db: Database, ref: str, master: HostRuntime, password=None):
        self.db = db
        self.ref = ref
        self.master = master
        # root's password on every host of the pool (dom0 /etc/passwd, kept in step by
        # config-file sync; classes/session.py); None: the world's starting password
        self.password = master.world.password if password is None else password

    @property
    def schema(self):
        return self.db.schema

    def hosts(self):
        return [h for h in self.master.world.hosts.values() if h.pool is self]


class World:
    """Pools and hosts of one simulation; no module-level state, so worlds can coexist."""

    def __init__(self, seed=None, user="root", password="xenroot", auth_failure_delay=0.0,
                 tls=False):
        self.ids = Ids(seed)
        self.user = user
        self.password = password    # the starting password of every pool (PoolRuntime.password)
        self.auth_failure_delay = auth_failure_delay   # seconds (classes/session.py)
        self.tls = tls
        self.hosts: dict[str, HostRuntime] = {}
        self.pools: list[PoolRuntime] = []
        # a leaf lock: it guards the world's dicts and lists only, and no database lock is
        # ever taken while it is held (store.py's lock discipline)
        self.lock = threading.RLock()
        self.txm = Transactions()
        self.clock = Clock()   # injectable: tasks, sessions, events and messages read it
        self.on_host_added = []   # callbacks(host) -- the server starts listeners here
        self.building = False     # scenario construction: a steady state, so no alerts
        self.join_restart_delay = 0.0  # seconds before a joiner's first start as a member
        self.simulator = None
        self._services: dict = {}

    def service(self, cls):
        """The world's one instance of a subsystem class (tasks, faults, event queues),
        made on first use with ``cls(world)``: no module-level state."""
        svc = self._services.get(cls)
        if svc is None:
            with self.lock:
                svc = self._services.get(cls)
                if svc is None:
                    svc = self._services[cls] = cls(self)
        return svc

    def existing_service(self, cls):
        """The instance if it was ever made, else None (a cheap check on hot paths)."""
        return self._services.get(cls)

    # -- lookups -------------------------------------------------------------------------
    def host_by_name(self, name: str) -> HostRuntime:
        for h in self.hosts.values():
            if h.name_label == name:
                return h
        raise KeyError(name)

    def host_by_address(self, address: str) -> HostRuntime | None:
        for h in self.hosts.values():
            if h.address == address or f"{h.address_for_url}:{h.port}" == address:
                return h
        return None

    def host(self, ref: str) -> HostRuntime:
        h = self.hosts.get(ref)
        if h is None:
            raise Failure("HANDLE_INVALID", "host", ref)
        return h

    def find_session(self, ref: str):
        """(pool, row) of a live session in any pool, or None."""
        for p in self.pools:
            row = p.db.tables["session"].get(ref)
            if row is not None:
                return p, row
        return None

    # -- construction --------------------------------------------------------------------
    def new_row(self, db: Database, table: str, **fields) -> str:
        """Insert a row with every field at its datamodel default except ``fields``.

        A field the pool's release does not have is refused (INTERNAL_ERROR), unless
        ``data/release_fields.json`` lists it as one the row builders set for the releases
        that have it (``VM.domain_type`` exists from jura on): then it is left out here."""
        c = db.schema.classes[table]
        row = c.defaults()
        if "uuid" in c.fields:
            row["uuid"] = fields.pop("uuid", None) or self.ids.uuid()
        ref = fields.pop("ref", None) or self.ids.ref()
        for k, v in fields.items():
            if k in row:
                row[k] = v
            elif not datamodel.absent_in_release(table, k, db.schema.release):
                log.error("refused unknown field %s.%s", table, k, stack_info=True)
                raise Failure("INTERNAL_ERROR",
                              f"unknown field {table}.{k} in release {db.schema.release}")
        return db.add(table, ref, row)

    def add_standalone_host(self, name_label, version=products.DEFAULT_VERSION,
                            hardware: Hardware | None = None, uuid=None, pool_name="",
                            build_number=None):
        """Create a host that is the master of its own pool of one (as after install)."""
        prod = products.product(version, build_number)
        cpus.model(hardware.cpu)  # validate early
        h = HostRuntime(self, self.ids.ref(), uuid or self.ids.uuid(), name_label, prod,
                        hardware)
        self._register_host(h)
        pool = self._new_pool(h, pool_name)
        with pool.db.lock:
            self._create_host_rows(pool, h)
            self.allocate_address(h)
        return h

    def _register_host(self, h: HostRuntime):
        with self.lock:
            self.hosts[h.ref] = h
        self.txm.on_rollback(lambda: self.hosts.pop(h.ref, None))

    def add_pool(self, pool: PoolRuntime):
        with self.lock:
            self.pools.append(pool)
        self.txm.on_rollback(lambda: self.drop_pool(pool))

    def drop_pool(self, pool: PoolRuntime):
        with self.lock:
            if pool in self.pools:
                self.pools.remove(pool)
        self.txm.on_rollback(lambda: self.add_pool(pool))

    def _new_pool(self, master: HostRuntime, name_label="", password=None) -> PoolRuntime:
        db = Database(Schema.for_release(master.product.release), self.txm)
        ref = self.ids.ref()
        pool = PoolRuntime(db, ref, master, password)
        self.new_row(db, "pool", ref=ref, name_label=name_label, master=master.ref,
                     other_config={}, allowed_operations=[], restrictions=_RESTRICTIONS)
        master.pool = pool
        self.add_pool(pool)
        self._create_templates(pool)
        self.new_row(db, "network", name_label="Pool-wide network associated with eth0",
                     bridge="xenbr0", MTU=1500, other_config={"automatic": "true"})
        for name, desc in _ROLES:
            # XAPI's roles are static (rbac_static.ml): the same refs and uuids everywhere
            uid = str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "xapi-role:" + name))
            self.new_row(db, "role", ref="OpaqueRef:" + uid, uuid=uid, name_label=name,
                         name_description=desc, subroles=[])
        return pool

    def add_member(self, pool: PoolRuntime, name_label, version=products.DEFAULT_VERSION,
                   hardware: Hardware | None = None, uuid=None, build_number=None):
        """Create a host directly as a member of ``pool`` (scenario building)."""
        prod = products.product(version, build_number)
        cpus.model(hardware.cpu)
        h = HostRuntime(self, self.ids.ref(), uuid or self.ids.uuid(), name_label, prod,
                        hardware)
        self._register_host(h)
        with pool.db.lock:
            h.pool = pool
            self._create_host_rows(pool, h)
            self.allocate_address(h)
        return h

    def allocate_address(self, h: HostRuntime):
        """Addresses are given by the server when it binds; placeholder until then."""
        if not h.address:
            h.address = f"sim-{h.uuid[:8]}"

    def _create_host_rows(self, pool: PoolRuntime, h: HostRuntime):
        db = pool.db
        metrics = self.new_row(db, "host_metrics", memory_total=h.hw.memory,
                               live=False, last_updated=self.clock.now_ts())
        h.memory_free = h.hw.memory - DOM0_MEMORY - HOST_OVERHEAD
        self.new_row(
            db, "host", ref=h.ref, uuid=h.uuid, name_label=h.name_label,
            name_description="Default install", hostname=h.name_label, address=h.address,
            enabled=False, metrics=metrics, memory_overhead=HOST_OVERHEAD,
            API_version_major=h.product.api_major, API_version_minor=h.product.api_minor,
            API_version_vendor="XenSource", API_version_vendor_implementation={},
            software_version=h.product.software_version_map(h.name_label),
            capabilities=list(_CAPABILITIES), sched_policy="credit",
            supported_bootloaders=["pygrub", "eliloader"],
            cpu_configuration={}, logging={}, license_params={"sku_type": "enterprise"},
            edition="enterprise-per-socket", chipset_info={"iommu": "true"},
            other_config={"agent_start_time": "0.", "boot_time": "0.",
                          "iscsi_iqn": f"iqn.2016-05.com.example:{h.uuid[:8]}"},
            bios_strings={"bios-vendor": "Xen", "system-manufacturer": "xapi-sim"},
            allowed_operations=[], current_operations={})
        self._create_management_pif(db, h)
        dom0_metrics = self.new_row(db, "VM_metrics", memory_actual=DOM0_MEMORY,
                                    VCPUs_number=min(8, h.hw.cpu_count), start_time=self.clock.now_ts(),
                                    install_time=self.clock.now_ts(), last_updated=self.clock.now_ts())
        self.new_row(
            db, "VM", name_label=f"Control domain on host: {h.name_label}",
            name_description="The domain which manages physical devices and manages other domains",
            is_control_domain=True, power_state="Running", resident_on=h.ref, affinity=h.ref,
            domid=0, memory_static_max=DOM0_MEMORY, memory_dynamic_max=DOM0_MEMORY,
            memory_dynamic_min=DOM0_MEMORY, memory_static_min=DOM0_MEMORY,
            memory_target=DOM0_MEMORY, VCPUs_max=min(8, h.hw.cpu_count),
            VCPUs_at_startup=min(8, h.hw.cpu_count), metrics=dom0_metrics, user_version=1,
            actions_after_shutdown="destroy", actions_after_reboot="restart",
            actions_after_crash="restart", last_boot_CPU_flags={},
            other_config={"storage_driver_domain": "OpaqueRef:NULL"}, allowed_operations=[])

    def pool_network(self, db) -> str:
        """The pool's management network (``xenbr0``)."""
        for ref, row in db.rows("network"):
            if row["bridge"] == "xenbr0":
                return ref
        raise Failure("INTERNAL_ERROR", "no management network")

    def _create_management_pif(self, db, h: HostRuntime):
        """eth0 of the host: physical, attached, the management interface, on xenbr0."""
        mac = ":".join(f"{int(h.uuid[i:i + 2], 16):02x}" for i in range(0, 12, 2))
        mac = "02" + mac[2:]
        self.new_row(db, "PIF", device="eth0", network=self.pool_network(db), host=h.ref,
                     MAC=mac, MTU=1500, VLAN=-1, physical=True, currently_attached=True,
                     ip_configuration_mode="Static", IP=h.address_for_url, netmask="255.0.0.0",
                     gateway="", DNS="", management=True, managed=True,
                     other_config={}, properties={}, capabilities=[])

    def set_host_address(self, h: HostRuntime, address: str):
        """Record where the host listens: host.address and its management PIF's IP."""
        h.address = address
        db = h.db
        with db.lock:
            if not db.exists("host", h.ref):
                return
            row = db.get("host", h.ref)
            if row["address"] != address:
                db.set("host", h.ref, "address", address)
            for pif in row["PIFs"]:
                if db.get("PIF", pif)["management"] and db.get("PIF", pif)["IP"] != \
                        h.address_for_url:
                    db.set("PIF", pif, "IP", h.address_for_url)

    def _create_templates(self, pool: PoolRuntime):
        for name, hvm in _TEMPLATES:
            self.new_row(
                pool.db, "VM", name_label=name, is_a_template=True, is_default_template=True,
                power_state="Halted", domid=-1, memory_static_max=2 * GiB,
                memory_dynamic_max=2 * GiB,
                memory_dynamic_min=2 * GiB, memory_static_min=1 * GiB, VCPUs_max=1,
                VCPUs_at_startup=1, HVM_boot_policy="BIOS order" if hvm else "",
                HVM_boot_params={"order": "cdn"} if hvm else {},
                PV_bootloader="" if hvm else "eliloader",
                platform={"nx": "true", "acpi": "1", "apic": "true", "pae": "true",
                          "viridian": "true" if "Windows" in name else "false"},
                actions_after_shutdown="destroy", actions_after_reboot="restart",
                actions_after_crash="restart", user_version=1,
                other_config={"default_template": "true"},
                allowed_operations=["clone", "copy", "export", "provision", "destroy"])

    # -- xapi start (boot-time recalculation) --------------------------------------------
    def rolling_upgrade_in_progress(self, pool: PoolRuntime) -> bool:
        return "rolling_upgrade_in_progress" in pool.db.get("pool", pool.ref)["other_config"]

    def xapi_start(self, h: HostRuntime, system_boot: bool = True):
        """One xapi start of ``h``: the Dundee startup sequence for levelling (spec §3, §4)."""
        db = h.db
        with db.lock:
            if h.next_hw is not None:
                h.hw, h.next_hw = h.next_hw, None
            release = h.product.release
            info = cpus.host_cpu_info(h.hw.cpu, h.hw.hidden_features, sockets=h.hw.sockets,
                                      cpus_per_socket=h.hw.cpus_per_socket, release=release,
                                      **({"mask": h.hw.mask} if release == "cream" else {}))
            if h.hw.overrides and release != "cream":
                info.update(h.hw.overrides)
            row = db.get("host", h.ref)
            old = row["cpu_info"]
            enable = not h.disabled_until_reboot or system_boot
            if system_boot:
                h.disabled_until_reboot = False
            changes = dict(cpu_info=info, software_version=h.product.software_version_map(
                               h.name_label),
                           API_version_major=h.product.api_major,
                           API_version_minor=h.product.api_minor, address=h.address)
            if enable:
                changes["enabled"] = True
                h.user_disabled = False
            db.update("host", h.ref, **changes)
            rpu = self.rolling_upgrade_in_progress(h.pool)
            if release != "cream" and not rpu and not self.building:
                alert = policy.host_alert(old, info)
                if alert:
                    self.add_message(db, *alert, "Host", h.uuid)
            for r in list(db.get("host", h.ref)["host_CPUs"]):
                db.remove("host_cpu", r)
            for cpu_row in cpus.host_cpu_rows(info):
                self.new_row(db, "host_cpu", host=h.ref, **cpu_row)
            db.update("host_metrics", row["metrics"], live=True, last_updated=self.clock.now_ts())
            h.state = "up"
            h.started_once = True
            h.xapi_epoch += 1
            self.update_host_memory(h)
            self.recompute_pool_cpu_info(h.pool)
            self.update_host_allowed_operations(h)
            # the master's periodic DB GC pass; run at every start so the flag follows at once
            self.detect_rolling_upgrade(h.pool)

    def recompute_pool_cpu_info(self, pool: PoolRuntime):
        """``create_pool_cpuinfo`` (Dundee §4): intersection over every host record, alert."""
        db = pool.db
        if "cpu_info" not in db.schema.classes["pool"].fields:
            return   # pre-Dundee pools have no pool.cpu_info
        with db.lock:
            infos = [row["cpu_info"] for _, row in db.rows("host")]
            new = policy.pool_cpu_info(infos)
            prow = db.get("pool", pool.ref)
            old = prow["cpu_info"]
            db.update("pool", pool.ref, cpu_info=new)
            alert = policy.pool_alert(old, new, n_hosts=len(infos),
                                      rpu_in_progress=self.rolling_upgrade_in_progress(pool))
            if alert and not self.building:
                self.add_message(db, *alert, "Pool", prow["uuid"])

    def detect_rolling_upgrade(self, pool: PoolRuntime):
        """``Db_gc.detect_rolling_upgrade``: flag the pool while platform versions differ."""
        db = pool.db
        with db.lock:
            master_v = pool.master.product.platform_version
            differ = any(row["software_version"].get("platform_version", "0.0.0") != master_v
                         for _, row in db.rows("host"))
            oc = db.get("pool", pool.ref)["other_config"]
            if differ == ("rolling_upgrade_in_progress" in oc):
                return
            if differ:
                db.set("pool", pool.ref, "other_config",
                       {**oc, "rolling_upgrade_in_progress": "true"})
            else:
                oc = dict(oc)
                del oc["rolling_upgrade_in_progress"]
                db.set("pool", pool.ref, "other_config", oc)
            # VM allowed_operations follow the RPU "Miami" list while the flag is set
            from .classes.vm_lifecycle import refresh_allowed
            for vm in db.refs("VM"):
                refresh_allowed(None, vm, world=self, db=db, pool=pool)

    def add_message(self, db, name, priority, body, cls, obj_uuid):
        return self.new_row(db, "message", name=name, priority=priority, cls=cls,
                            obj_uuid=obj_uuid, timestamp=self.clock.now_ts(), body=body)

    # -- power and membership ------------------------------------------------------------
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
        if sim is not None:
            sim.unlisten(h)

    def host_boot(self, h: HostRuntime):
        """Power on: the endpoint answers again and a full xapi start runs (system boot).
        VMs the database still shows resident (the host died under them) are resynced as
        xenopsd no longer knows them: Halted, not resident (xapi_xenops.ml
        ``xapi_vms_not_in_xenopsd``)."""
        sim = getattr(self, "simulator", None)
        if sim is not None:
            sim.listen(h)
        db = h.db
        with db.lock:
            h.state = "up"
            h.disabled_until_reboot = False
            from .classes.vm_lifecycle import refresh_allowed
            for vm, row in self.resident_vms(h):
                db.update("VM", vm, power_state="Halted", resident_on=NULL_REF,
                          scheduled_to_be_resident_on=NULL_REF, domid=-1)
                if db.exists("VM_metrics", row["metrics"]):
                    db.update("VM_metrics", row["metrics"], memory_actual=0, VCPUs_number=0)
                refresh_allowed(None, vm, world=self, db=db, pool=h.pool)
            h.domid_seq = 0
        self.xapi_start(h, system_boot=True)

    def forget_host(self, h: HostRuntime):
        """Delete a host's records from its pool (Host.destroy / eject) and recompute the
        pool level, as Dundee's ``create_pool_cpuinfo`` call sites do (§4, §5.3)."""
        pool, db = h.pool, h.db
        with db.lock:
            row = db.get("host", h.ref)
            for r in list(row["host_CPUs"]):
                db.remove("host_cpu", r)
            for r in list(row["PIFs"]):
                db.remove("PIF", r)
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

    def remove_host(self, h: HostRuntime):
        """Forget a host entirely (Host.destroy): its endpoint goes away too."""
        sim = self.simulator
        if sim is not None:
            sim.unlisten(h)
        with self.lock:
            self.hosts.pop(h.ref, None)

    # -- host bookkeeping ----------------------------------------------------------------
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
        db = h.db
        row = db.get("host", h.ref)
        ops = ["provision", "evacuate", "vm_start", "vm_resume", "vm_migrate"]
        if not row["enabled"]:
            ops += ["reboot", "shutdown"]
        if row["current_operations"]:
            ops = []
        if sorted(ops) != sorted(row["allowed_operations"]):
            db.set("host", h.ref, "allowed_operations", ops)


_RESTRICTIONS = {"restrict_vswitch_controller": "false", "restrict_lab": "false",
                 "restrict_stage": "false", "restrict_storagelink": "false",
                 "restrict_storagelink_site_recovery": "false", "restrict_web_selfservice": "true",
                 "restrict_web_selfservice_manager": "true", "restrict_hotfix_apply": "false",
                 "restrict_export_resource_data": "false", "restrict_read_caching": "false",
                 "restrict_cifs": "false", "restrict_health_check": "false",
                 "restrict_xcm": "false", "restrict_vm_memory_introspection": "false",
                 "restrict_pooling": "false", "restrict_xen_motion": "false",
                 "restrict_cpu_masking": "false", "restrict_ha": "false",
                 "restrict_dmc": "false", "sku_type": "enterprise", "expiry": "20380119T03:14:07Z"}

_CAPABILITIES = ("xen-3.0-x86_64", "xen-3.0-x86_32p", "hvm-3.0-x86_32", "hvm-3.0-x86_32p",
                 "hvm-3.0-x86_64")

_ROLES = (
    ("pool-admin", "The Pool Administrator role has full access to all features and "
                   "settings, including accessing Dom0 and managing subjects, roles and "
                   "external authentication"),
    ("pool-operator", "The Pool Operator role manages host- and pool-wide resources, "
                      "including setting up storage, creating resource pools and managing "
                      "patches, high availability (HA) and workload balancing (WLB)"),
    ("vm-power-admin", "The VM Power Administrator role has full access to VM and template "
                       "management and can choose where to start VMs and use the dynamic "
                       "memory control and VM snapshot features"),
    ("vm-admin", "The VM Administrator role can manage VMs and templates"),
    ("vm-operator", "The VM Operator role can use VMs and interact with VM consoles"),
    ("read-only", "The Read-Only role can log in with basic read-only access"),
)

_TEMPLATES = (
    ("Windows Server 2012 R2 (64-bit)", True),
    ("Windows 10 (64-bit)", True),
    ("CentOS 7", False),
    ("Debian Jessie 8.0", False),
    ("Other install media", True),
)
