"""A simulated world: pools (one database each), hosts, and the services of one simulation.

"Where" lives here -- which pool database a host belongs to, lookups, the per-world services
(tasks, faults, event queues), the transaction manager and the clock -- while row builders
live in ``rows.py``, the xapi start routine and host power in ``xapi_start.py``, runtime host
state in ``runtime.py`` and the API behaviour in ``classes/``. Everything that changes rows
goes through ``store.Database``.
"""

from __future__ import annotations

import threading
import uuid as uuid_mod

from . import install_storage, products
from .clock import Clock
from .datamodel import Schema
from .errors import Failure
from .ids import Ids
from .levelling import cpus
from .rows import _RESTRICTIONS, _ROLES
from .runtime import (  # noqa: F401 -- re-exported
    DOM0_MEMORY,
    HOST_OVERHEAD,
    MAX_PCPUS_PER_HOST,
    MAX_VCPUS_PER_VM,
    MAX_VM_MEMORY,
    MAX_VMS_PER_HOST,
    GiB,
    Hardware,
    HostRuntime,
    MiB,
    PoolRuntime,
)
from .store import Database, Transactions
from .xapi_start import XapiLifecycle


class World(XapiLifecycle):
    """Pools and hosts of one simulation; no module-level state, so worlds can coexist."""

    def __init__(
        self, seed=None, user="root", password="xenroot", auth_failure_delay=0.0, tls=False
    ):
        self.ids = Ids(seed)
        self.user = user
        self.password = password  # the starting password of every pool (PoolRuntime.password)
        self.auth_failure_delay = auth_failure_delay  # seconds (classes/session.py)
        self.tls = tls
        self.hosts: dict[str, HostRuntime] = {}
        self.pools: list[PoolRuntime] = []
        # a leaf lock: it guards the world's dicts and lists only, and no database lock is
        # ever taken while it is held (store.py's lock discipline)
        self.lock = threading.RLock()
        self.txm = Transactions()
        self.clock = Clock()  # injectable: tasks, sessions, events and messages read it
        self.on_host_added = []  # callbacks(host) -- the server starts listeners here
        self.building = False  # scenario construction: a steady state, so no alerts
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

    def add_standalone_host(
        self,
        name_label,
        version=products.DEFAULT_VERSION,
        hardware: Hardware | None = None,
        uuid=None,
        pool_name="",
        build_number=None,
    ):
        """Create a host that is the master of its own pool of one (as after install)."""
        prod = products.product(version, build_number)
        assert hardware is not None
        cpus.model(hardware.cpu)  # validate early
        h = HostRuntime(self, self.ids.ref(), uuid or self.ids.uuid(), name_label, prod, hardware)
        self._register_host(h)
        pool = self._new_pool(h, pool_name)
        with pool.db.lock:
            self._create_host_rows(pool, h)
            self.allocate_address(h)
        return h

    def _register_host(self, h: HostRuntime):
        with self.lock:
            self.hosts[h.ref] = h
        self.txm.on_rollback(lambda: self._unregister_host(h))

    def _unregister_host(self, h: HostRuntime) -> None:
        with self.lock:
            self.hosts.pop(h.ref, None)

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
        self.new_row(
            db,
            "pool",
            ref=ref,
            name_label=name_label,
            master=master.ref,
            other_config={},
            allowed_operations=[],
            restrictions=_RESTRICTIONS,
        )
        if "tls_verification_enabled" in db.schema.classes["pool"].fields:
            db.set("pool", ref, "tls_verification_enabled", master.product.tls_verification)
        if "VTPM" in db.schema.classes:  # licensed: vTPMs allowed (xapi_vtpm.ml)
            db.set("pool", ref, "restrictions", {**_RESTRICTIONS, "restrict_vtpm": "false"})
        if "enable_cbt" in db.schema.classes["VDI"].messages:  # licensed: CBT (features.ml)
            restrictions = db.tables["pool"][ref]["restrictions"]
            db.set("pool", ref, "restrictions", {**restrictions, "restrict_cbt": "false"})
        master.pool = pool
        self.add_pool(pool)
        self._create_templates(pool)
        install_storage.install_pool(self, pool)
        for name, desc in _ROLES:
            # XAPI's roles are static (rbac_static.ml): the same refs and uuids everywhere
            uid = str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "xapi-role:" + name))
            self.new_row(
                db,
                "role",
                ref="OpaqueRef:" + uid,
                uuid=uid,
                name_label=name,
                name_description=desc,
                subroles=[],
            )
        return pool

    def add_member(
        self,
        pool: PoolRuntime,
        name_label,
        version=products.DEFAULT_VERSION,
        hardware: Hardware | None = None,
        uuid=None,
        build_number=None,
    ):
        """Create a host directly as a member of ``pool`` (scenario building)."""
        prod = products.product(version, build_number)
        assert hardware is not None
        cpus.model(hardware.cpu)
        h = HostRuntime(self, self.ids.ref(), uuid or self.ids.uuid(), name_label, prod, hardware)
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

    def remove_host(self, h: HostRuntime):
        """Forget a host entirely (Host.destroy): its endpoint goes away too."""
        sim = self.simulator
        if sim is not None:
            sim.unlisten(h)
        with self.lock:
            self.hosts.pop(h.ref, None)

    # -- host bookkeeping ----------------------------------------------------------------
