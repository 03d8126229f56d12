"""Injected faults over the control API (issue 7 item 4): ``sim.fault_add`` / ``fault_list`` /
``fault_clear``. Rules match a method (exact or glob), a class, an object (ref, uuid or
name_label) and a host; matching calls fail with a chosen XAPI error validated against the
datamodel's errors, with probability (seeded), count and delay; Async calls fail inside
their task; ``sim.*`` and ``session.login_with_password`` are hit only when named.
"""

from __future__ import annotations

import threading
import time

import pytest
import XenAPI

from xapi_sim import scenario
from xapi_sim.dispatch import Dispatcher
from xapi_sim.errors import Failure
from xapi_sim.server import Simulator  # noqa: F401  -- registers every handler


class Api:
    """In-process calls on a world's first pool master (fast, no sockets)."""

    def __init__(self, seed=0):
        self.world = scenario.build(scenario.default(), seed=seed)
        self.d = Dispatcher(self.world)
        self.master = self.world.pools[0].master
        self.s = self.call_at(
            self.master, "session.login_with_password", "root", "xenroot", "1.0", "faults"
        )

    def call_at(self, host, method, *params):
        return self.d.dispatch(host, method, list(params))

    def __call__(self, method, *params):
        return self.call_at(self.master, method, self.s, *params)

    def err(self, method, *params):
        with pytest.raises(Failure) as e:
            self(method, *params)
        return e.value.description

    def vm(self, name):
        return self("VM.get_by_name_label", name)[0]

    def host(self, name):
        return self.world.host_by_name(name).ref

    def add(self, **rule):
        return self("sim.fault_add", rule)

    def rules(self):
        return {r["id"]: r for r in self("sim.fault_list")}


@pytest.fixture
def api():
    return Api()


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule, field",
    [
        ({"code": "NO_SUCH_ERROR"}, "code"),
        ({"code": "HOST_OFFLINE"}, "params"),  # declares [host]
        ({"code": "HOST_OFFLINE", "params": ["a", "b"]}, "params"),
        ({"code": "NO_HOSTS_AVAILABLE", "params": ["x"]}, "params"),
        ({"method": "VM.start"}, "rule"),  # neither code nor delay
        ({"params": ["x"], "delay": 1}, "params"),
        ({"code": "NO_HOSTS_AVAILABLE", "colour": "red"}, "rule"),
        ({"code": "NO_HOSTS_AVAILABLE", "probability": 1.5}, "probability"),
        ({"code": "NO_HOSTS_AVAILABLE", "probability": "often"}, "probability"),
        ({"code": "NO_HOSTS_AVAILABLE", "count": -1}, "count"),
        ({"code": "NO_HOSTS_AVAILABLE", "count": 1.5}, "count"),
        ({"code": "NO_HOSTS_AVAILABLE", "delay": -1}, "delay"),
        ({"code": "NO_HOSTS_AVAILABLE", "delay": 1e9}, "delay"),
        ({"code": "NO_HOSTS_AVAILABLE", "class": "Spaceship"}, "class"),
        ({"code": "NO_HOSTS_AVAILABLE", "host": "no-such-host"}, "host"),
        ({"code": "NO_HOSTS_AVAILABLE", "method": 7}, "method"),
        ({"code": "NO_HOSTS_AVAILABLE", "allow_param_mismatch": "yes"}, "allow_param_mismatch"),
        ({"code": 5}, "code"),
    ],
)
def test_invalid_rules_are_refused(api, rule, field):
    d = api.err("sim.fault_add", rule)
    assert d[0] == "INVALID_VALUE" and d[1] == field, d
    assert api("sim.fault_list") == []


def test_rule_must_be_a_struct(api):
    assert api.err("sim.fault_add", "VM.start")[:2] == ["INVALID_VALUE", "rule"]


def test_valid_rules_and_their_listing(api):
    a = api.add(method="VM.start", code="HOST_OFFLINE", params=["{host}"])
    b = api.add(
        code="SESSION_AUTHENTICATION_FAILED",
        params=["root", "Authentication failure"],
        allow_param_mismatch=True,
        method="pool.get_all",
    )
    c = api.add(
        code="SR_BACKEND_FAILURE_44",
        params=["", "There is insufficient space", ""],
        count="3",
        probability=0.5,
        delay=0,
    )
    d = api.add(delay=0.01, **{"class": "host"})
    assert [a, b, c, d] == ["fault-1", "fault-2", "fault-3", "fault-4"]
    rules = api.rules()
    assert rules[a]["method"] == "VM.start" and rules[a]["params"] == ["{host}"]
    assert rules[c]["count"] == 3 and rules[c]["probability"] == 0.5
    assert rules[d]["class"] == "host" and rules[d]["code"] == ""
    assert all(r["hits"] == 0 and r["seen"] == 0 for r in rules.values())


# -- matching ------------------------------------------------------------------------------


def test_exact_method_fails_with_the_chosen_error_and_leaves_state_alone(api):
    vm = api.vm("batch1")
    rid = api.add(
        method="VM.start", code="VM_BAD_POWER_STATE", params=["{self}", "halted", "running"]
    )
    gen = api.master.db.gen
    assert api.err("VM.start", vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert api("VM.get_power_state", vm) == "Halted"
    changed = [
        (c, r) for _, c, r, _ in api.master.db.changes_since(gen) if c not in ("task", "session")
    ]
    assert changed == []
    assert api("VM.get_record", vm)["power_state"] == "Halted"  # other calls unaffected
    assert api.rules()[rid]["hits"] == 1
    api("sim.fault_clear", rid)
    api("VM.start", vm, False, False)
    assert api("VM.get_power_state", vm) == "Running"


def test_count_limits_the_hits(api):
    api.add(method="pool.get_all", code="NO_HOSTS_AVAILABLE", count=2)
    for _ in range(2):
        assert api.err("pool.get_all") == ["NO_HOSTS_AVAILABLE"]
    assert len(api("pool.get_all")) == 1
    (rule,) = api.rules().values()
    assert rule["hits"] == 2


def test_glob_class_object_and_host_filters(api):
    web1, web2, db1 = api.vm("web1"), api.vm("web2"), api.vm("db1")
    xs2 = api.host("xs2")
    api.add(method="VM.get_*", code="NO_HOSTS_AVAILABLE", object="web1")
    assert api.err("VM.get_record", web1) == ["NO_HOSTS_AVAILABLE"]
    assert api.err("VM.get_power_state", web1) == ["NO_HOSTS_AVAILABLE"]
    api("VM.get_record", web2)  # another object
    api("VM.set_name_description", web1, "x")  # not a getter
    api("sim.fault_clear", "")
    # an object named by uuid, and get_by_uuid of it
    uuid = api("VM.get_uuid", db1)
    api.add(code="CANNOT_CONTACT_HOST", params=["{host}"], object=uuid)
    assert api.err("VM.get_record", db1) == ["CANNOT_CONTACT_HOST", api.master.ref]
    assert api.err("VM.get_by_uuid", uuid)[0] == "CANNOT_CONTACT_HOST"
    api("VM.get_record", web1)
    api("sim.fault_clear", "")
    # a class
    api.add(code="NO_HOSTS_AVAILABLE", **{"class": "host"})
    assert api.err("host.get_all")[0] == "NO_HOSTS_AVAILABLE"
    api("VM.get_all")
    api("sim.fault_clear", "")
    # a host: calls naming it, or naming a VM resident on it
    api.add(code="HOST_OFFLINE", params=[xs2], host="xs2")
    assert api.err("host.get_record", xs2) == ["HOST_OFFLINE", xs2]
    assert api.err("VM.clean_shutdown", web2) == ["HOST_OFFLINE", xs2]  # web2 runs on xs2
    api("VM.get_record", web1)  # web1 runs on xs1
    api("host.get_record", api.host("xs1"))
    api("sim.fault_clear", "")
    assert api("VM.get_power_state", web2) == "Running"


def test_host_filter_matches_the_receiving_endpoint(api):
    xs1 = api.world.host_by_name("xs1")
    api.add(code="NO_HOSTS_AVAILABLE", host=xs1.uuid, method="pool.get_all")
    assert api.err("pool.get_all") == ["NO_HOSTS_AVAILABLE"]  # arrives at xs1 (the master)


def test_sim_calls_and_login_are_hit_only_when_named(api):
    api.add(code="NO_HOSTS_AVAILABLE")  # every call
    assert api.err("VM.get_all") == ["NO_HOSTS_AVAILABLE"]
    api.call_at(api.master, "session.login_with_password", "root", "xenroot")
    api("sim.fault_list")
    api.add(code="NO_HOSTS_AVAILABLE", method="sim.*")  # a glob is not a name
    api("sim.fault_list")
    api.add(
        code="SESSION_AUTHENTICATION_FAILED",
        params=["root", "Authentication failure"],
        allow_param_mismatch=True,
        method="session.login_with_password",
        count=1,
    )
    with pytest.raises(Failure) as e:
        api.call_at(api.master, "session.login_with_password", "root", "xenroot")
    assert e.value.description == [
        "SESSION_AUTHENTICATION_FAILED",
        "root",
        "Authentication failure",
    ]
    api.call_at(api.master, "session.login_with_password", "root", "xenroot")
    rid = api.add(code="INTERNAL_ERROR", params=["injected"], method="sim.host_crash")
    assert api.err("sim.host_crash", api.host("xs3")) == ["INTERNAL_ERROR", "injected"]
    assert api.world.host_by_name("xs3").state == "up"
    api("sim.fault_clear", rid)


def test_the_session_check_comes_first(api):
    api.add(code="NO_HOSTS_AVAILABLE")
    with pytest.raises(Failure) as e:
        api.call_at(api.master, "VM.get_all", "OpaqueRef:bogus")
    assert e.value.description == ["SESSION_INVALID", "OpaqueRef:bogus"]
    with pytest.raises(Failure) as e:
        api.call_at(api.master, "VM.get_all", api.s, "extra")
    assert e.value.code == "MESSAGE_PARAMETER_COUNT_MISMATCH"


# -- Async, delay, probability --------------------------------------------------------------


def _wait_task(api, task, timeout=5):
    deadline = time.monotonic() + timeout
    while api("task.get_status", task) == "pending":
        assert time.monotonic() < deadline, "task still pending"
        time.sleep(0.01)
    return api("task.get_record", task)


def test_placeholders(api):
    vm, xs2 = api.vm("web1"), api.host("xs2")
    api.add(
        method="VM.pool_migrate",
        code="VM_MIGRATE_FAILED",
        params=["{self}", "{arg9}", "{arg1}", "{method} at {host}"],
    )
    assert api.err("VM.pool_migrate", vm, xs2, {}) == [
        "VM_MIGRATE_FAILED",
        vm,
        "",
        xs2,
        f"VM.pool_migrate at {api.master.ref}",
    ]


def test_async_calls_fail_inside_their_task(api):
    vm = api.vm("web1")
    api.add(
        method="VM.clean_shutdown",
        code="VM_BAD_POWER_STATE",
        params=["{self}", "running", "halted"],
    )
    task = api("Async.VM.clean_shutdown", vm)  # the call itself succeeds
    assert task.startswith("OpaqueRef:")
    rec = _wait_task(api, task)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert api("VM.get_power_state", vm) == "Running"


def test_async_only_rule(api):
    vm = api.vm("web1")
    api.add(method="Async.*", code="NO_HOSTS_AVAILABLE")
    api("VM.get_record", vm)
    rec = _wait_task(api, api("Async.VM.suspend", vm))
    assert rec["error_info"] == ["NO_HOSTS_AVAILABLE"]


def test_delay_alone_slows_the_call_and_then_runs_it(api):
    vm = api.vm("web1")
    api.add(method="VM.suspend", delay=0.3)
    t0 = time.monotonic()
    task = api("Async.VM.suspend", vm)
    assert time.monotonic() - t0 < 0.2  # the Async reply is immediate
    assert api("task.get_status", task) == "pending"
    rec = _wait_task(api, task)
    assert time.monotonic() - t0 >= 0.3
    assert rec["status"] == "success"
    assert api("VM.get_power_state", vm) == "Suspended"


def test_delay_does_not_block_other_calls(api):
    api.add(method="pool.get_all", delay=0.5)
    t = threading.Thread(target=api, args=("pool.get_all",))
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    api("VM.get_all")
    api("VM.set_name_description", api.vm("web1"), "not blocked")
    assert time.monotonic() - t0 < 0.3
    t.join(5)


def _hit_pattern(seed):
    api = Api(seed=seed)
    api.add(method="pool.get_all", code="NO_HOSTS_AVAILABLE", probability=0.3)
    out = []
    for _ in range(200):
        try:
            api("pool.get_all")
            out.append(0)
        except Failure:
            out.append(1)
    (rule,) = api.rules().values()
    assert rule["seen"] == 200 and rule["hits"] == sum(out)
    return out


def test_probability_is_seeded_by_the_world():
    a, b, c = _hit_pattern(7), _hit_pattern(7), _hit_pattern(8)
    assert a == b  # same world seed: the same calls fail
    assert a != c
    assert 30 <= sum(a) <= 90  # about 30% of 200


def test_explicit_seed(api):
    api.add(method="VM.get_all", code="NO_HOSTS_AVAILABLE", probability=0.5, seed=42)
    pattern = []
    for _ in range(50):
        try:
            api("VM.get_all")
            pattern.append(0)
        except Failure:
            pattern.append(1)
    other = Api(seed=99)
    other.add(method="VM.get_all", code="NO_HOSTS_AVAILABLE", probability=0.5, seed=42)
    again = []
    for _ in range(50):
        try:
            other("VM.get_all")
            again.append(0)
        except Failure:
            again.append(1)
    assert pattern == again


def test_clear(api):
    a = api.add(code="NO_HOSTS_AVAILABLE", method="pool.get_all")
    api.add(code="NO_HOSTS_AVAILABLE", method="VM.get_all")
    assert api.err("sim.fault_clear", "fault-99")[:2] == ["INVALID_VALUE", "id"]
    api("sim.fault_clear", a)
    assert list(api.rules()) == ["fault-2"]
    api("pool.get_all")
    api("sim.fault_clear", "")
    assert api.rules() == {}
    api("VM.get_all")


# -- over the wire -------------------------------------------------------------------------


def test_faults_over_xmlrpc_and_jsonrpc(fresh_world, wire):
    url = fresh_world.master_url()
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "faults")
    try:
        vm = s.xenapi.VM.get_by_name_label("batch1")[0]
        rid = s.xenapi_request(
            "sim.fault_add",
            ({"method": "VM.start", "code": "HOST_OFFLINE", "params": ["{host}"], "count": 2},),
        )
        with pytest.raises(XenAPI.Failure) as e:
            s.xenapi.VM.start(vm, False, False)
        master = s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0])
        assert e.value.details == ["HOST_OFFLINE", master]
        reply = wire.json(url, "VM.start", [s.handle, vm, False, False])
        assert reply["error"] == {"code": 1, "message": "HOST_OFFLINE", "data": [master]}
        (rule,) = s.xenapi_request("sim.fault_list", ())
        assert rule["id"] == rid
        assert rule["hits"] == "2"  # int64 travels as an untyped string (XML-RPC)
        s.xenapi.VM.start(vm, False, False)  # count exhausted
        assert s.xenapi.VM.get_power_state(vm) == "Running"
        err = wire.xml_err(url, "sim.fault_add", s.handle, {"code": "NOPE"})
        assert err[:2] == ["INVALID_VALUE", "code"]
    finally:
        s.xenapi.session.logout()
