"""What the simulator knows of a host beyond its database rows: hardware, product, power
state, endpoint, pool membership -- and the limits of the release it emulates.

A host's runtime state is part of the calls' transactions: ``HostRuntime.__setattr__``
records the old value of a tracked attribute in the thread's transaction, so a call that
fails leaves the host as it was (store.py).
"""

from __future__ import annotations

import attrs

from .store import Database

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
    mask: tuple | None = None  # pre-Dundee set_cpu_features mask (6.5 SP1 pools)
    overrides: dict = attrs.Factory(dict)  # test hook: verbatim vendor/features_pv/features_hvm
    nics: int = 4  # physical NICs eth0.. (install_network.py)

    @property
    def cpu_count(self) -> int:
        return self.sockets * self.cpus_per_socket


_MISSING = object()


class HostRuntime:
    """A simulated host: its endpoint, its running product and hardware, and its state.

    Its runtime state is part of the calls' transactions: a change made inside one is
    undone if the transaction rolls back (``__setattr__`` records the old value)."""

    memory_free: int  # free memory (set by update_host_memory)
    domid_seq: int  # last domid given on this host since it booted
    xapi_epoch: int  # counts xapi starts (local sessions end with one)
    recorded_address: str  # playback: where the host listened in its real pool

    _TRACKED = frozenset(
        {
            "state",
            "pool",
            "product",
            "hw",
            "next_hw",
            "started_once",
            "disabled_until_reboot",
            "user_disabled",
            "address",
            "port",
            "memory_free",
            "domid_seq",
        }
    )

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
        self.state = "up"  # up | down | crashed
        self.started_once = False
        self.disabled_until_reboot = False
        self.user_disabled = False
        self.xapi_epoch = 0  # xapi starts so far: local sessions die with their xapi

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
        assert self.pool is not None, f"host {self.name_label} is in no pool"
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
