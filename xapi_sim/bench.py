"""Benchmarks of xapi-sim, reported as ratios against floors run in the same process.

    python scripts/bench.py [--quick] [--json FILE]        (also: xapi-sim bench ...)

Full mode takes about two minutes; ``--quick`` uses small sizes (CI runs it; no timing is
asserted anywhere). Figures:

* call rate: sequential ``VM.get_power_state`` over one keep-alive connection with the
  XenAPI client, against a bare threaded stdlib ``SimpleXMLRPCServer`` answering the same
  XAPI envelope from a dict (same client, same run); also 8 and 32 concurrent clients;
* bulk read: ``VM.get_all_records`` on a 64-host x 512-pCPU, 10,000-VM world, server side
  (dispatch + encoding) and end to end, against ``xmlrpc.client.dumps`` of the same records
  (the marshalling floor); the same over JSON-RPC against ``json.dumps``;
* events: 50 ``event.from`` waiters, p50/p99 from one change to each waiter's return;
  ``event.from("", ...)`` over every class on the big world;
* start-up: time to ready and peak RSS of ``xapi-sim serve`` for the default and big worlds;
* growth: bulk read and start-up at 1,000 / 10,000 / 50,000 VMs.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from socketserver import ThreadingMixIn
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from . import (
    classes,  # noqa: F401  -- registers every handler
    scenario,
)
from .datamodel import Timestamp
from .dispatch import Dispatcher
from .generate import scenario_toml
from .server import Simulator
from .testing import running_world
from .wire import jsonrpc as jcodec
from .wire import xmlrpc as xcodec

# -- helpers --------------------------------------------------------------------------------


def _timeit(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t


def _best(fn, repeat=3):
    """Best of ``repeat`` runs, each after a full GC so one measurement does not pay for the
    garbage of the previous one."""
    out = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


class _KeepAliveHandler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass


class _ThreadedXMLRPC(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True


def stdlib_floor_server():
    """A bare threaded stdlib XML-RPC server answering XAPI's envelope from a dict."""
    srv = _ThreadedXMLRPC(
        ("127.0.0.1", 0), requestHandler=_KeepAliveHandler, logRequests=False, allow_none=True
    )
    state = {"vm": {"power_state": "Running"}}
    srv.register_function(
        lambda s: {"Status": "Success", "Value": "OpaqueRef:floor"}, "session.login_with_password"
    )
    srv.register_function(
        lambda *a: {"Status": "Success", "Value": "OpaqueRef:floor"}, "session.login_with_password"
    )
    srv.register_function(
        lambda s, vm: {"Status": "Success", "Value": state["vm"]["power_state"]},
        "VM.get_power_state",
    )
    srv.register_function(lambda s: {"Status": "Success", "Value": ""}, "session.logout")
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


def _call_rate(url, vm, n, clients):
    import XenAPI

    def worker(out):
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot")
        get = s.xenapi.VM.get_power_state
        get(vm)
        t = time.perf_counter()
        for _ in range(n):
            get(vm)
        out.append(time.perf_counter() - t)

    results: list[float] = []
    threads: list[threading.Thread] = []
    for _ in range(clients):
        th = threading.Thread(target=worker, args=(results,))
        threads.append(th)
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return clients * n / wall


# -- benchmarks -----------------------------------------------------------------------------


def bench_call_rate(quick):
    n = 300 if quick else 3000
    out = {}
    floor_srv, floor_url = stdlib_floor_server()
    try:
        with running_world(seed=1) as w:
            import XenAPI

            s = XenAPI.Session(w.master_url())
            s.xenapi.login_with_password("root", "xenroot")
            vm = s.xenapi.VM.get_by_name_label("web1")[0]
            for clients in (1, 8, 32):
                per = max(20, n // clients) if clients > 1 else n
                sim = _call_rate(w.master_url(), vm, per, clients)
                flo = _call_rate(floor_url, vm, per, clients)
                out[f"clients_{clients}"] = {
                    "sim_calls_per_s": round(sim),
                    "floor_calls_per_s": round(flo),
                    "ratio": round(sim / flo, 3),
                }
    finally:
        floor_srv.shutdown()
        floor_srv.server_close()
    return out


def _big_world(vms, hosts=64, pcpus=512):
    scn = scenario.loads(scenario_toml(hosts, pcpus, vms), "<bench>")
    return scenario.build(scn, seed=1)


def _stringify_ints(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, Timestamp):
        return xmlrpc.client.DateTime(str(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return {k: _stringify_ints(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_stringify_ints(x) for x in v]
    return v


def bench_bulk_read(quick, world=None, vms=10_000):
    import XenAPI

    world = world or _big_world(vms)
    master = world.pools[0].master
    d = Dispatcher(world)
    sess = d.dispatch(master, "session.login_with_password", ["root", "xenroot"])
    records = d.dispatch(master, "VM.get_all_records", [sess])
    # The stdlib marshaller cannot emit int64: give it the records with ints already as the
    # strings XAPI puts on the wire (conversion not timed), so the floor does less work.
    env = {"Status": "Success", "Value": _stringify_ints(records)}
    rep = 1 if quick else 3
    server_xml = _best(
        lambda: xcodec.encode_success(d.dispatch(master, "VM.get_all_records", [sess])), rep
    )
    floor_xml = _best(
        lambda: xmlrpc.client.dumps((env,), methodresponse=True, allow_none=True), rep
    )
    server_json = _best(
        lambda: jcodec.encode_success(2, 1, d.dispatch(master, "VM.get_all_records", [sess])), rep
    )
    floor_json = _best(lambda: json.dumps({"jsonrpc": "2.0", "result": records, "id": 1}), rep)
    sim = Simulator(world, port=0).start()
    try:
        s = XenAPI.Session(master.url)
        s.xenapi.login_with_password("root", "xenroot")
        e2e_xml = _best(lambda: s.xenapi.VM.get_all_records(), 1)
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "VM.get_all_records", "params": [s._session]}
        ).encode()

        def json_call():
            c = http.client.HTTPConnection(master.address_for_url, master.port)
            c.request("POST", "/jsonrpc", body, {"content-type": "application/json"})
            json.loads(c.getresponse().read())
            c.close()

        e2e_json = _best(json_call, 1)
    finally:
        sim.stop()
    return {
        "vms": len(records),
        "xml": {
            "server_s": round(server_xml, 4),
            "floor_dumps_s": round(floor_xml, 4),
            "ratio": round(server_xml / floor_xml, 3),
            "end_to_end_s": round(e2e_xml, 3),
        },
        "json": {
            "server_s": round(server_json, 4),
            "floor_dumps_s": round(floor_json, 4),
            "ratio": round(server_json / floor_json, 3),
            "end_to_end_s": round(e2e_json, 3),
        },
    }


def bench_events(quick, world=None):
    waiters = 10 if quick else 50
    rounds = 5 if quick else 20
    world = scenario.build(scenario.default(), seed=1)
    d = Dispatcher(world)
    master = world.pools[0].master
    sess = d.dispatch(master, "session.login_with_password", ["root", "xenroot"])
    pool = world.pools[0].ref
    lat = []
    lock = threading.Lock()
    for r in range(rounds):
        tok = d.dispatch(master, "event.from", [sess, ["pool"], "", 0.0])["token"]
        ready = threading.Barrier(waiters + 1)
        changed_at: dict[str, float] = {}

        def waiter(ready, tok, changed_at):
            ready.wait()
            d.dispatch(master, "event.from", [sess, ["pool"], tok, 30.0])
            done = time.perf_counter()
            with lock:
                lat.append(done - changed_at["t"])

        ths = [
            threading.Thread(target=waiter, args=(ready, tok, changed_at)) for _ in range(waiters)
        ]
        for t in ths:
            t.start()
        ready.wait()
        time.sleep(0.2)  # let every waiter block
        changed_at["t"] = time.perf_counter()
        d.dispatch(master, "pool.add_to_other_config", [sess, pool, f"k{r}", "v"])
        for t in ths:
            t.join()
    lat.sort()
    big = world if quick else _big_world(10_000)
    bm = big.pools[0].master
    bd = Dispatcher(big)
    bs = bd.dispatch(bm, "session.login_with_password", ["root", "xenroot"])
    t = _best(lambda: bd.dispatch(bm, "event.from", [bs, ["*"], "", 0.0]), 1)
    n = len(bd.dispatch(bm, "event.from", [bs, ["*"], "", 0.0])["events"])
    return {
        "waiters": waiters,
        "wakeups": len(lat),
        "p50_ms": round(statistics.median(lat) * 1000, 2),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
        "initial_fill": {"objects": n, "seconds": round(t, 3)},
    }


def _peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass  # no /proc (not Linux): the peak is simply not reported
    return None


def bench_startup(scenario_path=None):
    """Time from process start to the ready file, and peak RSS, of `xapi-sim serve`."""
    with tempfile.TemporaryDirectory() as d:
        ready = os.path.join(d, "ready.json")
        cmd = [sys.executable, "-m", "xapi_sim", "serve", "--port", "0", "--ready-file", ready]
        if scenario_path:
            cmd += ["--scenario", scenario_path]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert p.stderr is not None  # a pipe
        try:
            while not os.path.exists(ready):
                if p.poll() is not None:
                    raise RuntimeError(p.stderr.read().decode())
                time.sleep(0.01)
            t = time.perf_counter() - t0
            rss = _peak_rss_mib(p.pid)
        finally:
            p.terminate()
            p.wait(30)
    return {"ready_s": round(t, 3), "peak_rss_mib": round(rss) if rss else None}


def bench_startup_big(vms, hosts=64, pcpus=512):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.toml")
        with open(path, "w") as fh:
            fh.write(scenario_toml(hosts, pcpus, vms))
        return bench_startup(path)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    ap.add_argument("--json", metavar="FILE", default="bench-results.json")
    args = ap.parse_args(argv)
    q = args.quick
    res: dict[str, Any] = {
        "mode": "quick" if q else "full",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    t0 = time.perf_counter()
    res["call_rate"] = bench_call_rate(q)
    big_vms = 1000 if q else 10_000
    res["bulk_read"] = (
        bench_bulk_read(q, vms=big_vms)
        if not q
        else bench_bulk_read(q, _big_world(big_vms, hosts=8, pcpus=16))
    )
    res["events"] = bench_events(q)
    res["startup"] = {"default": bench_startup()}
    if q:
        res["startup"]["small_generated"] = bench_startup_big(200, hosts=4, pcpus=8)
        res["growth"] = {
            str(n): {"startup": bench_startup_big(n, hosts=4, pcpus=8)} for n in (100, 400)
        }
    else:
        res["startup"]["big"] = bench_startup_big(10_000)
        res["growth"] = {}
        for n in (1000, 10_000, 50_000):
            br = bench_bulk_read(True, vms=n) if n != 10_000 else res["bulk_read"]
            res["growth"][str(n)] = {
                "bulk_read_server_s": br["xml"]["server_s"],
                "bulk_read_floor_s": br["xml"]["floor_dumps_s"],
                "startup": bench_startup_big(n),
            }
    res["total_s"] = round(time.perf_counter() - t0, 1)
    with open(args.json, "w") as fh:
        json.dump(res, fh, indent=2)
    _print_table(res)
    return 0


def _print_table(res):
    print(
        f"xapi-sim benchmarks ({res['mode']} mode, {res['machine']['cpus']} CPUs, "
        f"Python {res['machine']['python']}, {res['total_s']} s)"
    )
    for k, v in res["call_rate"].items():
        print(
            f"  call rate {k:<11} sim {v['sim_calls_per_s']:>7}/s  floor "
            f"{v['floor_calls_per_s']:>7}/s  ratio {v['ratio']}"
        )
    br = res["bulk_read"]
    for codec in ("xml", "json"):
        v = br[codec]
        print(
            f"  bulk read {codec:<4} {br['vms']} VMs: server {v['server_s']}s  floor "
            f"{v['floor_dumps_s']}s  ratio {v['ratio']}  end-to-end {v['end_to_end_s']}s"
        )
    ev = res["events"]
    print(
        f"  events: {ev['waiters']} waiters p50 {ev['p50_ms']} ms  p99 {ev['p99_ms']} ms; "
        f"initial fill {ev['initial_fill']['objects']} objects in "
        f"{ev['initial_fill']['seconds']}s"
    )
    for k, v in res["startup"].items():
        print(f"  start-up {k}: ready {v['ready_s']}s  peak RSS {v['peak_rss_mib']} MiB")
    for n, v in res.get("growth", {}).items():
        extra = (
            f" bulk read {v['bulk_read_server_s']}s (floor {v['bulk_read_floor_s']}s)"
            if "bulk_read_server_s" in v
            else ""
        )
        print(
            f"  growth {n:>6} VMs: ready {v['startup']['ready_s']}s"
            f" RSS {v['startup']['peak_rss_mib']} MiB{extra}"
        )


if __name__ == "__main__":
    sys.exit(main())
