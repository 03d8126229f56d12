"""Xen Orchestra's own client against xapi-sim (spec §11, §15.1-2, §15.7, §15.10-12).

``tests/node/xo-client.mjs`` drives the unmodified ``xen-api`` npm package (pinned in
``tests/node/package.json``/``package-lock.json``, installed with
``npm ci --prefix tests/node``) through the phases xo-server goes through: connect (JSON-RPC
first), build its object cache, follow changes made by another client, change things
itself and wait with ``barrier()``, run ``Async`` calls (void and ref results, an XAPI
error, a cancellation), connect over XML-RPC, and follow ``HOST_IS_SLAVE`` from a pool
member. This test starts the world, answers the script where another client must act, and
checks every phase -- plus, from the server side, which calls XO made over which transport.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import threading
import time
import xmlrpc.client

import pytest
import XenAPI

from xapi_sim.tasks import Tasks
from xapi_sim.testing import running_world
from xapi_sim.wire import http

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "xo-client.mjs"
TIMEOUT = 55


def _node():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required for the Xen Orchestra client test (Node >= 18)")
    if not (NODE_DIR / "node_modules" / "xen-api" / "package.json").exists():
        pytest.fail(
            "the xen-api npm client is not installed: run `npm ci --prefix tests/node` (see README)"
        )
    return node


def run_xo(world, on_phase):
    """Run the script; ``on_phase(msg)`` may return a dict to send on its stdin.

    The script waits for an answer to every phase line but the last (``done``, or ``error``)
    before it starts the next phase, so what ``on_phase`` records about the server when it
    sees a line (the call log's length, say) is exactly where that phase ended there, however
    late this thread gets to read the line. An ``on_phase`` that returns nothing is answered
    with a bare acknowledgement."""
    # HOST_IS_SLAVE carries a bare address only where hosts share one port (loopback aliases)
    member = world.url("xs2") if ":" not in world.host("xs1").address else "-"
    proc = subprocess.Popen(
        [_node(), str(SCRIPT), world.master_url(), member],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    timer = threading.Timer(TIMEOUT, proc.kill)
    timer.start()
    phases = {}
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            phases[msg["phase"]] = msg
            reply = on_phase(msg)
            if msg["phase"] not in ("done", "error"):
                proc.stdin.write(json.dumps({"ack": msg["phase"]} if reply is None else reply))
                proc.stdin.write("\n")
                proc.stdin.flush()
        proc.wait(TIMEOUT)
        stderr = proc.stderr.read()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    assert "error" not in phases, (phases["error"], stderr)
    assert proc.returncode == 0, stderr
    return phases, stderr


@pytest.fixture(scope="module")
def xo_run():
    """One run of the script against a fresh default world (shared by the checks below)."""
    mp = pytest.MonkeyPatch()
    calls = []
    lock = threading.Lock()
    original = http.Handler._call

    def _call(self, method, params):
        ok, value = original(self, method, params)
        path = self.path.split("?", 1)[0]
        transport = "json" if path.startswith("/jsonrpc") else "xml"
        with lock:
            calls.append(
                (self.server.host.name_label, transport, path, method, None if ok else value[0])
            )
        return ok, value

    mp.setattr(http.Handler, "_call", _call)
    try:
        with running_world() as w:
            Tasks.of(w.world).operation_seconds = 0.3  # so that a start can be cancelled
            s = XenAPI.Session(w.master_url())
            s.xenapi.login_with_password("root", "xenroot", "2.5", "xo-test")
            x = s.xenapi
            expected = {
                "hosts": sorted(x.host.get_uuid(h) for h in x.host.get_all()),
                "vms": sorted(r["uuid"] for r in x.VM.get_all_records().values()),
                "pool": x.pool.get_all()[0],
                "master_address": w.host("xs1").address,
                "types": {
                    m.split(".")[0]
                    for m in xmlrpc.client.ServerProxy(w.master_url()).system.listMethods()
                    if m.endswith(".get_all_records")
                },
            }
            marks = {"start": len(calls)}

            def on_phase(msg):
                with lock:
                    marks[msg["phase"]] = len(calls)
                if msg["phase"] == "cached":
                    vm = x.VM.get_by_name_label("db1")[0]
                    x.VM.set_name_label(vm, "renamed-by-python")
                    return {"ref": vm, "name_label": "renamed-by-python"}
                return None

            t0 = time.monotonic()
            phases, stderr = run_xo(w, on_phase)
            elapsed = time.monotonic() - t0
            final = {
                "clone_by_xml": x.VM.get_by_name_label("cloned-over-xml-rpc"),
                "tasks": {r["name_label"]: r["status"] for r in x.task.get_all_records().values()},
            }
            yield {
                "phases": phases,
                "stderr": stderr,
                "calls": list(calls),
                "marks": marks,
                "expected": expected,
                "final": final,
                "elapsed": elapsed,
            }
    finally:
        mp.undo()


def test_every_phase_ran_quietly(xo_run):
    phases = ["cached", "live", "own", "async", "xmlrpc", "redirect", "done"]
    if ":" in xo_run["expected"]["master_address"]:
        phases.remove("redirect")
    assert list(xo_run["phases"]) == phases
    assert xo_run["phases"]["done"]["status"] == ["disconnected"] * (len(phases) - 4)
    # xen-api logs (console.warn) every failed cache refresh or event loop error
    assert "_refreshCachedRecords" not in xo_run["stderr"]
    assert "_watchEvents" not in xo_run["stderr"], xo_run["stderr"]
    assert xo_run["elapsed"] < TIMEOUT


def test_connect_uses_json_rpc_and_builds_the_whole_cache(xo_run):
    cached, exp = xo_run["phases"]["cached"], xo_run["expected"]
    assert cached["hosts"] == exp["hosts"]
    assert cached["vms"] == exp["vms"]
    assert cached["pool"] == exp["pool"]
    assert cached["master_api"] == [2, 5] and cached["product_version"] == "7.0.0"
    # the connect sequence of index.mjs, all over JSON-RPC on /jsonrpc
    first = xo_run["calls"][xo_run["marks"]["start"] : xo_run["marks"]["cached"]]
    assert {t for _, t, _, _, _ in first} == {"json"}
    assert {p for _, _, p, _, _ in first} == {"/jsonrpc"}
    methods = [m for _, _, _, m, _ in first]
    assert methods[:4] == [
        "session.login_with_password",
        "pool.get_all_records",
        "system.listMethods",
        "event.inject",
    ]
    assert all(e is None for *_, e in first)
    # then <Type>.get_all_records for every type system.listMethods offers, then event.from
    fetched = {m.split(".")[0] for m in methods if m.endswith(".get_all_records")}
    assert fetched == exp["types"]
    assert {"VM", "host", "pool", "task", "SR", "network", "message", "role"} <= fetched
    # (a call is recorded when its dispatch returns -- a parked event.from when it parks --
    # and always before its reply leaves; the event.from loop runs once the cache is built)
    to_live = xo_run["calls"][xo_run["marks"]["start"] : xo_run["marks"]["live"]]
    assert ("json", "event.from", None) in {(t, m, e) for _, t, _, m, e in to_live}


def test_changes_by_another_client_arrive_through_events(xo_run):
    live = xo_run["phases"]["live"]
    assert live["name_label"] == "renamed-by-python"
    assert live["ms"] < 5000
    assert xo_run["phases"]["own"]["name_label"] == "web2-renamed-by-xo"
    # the barrier is pool.add_to_other_config + a pool mod event + remove_from_other_config
    calls = [m for _, _, _, m, _ in xo_run["calls"]]
    assert "pool.add_to_other_config" in calls and "pool.remove_from_other_config" in calls


def test_async_calls_through_the_clients_task_watching(xo_run):
    a = xo_run["phases"]["async"]
    assert (a["shutdown"], a["state_after_shutdown"]) == ("", "Halted")
    assert (a["start"], a["state_after_start"]) == ("", "Running")
    assert a["clone_ref"].startswith("OpaqueRef:") and a["clone_label"] == "cloned-by-xo"
    assert a["failure"]["code"] == "VM_BAD_POWER_STATE"
    assert a["failure"]["params"][1:] == ["halted", "running"]
    assert a["failure"]["task_status"] == "failure"
    assert a["cancelled"] == {"outcome": "rejected", "name": "Cancel", "message": "task canceled"}
    assert a["batch1_state"] == "Halted"
    # callAsync destroyed every task it waited on
    assert a["async_tasks_left"] == []
    methods = [m for _, _, _, m, _ in xo_run["calls"]]
    for name in (
        "Async.VM.clean_shutdown",
        "Async.VM.start",
        "Async.VM.clone",
        "task.cancel",
        "task.destroy",
    ):
        assert name in methods, name


def test_xml_rpc_transport(xo_run):
    x, exp = xo_run["phases"]["xmlrpc"], xo_run["expected"]
    assert x["hosts"] == exp["hosts"] and x["pool"] == exp["pool"]
    assert x["name_label"] == "web2-renamed-by-xo"
    assert x["name_description"] == "via xml-rpc"
    assert x["clone_label"] == "cloned-by-xo"
    assert x["clone_ref"] in xo_run["final"]["clone_by_xml"]
    assert x["seen_by_json_client"] == "cloned-over-xml-rpc"
    lo, hi = xo_run["marks"]["async"], xo_run["marks"]["xmlrpc"]
    xml_calls = [(p, m) for _, t, p, m, _ in xo_run["calls"][lo:hi] if t == "xml"]
    assert {p for p, _ in xml_calls} == {"/xmlrpc"}  # XO's path, served as XML-RPC
    assert {
        "session.login_with_password",
        "system.listMethods",
        "event.inject",
        "event.from",
        "Async.VM.clone",
    } <= {m for _, m in xml_calls}


def test_host_is_slave_is_followed_on_json_rpc(xo_run):
    if "redirect" not in xo_run["phases"]:
        pytest.skip("hosts have distinct ports here: XO would keep the member's port")
    r, exp = xo_run["phases"]["redirect"], xo_run["expected"]
    assert r["hostname"] == exp["master_address"]
    assert r["pool"] == exp["pool"] and r["hosts"] == 3
    lo, hi = xo_run["marks"]["xmlrpc"], xo_run["marks"]["redirect"]
    on_member = [(t, m, e) for h, t, _, m, e in xo_run["calls"][lo:hi] if h == "xs2"]
    assert on_member == [("json", "session.login_with_password", "HOST_IS_SLAVE")]


# -- what XO's connect relies on, checked without Node ----------------------------------------


def test_list_methods_is_exactly_what_the_server_serves(wire):
    """system.listMethods (no session; a bare array over XML-RPC, a plain result over
    JSON-RPC) lists synchronous wire names only, each of which the server answers; XO loads
    every class that has a listed ``get_all_records``."""
    with running_world() as w:
        url = w.master_url()
        r = wire.xml_reply(url, "system.listMethods")
        assert b"<name>Status</name>" not in r.body
        listed = r.xml()
        assert wire.json(url, "system.listMethods")["result"] == listed
        assert len(listed) == len(set(listed)) > 1000
        assert not [m for m in listed if m.startswith(("Async.", "InternalAsync.", "sim."))]
        sref = wire.login(url)
        for name in listed:
            if name == "system.listMethods":
                continue
            out = wire.xml(url, name)  # no parameters at all
            assert out["Status"] == "Failure", name
            assert out["ErrorDescription"][0] != "MESSAGE_METHOD_UNKNOWN", name
            if name.endswith(".get_all_records"):
                got = wire.xml(url, name, sref)
                assert got["Status"] == "Success", (name, got)
        # and what is not listed is not XAPI's
        assert wire.xml_err(url, "VM.frobnicate", sref) == [
            "MESSAGE_METHOD_UNKNOWN",
            "VM.frobnicate",
        ]
        wire.xml_ok(url, "session.logout", sref)
