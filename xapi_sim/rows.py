"""Row builders: what a fresh install of a host puts in its pool's database (host, metrics,
dom0, management PIF, the pool-wide network, roles, default templates) and ``new_row``, the
one way every module inserts a row with the datamodel's defaults.

Mixed into :class:`world.World`; the scenario loader, eject, clone and the installers build
rows through these. Rows that come from another database (pool join, cross-pool landing,
VM import) go in through ``Database.carry``: the destination release's defaults, the
fields it has, the changes the move makes.
"""

from __future__ import annotations

import logging

from . import catalogue, datamodel, install_certs, install_network, install_storage
from .clock import Clock
from .errors import Failure
from .ids import Ids
from .runtime import DOM0_MEMORY, HOST_OVERHEAD, HostRuntime, PoolRuntime
from .store import Database

log = logging.getLogger(__name__)


class RowBuilders:
    """Row construction for :class:`world.World` (needs ``ids`` and ``clock``)."""

    ids: Ids
    clock: Clock

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
                raise Failure(
                    "INTERNAL_ERROR", f"unknown field {table}.{k} in release {db.schema.release}"
                )
        return db.add(table, ref, row)

    def _create_host_rows(self, pool: PoolRuntime, h: HostRuntime):
        db = pool.db
        metrics = self.new_row(
            db,
            "host_metrics",
            memory_total=h.hw.memory,
            live=False,
            last_updated=self.clock.now_ts(),
        )
        h.memory_free = h.hw.memory - DOM0_MEMORY - HOST_OVERHEAD
        self.new_row(
            db,
            "host",
            ref=h.ref,
            uuid=h.uuid,
            name_label=h.name_label,
            name_description="Default install",
            hostname=h.name_label,
            address=h.address,
            enabled=False,
            metrics=metrics,
            memory_overhead=HOST_OVERHEAD,
            API_version_major=h.product.api_major,
            API_version_minor=h.product.api_minor,
            API_version_vendor="XenSource",
            API_version_vendor_implementation={},
            software_version=h.product.software_version_map(h.name_label),
            capabilities=list(_CAPABILITIES),
            sched_policy="credit",
            supported_bootloaders=["pygrub", "eliloader"],
            cpu_configuration={},
            logging={},
            license_params={"sku_type": "enterprise"},
            edition="enterprise-per-socket",
            chipset_info={"iommu": "true"},
            other_config={
                "agent_start_time": "0.",
                "boot_time": "0.",
                "iscsi_iqn": f"iqn.2016-05.com.example:{h.uuid[:8]}",
            },
            # where the field exists xapi's other-config watcher has copied the key into it
            iscsi_iqn=f"iqn.2016-05.com.example:{h.uuid[:8]}",
            bios_strings={"bios-vendor": "Xen", "system-manufacturer": "xapi-sim"},
            allowed_operations=[],
            current_operations={},
        )
        self._create_management_pif(db, h)
        now = self.clock.now_ts()
        dom0_metrics = self.new_row(
            db,
            "VM_metrics",
            memory_actual=DOM0_MEMORY,
            VCPUs_number=min(8, h.hw.cpu_count),
            start_time=now,
            install_time=now,
            last_updated=now,
        )
        self.new_row(
            db,
            "VM",
            name_label=f"Control domain on host: {h.name_label}",
            name_description="The domain which manages physical devices and manages other domains",
            is_control_domain=True,
            power_state="Running",
            resident_on=h.ref,
            affinity=h.ref,
            domid=0,
            memory_static_max=DOM0_MEMORY,
            memory_dynamic_max=DOM0_MEMORY,
            memory_dynamic_min=DOM0_MEMORY,
            memory_static_min=DOM0_MEMORY,
            memory_target=DOM0_MEMORY,
            VCPUs_max=min(8, h.hw.cpu_count),
            VCPUs_at_startup=min(8, h.hw.cpu_count),
            metrics=dom0_metrics,
            user_version=1,
            actions_after_shutdown="destroy",
            actions_after_reboot="restart",
            actions_after_crash="restart",
            last_boot_CPU_flags={},
            other_config={"storage_driver_domain": "OpaqueRef:NULL"},
            allowed_operations=[],
        )
        install_storage.install_host(self, pool, h)
        install_certs.install_host_certificate(self, db, h)

    def pool_network(self, db) -> str:
        """The pool's management network (``xenbr0``)."""
        for ref, row in db.rows("network"):
            if row["bridge"] == "xenbr0":
                return ref
        raise Failure("INTERNAL_ERROR", "no management network")

    def _create_management_pif(self, db, h: HostRuntime):
        """The host's networking as installed: ``eth0``.. with metrics on the pool-wide
        networks, ``eth0`` the management interface (``install_network.py``)."""
        install_network.install_host_network(self, db, h)

    def set_host_address(self, h: HostRuntime, address: str):
        """Record where the host listens: host.address and its management PIF's IP (unless
        the API moved the management interface to another address: install_network.py)."""
        h.address = address
        db = h.db
        with db.lock:
            install_network.bind_endpoint(self, db, h)

    def _create_templates(self, pool: PoolRuntime):
        """The release's default templates (``catalogue.templates``; docs/templates.md), as
        firstboot's ``create_templates`` / the 7.1+ JSON loader leave them: each with a
        fresh ``other_config:mac_seed`` (``xapi_vm.ml`` ``create`` adds one), a per-pool
        uuid unless the data fixes it (7.1 on), ``is_default_template`` where the release
        has the field (from ``other_config:default_template`` if the data predates it).
        Fields the pool's release lacks are left out (its xapi has no such field)."""
        db = pool.db
        vm_fields = db.schema.classes["VM"].fields
        has_default_flag = "is_default_template" in vm_fields
        for t in catalogue.templates(db.schema.release):
            fields = {k: v for k, v in t.items() if k in vm_fields}
            other = fields.setdefault("other_config", {})
            other["mac_seed"] = self.ids.uuid()
            if has_default_flag:
                fields["is_default_template"] = t.get(
                    "is_default_template", other.get("default_template") == "true"
                )
            # Xapi_vm.create makes the VM's VM_metrics first, as for every VM
            fields["metrics"] = self.new_row(db, "VM_metrics", memory_actual=0, VCPUs_number=0)
            fields.update(power_state="Halted", domid=-1, is_a_template=True)
            self.new_row(db, "VM", **fields)

    # -- xapi start (boot-time recalculation) --------------------------------------------

    def add_message(self, db, name, priority, body, cls, obj_uuid):
        return self.new_row(
            db,
            "message",
            name=name,
            priority=priority,
            cls=cls,
            obj_uuid=obj_uuid,
            timestamp=self.clock.now_ts(),
            body=body,
        )

    # -- power and membership ------------------------------------------------------------


_RESTRICTIONS = {
    "restrict_vswitch_controller": "false",
    "restrict_lab": "false",
    "restrict_stage": "false",
    "restrict_storagelink": "false",
    "restrict_storagelink_site_recovery": "false",
    "restrict_web_selfservice": "true",
    "restrict_web_selfservice_manager": "true",
    "restrict_hotfix_apply": "false",
    "restrict_export_resource_data": "false",
    "restrict_read_caching": "false",
    "restrict_cifs": "false",
    "restrict_health_check": "false",
    "restrict_xcm": "false",
    "restrict_vm_memory_introspection": "false",
    "restrict_pooling": "false",
    "restrict_xen_motion": "false",
    "restrict_cpu_masking": "false",
    "restrict_ha": "false",
    "restrict_dmc": "false",
    "restrict_vif_locking": "false",
    "restrict_guest_ip_setting": "false",
    "sku_type": "enterprise",
    "expiry": "20380119T03:14:07Z",
}

_CAPABILITIES = (
    "xen-3.0-x86_64",
    "xen-3.0-x86_32p",
    "hvm-3.0-x86_32",
    "hvm-3.0-x86_32p",
    "hvm-3.0-x86_64",
)

_ROLES = (
    (
        "pool-admin",
        "The Pool Administrator role has full access to all features and "
        "settings, including accessing Dom0 and managing subjects, roles and "
        "external authentication",
    ),
    (
        "pool-operator",
        "The Pool Operator role manages host- and pool-wide resources, "
        "including setting up storage, creating resource pools and managing "
        "patches, high availability (HA) and workload balancing (WLB)",
    ),
    (
        "vm-power-admin",
        "The VM Power Administrator role has full access to VM and template "
        "management and can choose where to start VMs and use the dynamic "
        "memory control and VM snapshot features",
    ),
    ("vm-admin", "The VM Administrator role can manage VMs and templates"),
    ("vm-operator", "The VM Operator role can use VMs and interact with VM consoles"),
    ("read-only", "The Read-Only role can log in with basic read-only access"),
)
