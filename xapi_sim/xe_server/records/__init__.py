"""CLI records per class (xen-api ``records.ml``): ``record.py`` is what a record and a
field are; ``vm.py``, ``host.py`` (host and host_cpu), ``pool.py``, ``message.py``,
``storage.py`` (SR, PBD, VDI, VBD), ``network.py`` (PIF, VIF, network) and ``appliance.py``
(VM_appliance) are the layouts.
``make_record`` builds the record of any class that has one."""

from __future__ import annotations

from .appliance import appliance_record
from .host import host_cpu_record, host_record
from .message import message_record
from .network import network_record, pif_record, vif_record
from .pool import pool_record
from .record import Builder, Field, Record
from .storage import pbd_record, sr_record, vbd_record, vdi_record
from .vm import vm_record

RECORDS = {
    "VM": vm_record,
    "host": host_record,
    "pool": pool_record,
    "message": message_record,
    "host_cpu": host_cpu_record,
    "SR": sr_record,
    "PBD": pbd_record,
    "VDI": vdi_record,
    "VBD": vbd_record,
    "PIF": pif_record,
    "VIF": vif_record,
    "network": network_record,
    "VM_appliance": appliance_record,
}


def make_record(ctx, cls, ref, row=None, only=None) -> Record:
    """The CLI record of ``ref``; ``only``: the names of the fields to build (None: all)."""
    rec = RECORDS[cls](ctx, ref, row, only)
    return rec


__all__ = [
    "RECORDS",
    "appliance_record",
    "Builder",
    "Field",
    "Record",
    "make_record",
    "host_cpu_record",
    "host_record",
    "message_record",
    "network_record",
    "pbd_record",
    "pif_record",
    "sr_record",
    "vbd_record",
    "vdi_record",
    "vif_record",
    "pool_record",
    "vm_record",
]
