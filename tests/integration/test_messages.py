"""The message class over the wire (xapi_message.ml, Dundee): create, read, filter, destroy,
and the accessors' own errors and quirks."""

from __future__ import annotations

import pytest
import XenAPI


def fails(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def test_messages_round_trip(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("web1")[0]
    vm_uuid = x.VM.get_uuid(vm)
    host_uuid = x.host.get_uuid(x.host.get_all()[0])
    before = x.message.get_all()
    m = x.message.create("TEST_ALERT", "3", "VM", vm_uuid, "a body")
    h = x.message.create("TEST_HOST", "5", "Host", host_uuid, "other")
    rec = x.message.get_record(m)
    assert (rec["name"], rec["priority"], rec["cls"], rec["obj_uuid"], rec["body"]) == (
        "TEST_ALERT",
        "3",
        "VM",
        vm_uuid,
        "a body",
    )
    assert x.message.get_by_uuid(rec["uuid"]) == m
    assert set(x.message.get_all()) == set(before) | {m, h}
    assert m in x.message.get_all_records()
    assert set(x.message.get("VM", vm_uuid, "19700101T00:00:00Z")) == {m}
    assert x.message.get("VM", vm_uuid, "29990101T00:00:00Z") == {}
    assert {m, h} <= set(x.message.get_since("19700101T00:00:00Z"))
    # the expression is ignored (xapi_message.ml get_all_records_where)
    assert m in x.message.get_all_records_where('field "name" = "nothing"')
    x.message.destroy(m)
    assert m not in x.message.get_all()


def test_message_errors(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    assert fails(x.message.create, "N", "1", "VM", "not-a-vm", "b") == [
        "UUID_INVALID",
        "VM",
        "not-a-vm",
    ]
    assert fails(x.message.get, "SR", "nope", "19700101T00:00:00Z") == ["UUID_INVALID"]
    assert fails(x.message.get_record, "OpaqueRef:nope") == [
        "HANDLE_INVALID",
        "message",
        "OpaqueRef:nope",
    ]
    assert fails(x.message.destroy, "OpaqueRef:nope") == [
        "HANDLE_INVALID",
        "message",
        "OpaqueRef:nope",
    ]
    assert fails(x.message.get_by_uuid, "nope") == ["UUID_INVALID", "message", "nope"]


def test_a_new_message_is_an_event(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    token = x.event_from(["message"], "", 0.0)["token"]
    pool_uuid = x.pool.get_uuid(x.pool.get_all()[0])
    m = x.message.create("TEST_POOL", "2", "Pool", pool_uuid, "")
    out = x.event_from(["message"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in out["events"]] == [("add", m)]
