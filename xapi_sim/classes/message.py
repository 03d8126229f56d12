"""The ``message.*`` messages (alerts). Mirrors xen-api ``ocaml/xapi/xapi_message.ml``
(Dundee, ``dundee-lcm``), where messages live outside the database (files under
``/var/lib/xcp/blobs/messages``) and every accessor is hand-written -- with its quirks:

* ``create`` checks the body is UTF-8 (``INVALID_VALUE ["UTF8 expected"]``) and that
  ``obj_uuid`` names an object of ``cls`` (``UUID_INVALID [cls, obj_uuid]``, the class as
  ``VM``/``Host``/``SR``/``Pool``/``VMPP``);
* ``get(cls, obj_uuid, since)`` refuses an unknown object with ``UUID_INVALID`` and *no*
  parameters, and returns the object's messages newer than ``since``;
* ``get_since(since)``: every message newer than ``since``;
* ``get_record`` / ``destroy`` of an unknown ref: ``HANDLE_INVALID ["message", ref]``;
  ``get_by_uuid``: ``UUID_INVALID ["message", uuid]``;
* ``get_all_records_where`` ignores its expression and answers every message.

Here the messages are rows of the pool database (so events and ``--state-dir`` cover them).
"""

from __future__ import annotations

from ..dispatch import api
from ..errors import Failure

# check_uuid: the classes a message may be about, and the table each names
_CLASS_TABLE = {"VM": "VM", "Host": "host", "SR": "SR", "Pool": "pool", "VMPP": "VMPP"}


def _exists(db, cls, obj_uuid) -> bool:
    table = _CLASS_TABLE.get(cls)
    return table is not None and table in db.uuids and obj_uuid in db.uuids[table]


def _newer(row, since) -> bool:
    # timestamps are YYYYMMDDTHH:MM:SSZ: string order is time order
    return str(row["timestamp"]) > str(since)


@api("message.create")
def create(call, name, priority, cls, obj_uuid, body):
    db = call.db
    if not _exists(db, cls, obj_uuid):
        raise Failure("UUID_INVALID", cls, obj_uuid)
    return call.world.add_message(db, name, priority, body, cls, obj_uuid)


@api("message.destroy")
def destroy(call, ref):
    if not call.db.exists("message", ref):
        raise Failure("HANDLE_INVALID", "message", ref)
    call.db.remove("message", ref)


@api("message.destroy_many")
def destroy_many(call, messages):
    """``Xapi_message.destroy_many`` (22.19 on): ``destroy`` of each in turn, so the first
    bad ref fails the call with HANDLE_INVALID ["message", ref]. xapi has deleted the
    messages before it by then; here the call's transaction rolls them back with it."""
    with call.db.lock:
        for ref in messages:
            destroy(call, ref)


@api("message.get")
def get(call, cls, obj_uuid, since):
    db = call.db
    if not _exists(db, cls, obj_uuid):
        raise Failure("UUID_INVALID")
    return {
        r: row
        for r, row in db.rows("message")
        if row["cls"] == cls and row["obj_uuid"] == obj_uuid and _newer(row, since)
    }


@api("message.get_since")
def get_since(call, since):
    return {r: row for r, row in call.db.rows("message") if _newer(row, since)}


@api("message.get_all")
def get_all(call):
    return call.db.refs("message")


@api("message.get_all_records")
def get_all_records(call):
    return dict(call.db.rows("message"))


@api("message.get_all_records_where")
def get_all_records_where(call, expr):
    """The expression is ignored, as xapi_message.ml does."""
    return dict(call.db.rows("message"))


@api("message.get_record")
def get_record(call, ref):
    row = call.db.tables["message"].get(ref)
    if row is None:
        raise Failure("HANDLE_INVALID", "message", ref)
    return row


@api("message.get_by_uuid")
def get_by_uuid(call, uuid):
    ref = call.db.uuids["message"].get(uuid)
    if ref is None:
        raise Failure("UUID_INVALID", "message", uuid)
    return ref
