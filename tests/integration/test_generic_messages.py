"""Every generic message of pool, host, VM and host_cpu with the real ``XenAPI`` package
(spec §5, §6, §4.4): get_all, get_all_records, get_all_records_where / get_all_where (XAPI's
expression language), get_record, get_by_uuid, get_by_name_label, get_<field> for every
field, set_<field> for every RW field, add_to_/remove_from_ for every RW map (with
MAP_DUPLICATE_KEY), add_/remove_ for every RW set, and the errors HANDLE_INVALID and
UUID_INVALID. Classes without rows answer get_all with [].

The expected messages are derived from the datamodel, so a field the schema gains is tested
without editing this file.
"""

from __future__ import annotations

import xmlrpc.client

import pytest
from session_kit import failure

from xapi_sim.datamodel import ENUMS, NULL_REF, Schema
from xapi_sim.testing import running_world

CLASSES = ["pool", "host", "VM", "host_cpu"]
SCHEMA = Schema.for_release("dundee")


def fields(cls):
    return SCHEMA.classes[cls].fields


def rw_fields(cls, kind=None):
    return [f for f in fields(cls).values() if f.rw and (kind is None or f.type.kind == kind)]


def api(x, cls):
    return getattr(x, cls)


def call(x, cls, msg, *args):
    return getattr(api(x, cls), msg)(*args)


@pytest.fixture(scope="module")
def listed(world, wire):
    return set(wire.xml(world.master_url(), "system.listMethods"))


@pytest.fixture(scope="module")
def records(xapi):
    return {cls: call(xapi, cls, "get_all_records") for cls in CLASSES}


def sample(records, cls):
    """A representative object: the first of its class in ref order."""
    ref = sorted(records[cls])[0]
    return ref, records[cls][ref]


# -- get_all / get_all_records / get_record -------------------------------------------------


def test_object_counts(world, xapi, records):
    assert len(records["pool"]) == 1
    assert sorted(r["name_label"] for r in records["host"].values()) == ["xs1", "xs2", "xs3"]
    assert len(records["host_cpu"]) == sum(
        world.host(n).hw.cpu_count for n in ("xs1", "xs2", "xs3")
    )
    names = {r["name_label"] for r in records["VM"].values()}
    assert {"web1", "web2", "db1", "batch1", "legacy1"} <= names
    assert "scratch1" not in names  # lives on standalone xs4, another database
    dom0s = [r for r in records["VM"].values() if r["is_control_domain"]]
    assert len(dom0s) == 3


@pytest.mark.parametrize("cls", CLASSES)
def test_get_all_matches_get_all_records(xapi, records, cls):
    refs = call(xapi, cls, "get_all")
    assert sorted(refs) == sorted(records[cls])
    assert len(set(refs)) == len(refs)
    assert all(r.startswith("OpaqueRef:") and r != NULL_REF for r in refs)


@pytest.mark.parametrize("cls", CLASSES)
def test_records_have_every_field(records, cls):
    for ref, rec in records[cls].items():
        assert set(rec) == set(fields(cls)), ref
        # wire order is the datamodel order
        assert list(rec) == list(fields(cls)), ref


@pytest.mark.parametrize("cls", CLASSES)
def test_get_record_equals_get_all_records_entry(xapi, records, cls):
    for ref, rec in records[cls].items():
        assert call(xapi, cls, "get_record", ref) == rec


@pytest.mark.parametrize("cls", CLASSES)
def test_get_by_uuid(xapi, records, cls):
    for ref, rec in records[cls].items():
        assert call(xapi, cls, "get_by_uuid", rec["uuid"]) == ref
    bogus = "00000000-0000-4000-8000-000000000000"
    assert failure(api(xapi, cls).get_by_uuid, bogus) == ["UUID_INVALID", cls, bogus]


@pytest.mark.parametrize("cls", ["host", "VM"])
def test_get_by_name_label(xapi, records, cls):
    by_label = {}
    for ref, rec in records[cls].items():
        by_label.setdefault(rec["name_label"], set()).add(ref)
    for label, refs in by_label.items():
        assert set(call(xapi, cls, "get_by_name_label", label)) == refs
    assert call(xapi, cls, "get_by_name_label", "no such thing") == []


@pytest.mark.parametrize("cls", ["pool", "host_cpu"])
def test_no_get_by_name_label(world, session, wire, listed, cls):
    """pool has a name but no get_by_name_label; host_cpu has no name at all."""
    assert f"{cls}.get_by_name_label" not in listed
    err = wire.xml_err(world.master_url(), f"{cls}.get_by_name_label", session.handle, "x")
    assert err == ["MESSAGE_METHOD_UNKNOWN", f"{cls}.get_by_name_label"]


@pytest.mark.parametrize("cls", CLASSES)
def test_every_generic_message_is_listed(listed, cls):
    expected = {"get_all", "get_all_records", "get_record", "get_by_uuid"}
    expected |= {f"get_{f}" for f in fields(cls)}
    expected |= {f"set_{f.name}" for f in rw_fields(cls)}
    expected |= {f"add_to_{f.name}" for f in rw_fields(cls, "map")}
    expected |= {f"remove_from_{f.name}" for f in rw_fields(cls, "map")}
    expected |= {f"add_{f.name}" for f in rw_fields(cls, "set")}
    expected |= {f"remove_{f.name}" for f in rw_fields(cls, "set")}
    missing = {m for m in expected if f"{cls}.{m}" not in listed}
    assert not missing


# -- get_<field> for every field ----------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_every_getter(xapi, records, cls):
    refs = sorted(records[cls])
    for ref in (refs[0], refs[-1]):
        rec = records[cls][ref]
        for f in fields(cls):
            assert call(xapi, cls, f"get_{f}", ref) == rec[f], f"{cls}.get_{f}"


def test_getter_values_have_wire_types(xapi, records):
    """int64 arrive as str over XML-RPC, floats as float, datetimes as DateTime with Z."""
    vm = next(r for r, rec in records["VM"].items() if rec["name_label"] == "web1")
    assert xapi.VM.get_memory_static_max(vm) == str(4 << 30)
    assert xapi.VM.get_VCPUs_max(vm) == "2"
    assert xapi.VM.get_power_state(vm) == "Running"
    assert xapi.VM.get_HVM_shadow_multiplier(vm) == 1.0
    assert xapi.VM.get_is_a_template(vm) is False
    ts = xapi.VM.get_snapshot_time(vm)
    assert isinstance(ts, xmlrpc.client.DateTime) and ts.value == "19700101T00:00:00Z"
    cpu, crec = sample(records, "host_cpu")
    assert isinstance(xapi.host_cpu.get_number(cpu), str)
    assert isinstance(xapi.host_cpu.get_utilisation(cpu), float)
    host, _ = sample(records, "host")
    assert xapi.host.get_API_version_major(host) == "2"


@pytest.mark.parametrize("cls", CLASSES)
def test_getter_on_a_bad_ref_is_handle_invalid(xapi, cls):
    for bad in (NULL_REF, "OpaqueRef:00000000-0000-4000-8000-000000000000", "junk"):
        assert failure(api(xapi, cls).get_record, bad) == ["HANDLE_INVALID", cls, bad]
        assert failure(api(xapi, cls).get_uuid, bad) == ["HANDLE_INVALID", cls, bad]


def test_ref_of_another_class_is_handle_invalid(xapi, records):
    host, _ = sample(records, "host")
    assert failure(xapi.VM.get_record, host) == ["HANDLE_INVALID", "VM", host]
    vm, _ = sample(records, "VM")
    assert failure(xapi.host_cpu.get_flags, vm) == ["HANDLE_INVALID", "host_cpu", vm]
    assert failure(xapi.pool.get_master, vm) == ["HANDLE_INVALID", "pool", vm]


def test_no_setter_for_read_only_fields(world, session, wire, records):
    vm, _ = sample(records, "VM")
    for method in (
        "VM.set_power_state",
        "VM.set_uuid",
        "host_cpu.set_speed",
        "host.set_enabled",
        "pool.set_master",
    ):
        err = wire.xml_err(world.master_url(), method, session.handle, vm, "x")
        assert err == ["MESSAGE_METHOD_UNKNOWN", method]


def test_unpopulated_classes_answer_empty(world, xapi):
    """Classes with get_all but no rows answer [] / {} (e.g. SR in this scenario)."""
    db = world.world.pools[0].db
    empty = [
        c for c, cs in db.schema.classes.items() if "get_all" in cs.messages and db.count(c) == 0
    ]
    assert empty, "the default scenario should leave some classes empty"
    for c in empty:
        assert call(xapi, c, "get_all") == [], c
        assert call(xapi, c, "get_all_records") == {}, c
        assert call(xapi, c, "get_all_records_where", "true") == {}, c
        assert call(xapi, c, "get_all_where", "true") == [], c
    if db.count("SR") == 0:
        assert xapi.SR.get_all() == []
        # an unknown field is never looked up when there is no row
        assert xapi.SR.get_all_records_where('field "no_such"="x"') == {}


# -- get_all_records_where / get_all_where -------------------------------------------------


def where(xapi, cls, expr):
    recs = call(xapi, cls, "get_all_records_where", expr)
    refs = call(xapi, cls, "get_all_where", expr)
    assert sorted(refs) == sorted(recs)
    return recs


def names(recs):
    return sorted(r["name_label"] for r in recs.values())


@pytest.mark.parametrize("cls", CLASSES)
def test_where_true_and_false(xapi, records, cls):
    assert where(xapi, cls, "true") == records[cls]
    assert where(xapi, cls, "false") == {}
    assert where(xapi, cls, "not false") == records[cls]
    assert where(xapi, cls, "(true)") == records[cls]


def test_where_on_vm(xapi, records):
    vms = records["VM"]
    assert names(where(xapi, "VM", 'field "name__label"="web1"')) == ["web1"]
    assert names(
        where(xapi, "VM", 'field "name__label" = "batch1" or field "name__label"="db1"')
    ) == ["batch1", "db1"]
    running = {r for r, v in vms.items() if v["power_state"] == "Running"}
    assert set(where(xapi, "VM", 'field "power_state"="Running"')) == running
    # enums compare with the datamodel spelling only
    assert where(xapi, "VM", 'field "power_state"="running"') == {}
    templates = {r for r, v in vms.items() if v["is_a_template"]}
    assert templates and set(where(xapi, "VM", 'field "is_a_template"="true"')) == templates
    # ints compare as decimal strings; namespaced columns use "__"
    four_gib = {r for r, v in vms.items() if v["memory_static_max"] == str(4 << 30)}
    assert set(where(xapi, "VM", f'field "memory__static_max"="{4 << 30}"')) == four_gib
    assert names(where(xapi, "VM", 'field "VCPUs__max"="4"')) == ["db1"]
    assert names(
        where(
            xapi,
            "VM",
            'field "HVM__boot_policy"="BIOS order" and '
            'field "is_a_template"="false" and '
            'field "power_state"="Halted"',
        )
    ) == ["batch1"]
    # refs
    web1 = next(r for r, v in vms.items() if v["name_label"] == "web1")
    host = vms[web1]["resident_on"]
    assert names(
        where(xapi, "VM", f'field "resident_on"="{host}" and field "is_control_domain"="false"')
    ) == ["web1"]
    assert list(where(xapi, "VM", f'field "_ref"="{web1}"')) == [web1]
    assert list(
        where(xapi, "VM", f'field "uuid"="{vms[web1]["uuid"]}" or field "name__label"="nothing"')
    ) == [web1]
    # two literals, two fields
    assert where(xapi, "VM", '"a"="a"') == vms
    assert where(xapi, "VM", '"a"="b"') == {}
    assert where(xapi, "VM", 'field "name__label"=field "name__label"') == vms


def test_where_not_has_the_lowest_precedence(xapi, records):
    """``%right LNOT`` is declared before ``%left LAND LOR`` in db_filter_parse.mly, so
    ``not a and b`` is ``not (a and b)``."""
    vms = records["VM"]
    expr = 'not field "is_a_template"="true" and field "is_control_domain"="true"'
    assert where(xapi, "VM", expr) == vms  # nothing is both
    expr = '(not field "is_a_template"="true") and field "is_control_domain"="true"'
    assert set(where(xapi, "VM", expr)) == {r for r, v in vms.items() if v["is_control_domain"]}
    # and/or are left-associative with equal precedence
    expr = 'field "name__label"="web1" or field "name__label"="web2" and false'
    assert where(xapi, "VM", expr) == {}
    # keywords need no blanks around them (ocamllex has no identifier rule)
    assert where(xapi, "VM", "notfalse") == vms
    assert names(where(xapi, "VM", 'field"name__label"="web2"')) == ["web2"]


def test_where_on_host_pool_host_cpu(xapi, records):
    hosts = records["host"]
    assert names(where(xapi, "host", 'field "hostname"="xs2"')) == ["xs2"]
    assert names(where(xapi, "host", 'field "enabled"="true"')) == ["xs1", "xs2", "xs3"]
    assert names(where(xapi, "host", 'field "API_version__major"="2"')) == ["xs1", "xs2", "xs3"]
    assert names(where(xapi, "pool", 'field "name__label"="pool-a"')) == ["pool-a"]
    xs3 = next(r for r, h in hosts.items() if h["name_label"] == "xs3")
    mine = where(xapi, "host_cpu", f'field "host"="{xs3}"')
    assert sorted(mine) == sorted(hosts[xs3]["host_CPUs"])
    zeros = where(xapi, "host_cpu", 'field "number"="0"')
    assert sorted(c["host"] for c in zeros.values()) == sorted(hosts)


@pytest.mark.parametrize(
    "expr,text",
    [
        ('field "name__label"=', "Parsing.Parse_error"),
        ("true false", "Parsing.Parse_error"),
        ('"a"', "Parsing.Parse_error"),
        ("(true", "Parsing.Parse_error"),
        ("", "Parsing.Parse_error"),
        ("= @", "Parsing.Parse_error"),
        ('field "name__label"="unterminated', 'Failure("lexing: empty token")'),
        ("andy", "Parsing.Parse_error"),  # "and" is a token: the parser fails first
        ("xyz", 'Failure("lexing: empty token")'),
        ("True", 'Failure("lexing: empty token")'),
        ("field 'x'='y'", 'Failure("lexing: empty token")'),
    ],
)
def test_where_bad_expression_is_invalid_value(xapi, expr, text):
    for msg in ("get_all_records_where", "get_all_where"):
        assert failure(getattr(xapi.VM, msg), expr) == ["INVALID_VALUE", expr, text]


@pytest.mark.parametrize("column", ["name_label", "memory_static_max", "nonexistent"])
def test_where_unknown_column_is_internal_error(xapi, column):
    """Db_exn.DBCache_NotFound ("missing field", column, "") -> INTERNAL_ERROR (exnHelper)."""
    assert failure(xapi.VM.get_all_records_where, f'field "{column}"="x"') == [
        "INTERNAL_ERROR",
        "missing field",
        column,
        "",
    ]


# -- setters, map and set edits (a world of their own) -------------------------------------


@pytest.fixture(scope="module")
def mworld():
    with running_world() as w:
        yield w


@pytest.fixture(scope="module")
def mx(mworld, login):
    s = login(mworld.master_url())
    yield s.xenapi
    s.xenapi.session.logout()


@pytest.fixture(scope="module")
def targets(mx):
    """The object each class's edits go to: the pool, member xs3, halted VM batch1, a CPU."""
    return {
        "pool": mx.pool.get_all()[0],
        "host": mx.host.get_by_name_label("xs3")[0],
        "VM": mx.VM.get_by_name_label("batch1")[0],
        "host_cpu": sorted(mx.host_cpu.get_all())[0],
    }


def new_value(mx, cls, f, current):
    """(value to send, value expected back through XenAPI) for RW field ``f``."""
    k = f.type.kind
    if k == "string":
        v = f"set {cls}.{f.name} <&>\"' \u00e9\u4e2d"
        return v, v
    if k == "int":
        return str(1 << 40), str(1 << 40)  # beyond 32 bits: Python clients send str
    if k == "bool":
        return (not current), (not current)
    if k == "enum":
        v = next(e for e in ENUMS[f.type.name] if e != current)
        return v.upper(), v  # enums are matched case-insensitively
    if k == "ref":
        others = getattr(mx, f.type.name).get_all() if f.type.name in ("host", "pool") else []
        v = others[-1] if others else NULL_REF
        return v, v
    if k == "set":
        return ["b", "a", "c"], ["b", "a", "c"]
    if k == "map":
        key = "start" if f.type.key.kind == "enum" else "k1"
        return {key: "v1", **({} if f.type.key.kind == "enum" else {"k2": "<v2>"})}, {
            key: "v1",
            **({} if f.type.key.kind == "enum" else {"k2": "<v2>"}),
        }
    raise AssertionError(f"no test value for {f}")


@pytest.mark.parametrize("cls", CLASSES)
def test_every_rw_setter(mx, targets, cls):
    ref = targets[cls]
    for f in rw_fields(cls):
        before = call(mx, cls, f"get_{f.name}", ref)
        send, expect = new_value(mx, cls, f, before)
        assert call(mx, cls, f"set_{f.name}", ref, send) == "", f"{cls}.set_{f.name}"
        assert call(mx, cls, f"get_{f.name}", ref) == expect, f"{cls}.set_{f.name}"
        assert call(mx, cls, "get_record", ref)[f.name] == expect
    if cls == "VM":  # set_is_a_template flipped it: put batch1 back as a VM
        mx.VM.set_is_a_template(ref, False)


def test_setters_accept_int_types(mx, targets):
    vm = targets["VM"]
    for v, want in ((5, "5"), ("6", "6"), (str(-(1 << 62)), str(-(1 << 62)))):
        mx.VM.set_user_version(vm, v)
        assert mx.VM.get_user_version(vm) == want


@pytest.mark.parametrize("cls", CLASSES)
def test_setter_on_a_bad_ref(mx, cls):
    f = rw_fields(cls, "map")[0]
    bad = "OpaqueRef:00000000-0000-4000-8000-000000000000"
    assert failure(getattr(api(mx, cls), f"set_{f.name}"), bad, {}) == ["HANDLE_INVALID", cls, bad]
    assert failure(getattr(api(mx, cls), f"add_to_{f.name}"), bad, "k", "v") == [
        "HANDLE_INVALID",
        cls,
        bad,
    ]


DB_COLUMN = {"HVM_boot_params": "HVM__boot_params", "VCPUs_params": "VCPUs__params"}


@pytest.mark.parametrize("cls", CLASSES)
def test_every_rw_map_add_to_remove_from(mx, targets, cls):
    ref = targets[cls]
    for f in rw_fields(cls, "map"):
        get = getattr(api(mx, cls), f"get_{f.name}")
        add_to = getattr(api(mx, cls), f"add_to_{f.name}")
        remove_from = getattr(api(mx, cls), f"remove_from_{f.name}")
        enum_key = f.type.key.kind == "enum"
        key = "shutdown" if enum_key else "sim-test-key"
        remove_from(ref, key)  # absent key: a no-op
        before = get(ref)
        assert key not in before
        assert add_to(ref, key, "value <1>") == ""
        assert get(ref) == {**before, key: "value <1>"}
        # a second add of the same key: MAP_DUPLICATE_KEY [table, DB column, ref, key]
        # (db_cache_impl.ml process_structured_field_locked), value unchanged
        err = failure(add_to, ref, key.upper() if enum_key else key, "other")
        assert err == ["MAP_DUPLICATE_KEY", cls, DB_COLUMN.get(f.name, f.name), ref, key], f.name
        assert get(ref)[key] == "value <1>"
        assert remove_from(ref, key) == ""
        assert get(ref) == before
        assert remove_from(ref, key) == ""  # removing again is a no-op
        assert get(ref) == before


@pytest.mark.parametrize("cls", ["pool", "host", "VM"])
def test_every_rw_set_add_remove(mx, targets, cls):
    ref = targets[cls]
    sets = rw_fields(cls, "set")
    assert sets
    for f in sets:
        get = getattr(api(mx, cls), f"get_{f.name}")
        add = getattr(api(mx, cls), f"add_{f.name}")
        remove = getattr(api(mx, cls), f"remove_{f.name}")
        before = get(ref)
        assert add(ref, "x-tag") == ""
        assert add(ref, "x-tag") == ""  # idempotent
        assert get(ref) == before + ["x-tag"]
        assert add(ref, "y-tag") == ""
        assert get(ref) == before + ["x-tag", "y-tag"]
        assert remove(ref, "x-tag") == ""
        assert remove(ref, "x-tag") == ""  # absent: a no-op
        assert get(ref) == before + ["y-tag"]
        remove(ref, "y-tag")
        assert get(ref) == before


def test_edits_do_not_touch_other_objects(mx, targets):
    others = [r for r in mx.VM.get_all() if r != targets["VM"]]
    before = {r: mx.VM.get_other_config(r) for r in others}
    mx.VM.add_to_other_config(targets["VM"], "only-me", "1")
    assert {r: mx.VM.get_other_config(r) for r in others} == before
    mx.VM.remove_from_other_config(targets["VM"], "only-me")


def test_set_name_label_updates_get_by_name_label(mx, targets):
    vm = targets["VM"]
    mx.VM.set_name_label(vm, "renamed-batch")
    assert mx.VM.get_by_name_label("renamed-batch") == [vm]
    assert vm not in mx.VM.get_by_name_label("batch1")
    mx.VM.set_name_label(vm, "batch1")
    assert vm in mx.VM.get_by_name_label("batch1")
