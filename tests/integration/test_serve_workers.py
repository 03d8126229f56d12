"""``xapi-sim serve --workers 2`` (issue 16 item 7): the pools of one world in two processes
with one ready file and one control API; cross-pool migration between the children over the
wire; SIGTERM stops every child; a child that dies stops the others and the parent exits 1.
Real clients (the ``XenAPI`` package) against the URLs of the one ready file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xmlrpc.client

import pytest
import XenAPI
from test_serve_cli import KEYS  # the ready file's host keys: the same as one process

# four pools: pa (2 hosts, 2 VMs) in one child; pb, c1 and d1 in the other (multiproc.split)
SCENARIO = """
[[host]]
name_label = "a1"
[[host]]
name_label = "a2"
[[host]]
name_label = "b1"
[[host]]
name_label = "c1"
[[host]]
name_label = "d1"
[[pool]]
name_label = "pa"
master = "a1"
members = ["a2"]
[[pool]]
name_label = "pb"
master = "b1"
[[vm]]
name_label = "mover"
power_state = "Running"
host = "a1"
memory = "2GiB"
[[vm]]
name_label = "stay"
host = "a1"
[[vm]]
name_label = "bvm"
host = "b1"
"""


class Workers:
    """``serve --workers 2`` in a subprocess."""

    def __init__(self, tmp, *extra, seed="7"):
        self.scn = tmp / "world.toml"
        self.scn.write_text(SCENARIO)
        self.ready = tmp / f"ready-{seed}.json"
        cmd = [sys.executable, "-m", "xapi_sim", "serve", "--workers", "2", "--port", "0"]
        cmd += ["--scenario", str(self.scn), "--ready-file", str(self.ready), "--seed", seed]
        cmd += ["--auth-delay", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                out, err = self.proc.communicate()
                pytest.fail(f"not ready (exit {self.proc.returncode}): {out}\n{err}")
            time.sleep(0.02)
        self.desc = json.loads(self.ready.read_text())
        self.hosts = {h["name_label"]: h for h in self.desc["hosts"]}
        self.pids = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the table is printed before the ready file
            m = re.match(r"worker (\d+): pid (\d+), hosts (.*)", line)
            if m:
                self.pids.append(int(m.group(2)))
            if line.startswith("login:"):
                break
        return self

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout=15):
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot")
    return s


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = Workers(tmp_path_factory.mktemp("workers")).wait_ready()
    yield w
    code, out, err = w.stop()
    assert code == 0, err
    assert "xapi-sim: stopped" in out
    assert wait_gone(w.pids) == []  # SIGTERM to the parent stopped every child


def test_one_ready_file_for_the_whole_world(world):
    assert [h["name_label"] for h in world.desc["hosts"]] == ["a1", "a2", "b1", "c1", "d1"]
    for h in world.desc["hosts"]:
        assert set(h) == KEYS
    h = world.hosts
    assert (h["a1"]["pool"], h["a1"]["master"], h["a2"]["master"]) == ("pa", True, False)
    assert (h["b1"]["pool"], h["c1"]["pool"], h["c1"]["master"]) == ("pb", "", True)
    assert len(world.pids) == 2 and all(alive(p) for p in world.pids)
    # port 0: each child took a port of its own; a pool's hosts share their child's
    port = {n: v["http_url"].rsplit(":", 1)[1] for n, v in h.items()}
    assert port["a1"] == port["a2"] != port["b1"] == port["c1"] == port["d1"]
    assert len({v["address"] for v in h.values()}) == 5


def test_log_in_to_hosts_of_both_children(world):
    a = login(world.hosts["a1"]["url"]).xenapi
    b = login(world.hosts["b1"]["url"]).xenapi
    assert a.pool.get_name_label(a.pool.get_all()[0]) == "pa"
    assert b.pool.get_name_label(b.pool.get_all()[0]) == "pb"
    assert sorted(a.host.get_name_label(x) for x in a.host.get_all()) == ["a1", "a2"]
    # no object of the world shares a uuid or a ref with another (distinct child seeds)
    refs, uuids = [], []
    for name in ("a1", "b1", "c1", "d1"):
        x = login(world.hosts[name]["url"]).xenapi
        for cls in ("host", "VM", "SR", "network", "PIF", "VDI", "pool", "host_cpu"):
            for ref, rec in getattr(x, cls).get_all_records().items():
                refs.append(ref)
                uuids.append(rec["uuid"])
    assert len(set(refs)) == len(refs) and len(set(uuids)) == len(uuids)


def test_cross_pool_migration_between_children(world):
    src = login(world.hosts["a1"]["url"]).xenapi
    dst = login(world.hosts["b1"]["url"]).xenapi
    vm = src.VM.get_by_name_label("mover")[0]
    b1 = dst.host.get_by_name_label("b1")[0]
    dest = dst.host.migrate_receive(b1, dst.network.get_all()[0], {})
    src.VM.assert_can_migrate(vm, dest, True, {}, {}, {})
    new = src.VM.migrate_send(vm, dest, True, {}, {}, {})
    assert src.VM.get_by_name_label("mover") == []
    assert dst.VM.get_by_name_label("mover") == [new]
    assert dst.VM.get_power_state(new) == "Running"
    assert dst.VM.get_resident_on(new) == b1


def test_pool_join_to_a_master_in_another_child_is_refused(world):
    c = login(world.hosts["c1"]["url"]).xenapi
    with pytest.raises(XenAPI.Failure) as e:
        c.pool.join(world.hosts["a1"]["address"], "root", "xenroot")
    assert e.value.details == ["JOINING_HOST_CONNECTION_FAILED"]
    assert c.pool.get_master(c.pool.get_all()[0]) == c.host.get_by_name_label("c1")[0]


def _sim(session, name, *args):
    return session.xenapi_request(name, args)


def test_control_calls_reach_every_child(world):
    a = login(world.hosts["a1"]["url"])  # child 0's endpoint
    pools = _sim(a, "sim.world")["pools"]
    assert [(p["name_label"], [h["name_label"] for h in p["hosts"]]) for p in pools] == [
        ("pa", ["a1", "a2"]),
        ("", ["c1"]),
        ("", ["d1"]),
        ("pb", ["b1"]),
    ]
    ref = {h["name_label"]: h["ref"] for p in pools for h in p["hosts"]}
    b = login(world.hosts["b1"]["url"])
    bx = b.xenapi
    assert bx.host.get_by_name_label("b1") == [ref["b1"]]
    # hardware staged in child 1 from child 0's endpoint, applied at the next start
    _sim(a, "sim.host_set_hardware", ref["b1"], {"memory": "32GiB"})
    _sim(a, "sim.host_crash", ref["b1"])
    states = {
        h["name_label"]: h["state"] for p in _sim(a, "sim.world")["pools"] for h in p["hosts"]
    }
    assert states == {"a1": "up", "a2": "up", "b1": "crashed", "c1": "up", "d1": "up"}
    with pytest.raises(XenAPI.Failure) as e:
        _sim(a, "sim.host_crash", ref["b1"])  # the owning child's answer comes back
    assert e.value.details == ["HOST_OFFLINE", ref["b1"]]
    _sim(a, "sim.host_power_on", ref["b1"])
    bx = login(world.hosts["b1"]["url"]).xenapi
    metrics = bx.host.get_metrics(ref["b1"])
    assert int(bx.host_metrics.get_memory_total(metrics)) == 32 << 30
    # host_install on a standalone host of child 1, asked of child 0 with child 1's session
    c = login(world.hosts["c1"]["url"]).xenapi
    c.host.disable(ref["c1"])
    _sim(b, "sim.host_install", ref["c1"], "ely")
    c = login(world.hosts["c1"]["url"]).xenapi
    assert c.host.get_software_version(ref["c1"])["product_version"] == "7.1.0"
    # a session of child 1 is good at child 0's endpoint, for a target in child 0
    _sim(b, "sim.host_set_hardware", ref["a2"], {"hidden_features": []})
    with pytest.raises(XenAPI.Failure) as e:
        _sim(a, "sim.host_crash", "OpaqueRef:nope")
    assert e.value.details == ["HANDLE_INVALID", "host", "OpaqueRef:nope"]
    bad = xmlrpc.client.ServerProxy(world.hosts["a1"]["url"]).sim.world("OpaqueRef:nobody")
    assert bad["ErrorDescription"] == ["SESSION_INVALID", "OpaqueRef:nobody"]
    # a VM of child 1 named from child 0
    bvm = bx.VM.get_by_name_label("bvm")[0]
    _sim(a, "sim.vm_set_last_boot_CPU_flags", bvm, {"vendor": "GenuineIntel"})
    assert bx.VM.get_last_boot_CPU_flags(bvm) == {"vendor": "GenuineIntel"}
    stats = _sim(a, "sim.auth_stats")
    assert sorted(v["name_label"] for v in stats.values()) == ["", "", "pa", "pb"]
    with pytest.raises(XenAPI.Failure) as e:
        _sim(a, "sim.add_host", {"name_label": "d1"})  # a name of the other child
    assert e.value.details[:2] == ["INVALID_VALUE", "name_label"]


def test_a_fault_rule_holds_in_every_child(world):
    a = login(world.hosts["a1"]["url"])
    d = login(world.hosts["d1"]["url"])
    rid = _sim(
        a,
        "sim.fault_add",
        {"method": "host.get_name_label", "code": "HOST_OFFLINE", "params": ["{host}"]},
    )
    with pytest.raises(XenAPI.Failure) as e:
        d.xenapi.host.get_name_label(d.xenapi.host.get_all()[0])
    assert e.value.details[0] == "HOST_OFFLINE"
    rules = _sim(d, "sim.fault_list")
    assert [(r["id"], r["hits"]) for r in rules] == [(rid, "1")]
    _sim(d, "sim.fault_clear", rid)
    assert _sim(a, "sim.fault_list") == []
    assert d.xenapi.host.get_name_label(d.xenapi.host.get_all()[0]) == "d1"
    with pytest.raises(XenAPI.Failure) as e:
        _sim(a, "sim.fault_clear", rid)
    assert e.value.details[:2] == ["INVALID_VALUE", "id"]


def test_a_dead_child_stops_the_world(tmp_path, world):
    w = Workers(tmp_path).wait_ready()
    # the same seed and N: the same world (uuids from the same per-child streams)
    same = [(h["uuid"], h["pool_uuid"], h["address"]) for h in w.desc["hosts"]]
    assert same == [(h["uuid"], h["pool_uuid"], h["address"]) for h in world.desc["hosts"]]
    os.kill(w.pids[1], signal.SIGKILL)
    code = w.proc.wait(20)  # the parent notices on its own
    out, err = w.proc.communicate()
    assert code == 1
    assert f"worker 1 (pid {w.pids[1]}, hosts b1, c1, d1) exited with killed by signal 9" in err
    assert wait_gone(w.pids) == []


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--state-dir", "{tmp}/state"], "--state-dir is served by one process only"),
        (["--workers", "5"], "--workers 5: the world has only 4 pool(s)"),
        (["--workers", "0"], "expected a number of processes from 1 to 64"),
    ],
)
def test_refusals(tmp_path, extra, words):
    (tmp_path / "w.toml").write_text(SCENARIO)
    cmd = [sys.executable, "-m", "xapi_sim", "serve", "--workers", "2", "--port", "0"]
    cmd += ["--scenario", str(tmp_path / "w.toml")]
    cmd += [x.format(tmp=tmp_path) for x in extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert words in p.stderr


def test_concurrent_control_calls_across_children(world):
    """Many threads adding fault rules and reading the world at endpoints of both
    children at once: every id distinct, every rule listed by either child, once."""
    import threading

    ids, errors = [], []
    lock = threading.Lock()

    def work(name):
        try:
            s = login(world.hosts[name]["url"])
            for _ in range(5):
                rid = _sim(s, "sim.fault_add", {"method": "VM.clone", "delay": 0.001})
                assert len(_sim(s, "sim.world")["pools"]) == 4
                with lock:
                    ids.append(rid)
        except Exception as e:  # noqa: BLE001 -- reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a1", "d1", "c1", "b1") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(ids) == 40 == len(set(ids))
    a, b = login(world.hosts["a1"]["url"]), login(world.hosts["c1"]["url"])
    assert sorted(r["id"] for r in _sim(a, "sim.fault_list")) == sorted(ids)
    assert sorted(r["id"] for r in _sim(b, "sim.fault_list")) == sorted(ids)
    _sim(b, "sim.fault_clear", "")
    assert _sim(a, "sim.fault_list") == []
