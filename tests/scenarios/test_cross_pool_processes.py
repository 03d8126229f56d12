"""Issue 5: a VM migrates between two separate xapi-sim processes, the source calling the
destination over the wire (XML-RPC with the dest session, PUT /import_metadata)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import XenAPI

from xapi_sim.levelling import featureset as fs

SRC = """
[[host]]
name_label = "src1"
cpu = "Haswell"
[[host]]
name_label = "src2"
cpu = "IvyBridge"
[[pool]]
name_label = "source"
master = "src1"
members = ["src2"]
[[vm]]
name_label = "mover"
power_state = "Running"
host = "src1"
memory = "2GiB"
[[vm]]
name_label = "parked"
power_state = "Halted"
host = "src1"
"""

DST = """
[[host]]
name_label = "dst1"
cpu = "Broadwell"
[[host]]
name_label = "dst2"
cpu = "SandyBridge"
[[pool]]
name_label = "destination"
master = "dst1"
members = ["dst2"]
"""


@pytest.fixture
def two_processes(tmp_path):
    procs, hosts = [], {}
    for name, text, bind in (("src", SRC, "127.0.1.1"), ("dst", DST, "127.0.2.1")):
        scn = tmp_path / f"{name}.toml"
        scn.write_text(text)
        ready = tmp_path / f"{name}.json"
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xapi_sim",
                "serve",
                "--port",
                "0",
                "--bind",
                bind,
                "--scenario",
                str(scn),
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(p)
        deadline = time.time() + 30
        while not ready.exists():
            if p.poll() is not None or time.time() > deadline:
                pytest.fail(p.stdout.read().decode())
            time.sleep(0.02)
        hosts.update({h["name_label"]: h for h in json.loads(ready.read_text())["hosts"]})
    yield hosts
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


def login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot")
    return s.xenapi


def test_migrate_between_processes(two_processes):
    hosts = two_processes
    src, dst = login(hosts["src1"]["url"]), login(hosts["dst1"]["url"])
    vm = src.VM.get_by_name_label("mover")[0]
    flags = src.VM.get_last_boot_CPU_flags(vm)
    d2 = dst.host.get_by_name_label("dst2")[0]
    d1 = dst.host.get_by_name_label("dst1")[0]
    net = dst.network.get_all()[0]
    # the destination pool's level is below the VM's flags, but host dst1 has every bit
    level = dst.pool.get_cpu_info(dst.pool.get_all()[0])["features_hvm"]
    assert not fs.is_subset(fs.parse(flags["features"]), fs.parse(level))
    # a lesser destination host is refused by the source's check of that *host*
    dest2 = dst.host.migrate_receive(d2, net, {})
    with pytest.raises(XenAPI.Failure) as e:
        src.VM.assert_can_migrate(vm, dest2, True, {}, {}, {})
    assert e.value.details == [
        "VM_INCOMPATIBLE_WITH_THIS_HOST",
        vm,
        d2,
        "VM last booted on a CPU with features this host's CPU does not have.",
    ]
    dest = dst.host.migrate_receive(d1, net, {})
    src.VM.assert_can_migrate(vm, dest, True, {}, {}, {})
    new = src.VM.migrate_send(vm, dest, True, {}, {}, {})
    assert src.VM.get_by_name_label("mover") == []
    assert dst.VM.get_by_name_label("mover") == [new]
    rec = dst.VM.get_record(new)
    assert rec["power_state"] == "Running" and rec["resident_on"] == d1
    assert rec["last_boot_CPU_flags"] == flags  # same length and vendor: unchanged
    assert dst.VM.get_metrics(new) in dst.VM_metrics.get_all()
    # a Halted VM is never CPU-checked and moves too
    parked = src.VM.get_by_name_label("parked")[0]
    dest = dst.host.migrate_receive(d2, net, {})
    src.VM.migrate_send(parked, dest, False, {}, {}, {})
    assert dst.VM.get_power_state(dst.VM.get_by_name_label("parked")[0]) == "Halted"


def test_remote_errors_come_back(two_processes):
    hosts = two_processes
    src, dst = login(hosts["src1"]["url"]), login(hosts["dst1"]["url"])
    vm = src.VM.get_by_name_label("mover")[0]
    d1 = dst.host.get_by_name_label("dst1")[0]
    dest = dst.host.migrate_receive(d1, dst.network.get_all()[0], {})
    dst.host.disable(d1)
    with pytest.raises(XenAPI.Failure) as e:
        src.VM.migrate_send(vm, dest, True, {}, {}, {})
    assert e.value.details == ["HOST_DISABLED", d1]
    dst.host.enable(d1)
    bad = dict(dest, host="OpaqueRef:nope")
    with pytest.raises(XenAPI.Failure) as e:
        src.VM.migrate_send(vm, bad, True, {}, {}, {})
    assert e.value.details == ["HANDLE_INVALID", "host", "OpaqueRef:nope"]
    gone = dict(dest, master="http://127.0.0.1:9/")
    with pytest.raises(XenAPI.Failure) as e:
        src.VM.migrate_send(vm, gone, True, {}, {}, {})
    assert e.value.details == ["VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED"]
    assert src.VM.get_by_name_label("mover") == [vm]  # nothing moved


def test_remote_destination_must_be_loopback_by_default():
    """A dest map is client input: the server does not connect off this machine unless
    started with --allow-remote-migration (the address here is never contacted)."""
    from xapi_sim.testing import running_world

    with running_world(seed=3) as w:
        x = login(w.master_url())
        vm = x.VM.get_by_name_label("web1")[0]
        dest = {
            "master": "http://10.255.255.1/",
            "host": "OpaqueRef:x",
            "session_id": "OpaqueRef:y",
            "SM": "",
            "xenops": "",
        }
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.assert_can_migrate(vm, dest, True, {}, {}, {})
        assert e.value.details == ["VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED"]
