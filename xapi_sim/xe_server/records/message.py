"""The CLI record of a message (``message-list``, ``message-param-*``).

Mirrors xen-api Dundee ``records.ml`` ``message_record``.
"""

from __future__ import annotations

from .record import Builder, Record


def message_record(ctx, ref, row=None, only=None) -> Record:
    rec = Record(ctx, "message", ref, row, only)
    B = Builder(rec)
    B.add("uuid", B.s("uuid"))
    B.add("name", B.s("name"))
    B.add("priority", B.i("priority"))
    B.add("class", B.s("cls"))
    B.add("obj-uuid", B.s("obj_uuid"))
    B.add("timestamp", B.s("timestamp"))
    B.add("body", B.s("body"))
    return rec
