"""The CLI record of a VM appliance (``appliance-list``, ``appliance-param-*``).

Mirrors xen-api Dundee ``ocaml/client_records/records.ml`` ``vm_appliance_record``: uuid,
name-label and name-description (writable), VMs as uuids, the operations as
``Record_util.vm_appliance_operation_to_string`` spells them (the API names).
"""

from __future__ import annotations

from .record import Builder, Record


def appliance_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "VM_appliance", ref, row, only)
    B = Builder(rec)
    x = B.x
    B.add("uuid", B.s("uuid"))
    B.str_rw("name-label", "name_label")
    B.str_rw("name-description", "name_description")
    B.add_set("VMs", lambda: [ctx.uuid_of(v) for v in x().get("VMs", [])])
    B.add_set("allowed-operations", B.listed("allowed_operations"))
    B.add_set("current-operations", B.listed("current_operations"))
    return rec
