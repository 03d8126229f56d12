"""CLI records per class (xen-api ``records.ml``): ``record.py`` is what a record and a
field are; ``vm.py``, ``host.py`` (host and host_cpu), ``pool.py`` and ``message.py`` are
the layouts. ``make_record`` builds the record of any class that has one."""

from __future__ import annotations

from .host import host_cpu_record, host_record
from .message import message_record
from .pool import pool_record
from .record import Builder, Field, Record
from .vm import vm_record

RECORDS = {
    "VM": vm_record,
    "host": host_record,
    "pool": pool_record,
    "message": message_record,
    "host_cpu": host_cpu_record,
}


def make_record(ctx, cls, ref, row=None, only=None) -> Record:
    """The CLI record of ``ref``; ``only``: the names of the fields to build (None: all)."""
    rec = RECORDS[cls](ctx, ref, row, only)
    return rec


__all__ = [
    "RECORDS",
    "Builder",
    "Field",
    "Record",
    "make_record",
    "host_cpu_record",
    "host_record",
    "message_record",
    "pool_record",
    "vm_record",
]
