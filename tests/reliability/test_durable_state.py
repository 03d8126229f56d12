"""Durable state (issue 7): kill -9 at random moments of a write load loses nothing acknowledged."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import XenAPI


def serve(state_dir, tmp_path, *extra):
    ready = tmp_path / "ready.json"
    if ready.exists():
        ready.unlink()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xapi_sim",
            "serve",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
            "--ready-file",
            str(ready),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while not ready.exists():
        if p.poll() is not None or time.time() > deadline:
            p.kill()
            pytest.fail(p.stdout.read().decode())
        time.sleep(0.02)
    hosts = {h["name_label"]: h for h in json.loads(ready.read_text())["hosts"]}
    return p, hosts


def login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot")
    return s


def test_kill_9_during_writes_loses_nothing_acknowledged(tmp_path):
    state = tmp_path / "state"
    rng = random.Random(1234)
    acked = {}  # key -> value acknowledged by the server
    inflight = {}  # a write that may or may not have landed when the server died
    p, hosts = serve(state, tmp_path, "--seed", "9")
    first_uuids = None
    try:
        for round_ in range(3):
            x = login(hosts["xs1"]["url"]).xenapi
            vm = x.VM.get_by_name_label("web1")[0]
            pool = x.pool.get_all()[0]
            uuids = {r["uuid"]: ref for ref, r in x.VM.get_all_records().items()}
            if first_uuids is None:
                first_uuids = uuids
            assert uuids == first_uuids  # same UUIDs and refs after every restart
            oc = x.VM.get_other_config(vm)
            for k, v in acked.items():
                if k != "__desc":
                    assert oc.get(k) == v, (round_, k)
            stop = threading.Event()

            def writer(x, vm, pool, round_, stop):
                i = 0
                try:
                    while not stop.is_set():
                        k, v = f"r{round_}k{i}", str(i)
                        x.VM.add_to_other_config(vm, k, v)
                        acked[k] = v
                        inflight["__desc"] = f"round {round_} write {i}"
                        x.pool.set_name_description(pool, inflight["__desc"])
                        acked["__desc"] = inflight["__desc"]
                        i += 1
                except Exception:  # noqa: BLE001 -- the server died under us
                    return

            t = threading.Thread(target=writer, args=(x, vm, pool, round_, stop))
            t.start()
            time.sleep(rng.uniform(0.2, 0.8))
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            stop.set()
            t.join(10)
            assert len(acked) > 2
            p, hosts = serve(state, tmp_path)
            x = login(hosts["xs1"]["url"]).xenapi
            # the last acknowledged write, or the one in flight when the server died
            assert x.pool.get_name_description(pool) in (acked["__desc"], inflight["__desc"])
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0


def test_restart_keeps_topology_and_flags(tmp_path):
    state = tmp_path / "state"
    p, hosts = serve(state, tmp_path)
    try:
        x = login(hosts["xs1"]["url"]).xenapi
        s4 = login(hosts["xs4"]["url"])
        s4.xenapi.pool.join(hosts["xs1"]["address"], "root", "xenroot")
        vm = x.VM.get_by_name_label("batch1")[0]
        x.VM.start(vm, False, False)
        flags = x.VM.get_last_boot_CPU_flags(vm)
        level = x.pool.get_cpu_info(x.pool.get_all()[0])
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        p, hosts = serve(state, tmp_path, "--scenario", "examples/minimal.json")
        x = login(hosts["xs1"]["url"]).xenapi
        assert not hosts["xs4"]["master"]
        assert x.VM.get_last_boot_CPU_flags(vm) == flags
        assert x.pool.get_cpu_info(x.pool.get_all()[0]) == level
        with pytest.raises(XenAPI.Failure) as e:
            login(hosts["xs4"]["url"])
        assert e.value.details == ["HOST_IS_SLAVE", hosts["xs1"]["address"]]
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


def test_scenario_given_with_existing_state_is_announced(tmp_path):
    state = tmp_path / "state"
    p, _ = serve(state, tmp_path)
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    p, _ = serve(state, tmp_path, "--scenario", "examples/minimal.json")
    p.send_signal(signal.SIGTERM)
    out = p.stdout.read().decode()
    p.wait(30)
    assert "resuming the world kept in" in out and "ignored" in out


def test_export_round_trip(tmp_path):
    state = tmp_path / "state"
    p, hosts = serve(state, tmp_path)
    try:
        x = login(hosts["xs1"]["url"]).xenapi
        x.VM.start(x.VM.get_by_name_label("batch1")[0], False, False)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    out = tmp_path / "exported.toml"
    subprocess.run(
        [sys.executable, "-m", "xapi_sim", "export", "--state-dir", str(state), "-o", str(out)],
        check=True,
    )
    from xapi_sim import scenario

    scn = scenario.load(out)
    world = scenario.build(scn)
    again = scenario.export_toml(world)
    assert again.strip() == out.read_text().strip()
    vms = {v.name_label: v for v in scn.vms}
    assert vms["batch1"].power_state == "Running"


def test_unsupported_state_version_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"format": "xapi-sim-state", "version": 99}))
    r = subprocess.run(
        [sys.executable, "-m", "xapi_sim", "serve", "--port", "0", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "version 99" in r.stderr
