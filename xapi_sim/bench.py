"""Benchmarks of xapi-sim, reported as ratios against floors measured in the same run.

    python scripts/bench.py [--quick] [--json FILE]        (also: xapi-sim bench ...)

Every server -- xapi-sim (``xapi-sim serve``) and the stdlib floors (``bench_floor``: a bare
threaded keep-alive XML-RPC server and its JSON-RPC equivalent) -- runs in a process of its
own, and the clients in yet another (``bench_load``: one selector driving every
connection), so neither side's interpreter lock flatters the other. Timings are repeated;
the JSON keeps every repetition and the tables give medians and spreads. Full mode takes a
few minutes; ``--quick`` uses small sizes and few repetitions (CI runs it; no timing is
asserted anywhere). Figures (docs/performance.md explains each):

* call rate: ``VM.get_power_state`` over XML-RPC and JSON-RPC with 1, 8 and 32 keep-alive
  connections, against the floors;
* events: 50 ``event.from`` long-polls over HTTP, from one change to each waiter's reply;
* ``xe vm-list`` (the real client, a process of its own) at 512 and 10,000 VMs;
* memory: peak RSS of the server for one bulk read (``VM.get_all_records``) against its
  reply size, and for 50 simultaneous initial ``event.from(["VM"], "", 0)`` on a
  10,000-VM world;
* bulk read, in process: dispatch and encoding of ``VM.get_all_records`` against
  ``xmlrpc.client.dumps``/``json.dumps`` of the same records;
* start-up and growth: time to ready and peak RSS of ``xapi-sim serve`` at 1,000, 10,000,
  50,000 and 100,000 VMs;
* workers: the aggregate call rate of 8 pools under load from 8 connections, one per pool
  master, served by ``serve --workers 2`` against one process.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from typing import Any

from . import (
    classes,  # noqa: F401  -- registers every handler
    scenario,
)
from .datamodel import Timestamp
from .dispatch import Dispatcher
from .generate import scenario_toml
from .wire import jsonrpc as jcodec
from .wire import xmlrpc as xcodec

# -- helpers --------------------------------------------------------------------------------


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


def _env() -> dict:
    """The environment of every child process: this package first on the path."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def spread(values: list[float], digits: int = 3) -> dict:
    """Median, minimum and maximum of repeated measurements."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of already sorted values."""
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))]


def _proc_status(pid) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass  # no /proc (not Linux): memory is simply not reported
    return out


def _peak_rss_mib(pid):
    return _proc_status(pid).get("VmHWM")


def _reset_peak(pid) -> bool:
    """Reset the process's peak RSS to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Server:
    """A server process of the benchmark: ``xapi-sim serve`` or a floor."""

    def __init__(self, cmd, ready=None, timeout=300.0):
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True
        )
        self.pid = self.proc.pid
        deadline = self.t0 + timeout
        assert self.proc.stdout is not None and self.proc.stderr is not None  # pipes
        if ready is None:  # a floor prints its port
            self.host, self.port = "127.0.0.1", int(self.proc.stdout.readline())
            self.ready_s = time.perf_counter() - self.t0
            return
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.perf_counter() > deadline:
                late = self.proc.poll() is None
                if late:
                    self.proc.kill()
                err = self.proc.stderr.read()
                self.stop()
                why = f"not ready in {timeout} s" if late else f"exit {self.proc.returncode}"
                raise RuntimeError(f"server did not start ({why}): {err[-2000:]}")
            time.sleep(0.01)
        self.ready_s = time.perf_counter() - self.t0
        with open(ready) as fh:
            self.desc = json.load(fh)
        master = next(h for h in self.desc["hosts"] if h["master"])
        self.host, _, port = master["http_url"][len("http://") :].rstrip("/").partition(":")
        self.port = int(port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fh in (self.proc.stdout, self.proc.stderr):
            if fh is not None:
                fh.close()


@contextlib.contextmanager
def sim_server(scenario_text=None, extra=()):
    """``xapi-sim serve`` in its own process (the default world, or ``scenario_text``;
    ``extra``: more options)."""
    with tempfile.TemporaryDirectory() as d:
        ready = os.path.join(d, "ready.json")
        cmd = [sys.executable, "-m", "xapi_sim", "serve", "--port", "0", "--ready-file", ready]
        cmd += ["--seed", "1", *extra]
        if scenario_text is not None:
            path = os.path.join(d, "world.toml")
            with open(path, "w") as fh:
                fh.write(scenario_text)
            cmd += ["--scenario", path]
        srv = Server(cmd, ready)
        try:
            yield srv
        finally:
            srv.stop()


@contextlib.contextmanager
def floor_server(kind):
    srv = Server([sys.executable, "-m", "xapi_sim.bench_floor", kind])
    try:
        yield srv
    finally:
        srv.stop()


def load(srv, **spec) -> dict:
    """Run the load client (``bench_load``) against ``srv`` in a process of its own."""
    if srv is not None:
        spec.update(host=srv.host, port=srv.port)
    p = subprocess.run(
        [sys.executable, "-m", "xapi_sim.bench_load", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
    )
    if p.returncode != 0:
        raise RuntimeError(f"load client failed: {p.stderr}")
    return json.loads(p.stdout)


def _world_toml(vms, hosts=16, pcpus=32):
    return scenario_toml(hosts, pcpus, vms)


# -- benchmarks -----------------------------------------------------------------------------

CLIENTS = (1, 8, 32)


def bench_call_rate(quick):
    """Calls/s of xapi-sim and of the floor, for each protocol and client count, repeated;
    the floor and xapi-sim alternate first from one repetition to the next."""
    reps = 2 if quick else 5
    seconds, warmup = (0.2, 0.1) if quick else (1.0, 0.2)
    raw: dict = {p: {c: {"sim": [], "floor": []} for c in CLIENTS} for p in ("xml", "json")}
    with sim_server() as sim, floor_server("xml") as fx, floor_server("json") as fj:
        floors = {"xml": fx, "json": fj}
        runs, keys = [], []
        for rep in range(reps):
            for proto in ("xml", "json"):
                for c in CLIENTS:
                    order = [("sim", sim), ("floor", floors[proto])]
                    for who, srv in order if rep % 2 == 0 else order[::-1]:
                        runs.append(dict(host=srv.host, port=srv.port, proto=proto, clients=c))
                        keys.append((proto, c, who))
        got = load(None, mode="rates", runs=runs, seconds=seconds, warmup=warmup)["runs"]
        for (proto, c, who), r in zip(keys, got, strict=True):
            raw[proto][c][who].append(r["calls_per_s"])
    out: dict = {}
    for proto, per in raw.items():
        for c, v in per.items():
            ratios = [a / b for a, b in zip(v["sim"], v["floor"], strict=True)]
            out[f"{proto}_clients_{c}"] = {
                "sim_calls_per_s": spread(v["sim"], 0),
                "floor_calls_per_s": spread(v["floor"], 0),
                "ratio": spread(ratios),
            }
    return out


WORKER_POOLS = 8


def pools_toml(pools=WORKER_POOLS, hosts=2, vms=4):
    """``pools`` pools of ``hosts`` hosts and ``vms`` VMs each; pool i's VMs are
    ``p<i>-vm<j>``, the first running on its master."""
    out = []
    for p in range(pools):
        names = [f"p{p}h{h}" for h in range(hosts)]
        out += [f'[[host]]\nname_label = "{n}"\n' for n in names]
        members = ", ".join(f'"{n}"' for n in names[1:])
        out.append(
            f'[[pool]]\nname_label = "pool{p}"\nmaster = "{names[0]}"\nmembers = [{members}]\n'
        )
        for v in range(vms):
            state = "Running" if v == 0 else "Halted"
            out.append(
                f'[[vm]]\nname_label = "p{p}-vm{v}"\npower_state = "{state}"\n'
                f'host = "{names[v % hosts]}"\nmemory = "1GiB"\n'
            )
    return "\n".join(out)


def _masters(srv) -> list[dict]:
    """One load target per pool master of a served ``pools_toml`` world."""
    out = []
    for h in srv.desc["hosts"]:
        if h["master"]:
            host, _, port = h["http_url"][len("http://") :].rstrip("/").partition(":")
            out.append(
                {"host": host, "port": int(port), "vm": f"{h['pool'].replace('pool', 'p')}-vm0"}
            )
    return out


def _cpu_s(pid) -> float:
    """CPU seconds (user + system) a process and its children have used so far; 0 without
    /proc."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rpartition(")")[2].split()
        total = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(k) for k in fh.read().split()]
    except (OSError, ValueError, IndexError):
        return total
    return total + sum(_cpu_s(k) for k in kids)


# The workers figure's calls: a whole VM record (the server's work -- about 80 fields to
# read and encode -- far outweighs the load client's, so the figure shows how the servers
# use the cores), then a one-field read (where the load client's own cost, on the same two
# cores, bounds both servers alike).
WORKER_CALLS = ("VM.get_record", "VM.get_power_state")


def bench_workers(quick, workers=2):
    """Aggregate call rate of a world of 8 pools under load from 8 connections, one per
    pool master (XML-RPC, each of ``WORKER_CALLS``), served by one process and by ``serve
    --workers N``; both servers run throughout, and which goes first alternates. Also the
    servers' CPU (all their processes) per call and in cores: on a machine shared with the
    load client (and other work) the cores the servers can get bound the ratio."""
    reps = 2 if quick else 5
    seconds, warmup = (0.3, 0.1) if quick else (1.0, 0.2)
    text = pools_toml()
    out: dict = {"pools": WORKER_POOLS, "clients": WORKER_POOLS, "workers": workers}
    with sim_server(text) as one, sim_server(text, ["--workers", str(workers)]) as many:
        for method in WORKER_CALLS:
            raw: dict[str, list[float]] = {"one": [], "workers": []}
            cores: dict[str, list[float]] = {"one": [], "workers": []}
            per_call: dict[str, list[float]] = {"one": [], "workers": []}
            for rep in range(reps):
                order = [("one", one), ("workers", many)]
                for who, srv in order if rep % 2 == 0 else order[::-1]:
                    c0 = _cpu_s(srv.pid)
                    r = load(
                        None,
                        mode="rate",
                        targets=_masters(srv),
                        proto="xml",
                        method=method,
                        clients=WORKER_POOLS,
                        seconds=seconds,
                        warmup=warmup,
                    )
                    cpu = _cpu_s(srv.pid) - c0  # the whole run, warm-up included
                    raw[who].append(r["calls_per_s"])
                    cores[who].append(cpu / r["total_s"])
                    per_call[who].append(cpu / max(1, r["total_calls"]) * 1e6)
            ratios = [b / a for a, b in zip(raw["one"], raw["workers"], strict=True)]
            out[method] = {
                "one_process_calls_per_s": spread(raw["one"], 0),
                "workers_calls_per_s": spread(raw["workers"], 0),
                "ratio": spread(ratios),
                "one_process_server_cores": spread(cores["one"], 2),
                "workers_server_cores": spread(cores["workers"], 2),
                "one_process_server_us_per_call": spread(per_call["one"], 0),
                "workers_server_us_per_call": spread(per_call["workers"], 0),
            }
    return out


def bench_events(quick):
    """``event.from`` long-polls over HTTP: time from sending one change to each waiter's
    whole reply -- received by the kernel where it stamps receipts (``bench_load``), and as
    the load client's selector saw it (``seen_*``: its own reading of the round's other
    replies included)."""
    waiters = 10 if quick else 50
    rounds = 3 if quick else 20
    runs = 1 if quick else 3
    p50s, p99s, allv, seenv = [], [], [], []
    stamps = True
    with sim_server() as sim:
        for _ in range(runs):
            got = load(sim, mode="events", proto="xml", waiters=waiters, rounds=rounds)
            lat = got["latencies_s"]
            stamps = stamps and got["kernel_stamps"]
            p50s.append(percentile(lat, 0.5) * 1000)
            p99s.append(percentile(lat, 0.99) * 1000)
            allv += lat
            seenv += got["seen_latencies_s"]
    allv.sort()
    seenv.sort()
    return {
        "waiters": waiters,
        "wakeups": len(allv),
        "stamped_by": "kernel" if stamps else "selector",
        "p50_ms": round(percentile(allv, 0.5) * 1000, 2),
        "p99_ms": round(percentile(allv, 0.99) * 1000, 2),
        "runs_p50_ms": spread(p50s, 2),
        "runs_p99_ms": spread(p99s, 2),
        "seen_p50_ms": round(percentile(seenv, 0.5) * 1000, 2),
        "seen_p99_ms": round(percentile(seenv, 0.99) * 1000, 2),
    }


def _xe_vm_list(srv) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "xapi_sim.xe", "-s", srv.host, "-p", str(srv.port)]
    cmd += ["-u", "root", "-pw", "xenroot", "vm-list"]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"xe vm-list failed: {p.stderr}")
    return wall, p.stdout.count("name-label ( RW)")


MEMORY_CASES = {
    "bulk_read": ("VM.get_all_records", []),
    "event_from_initial": ("event.from", [["VM"], "", 0.0]),
}


def _memory(scenario_text, case, proto, clients) -> dict:
    """Peak RSS of a fresh server over its RSS at ready, while ``clients`` connections make
    one bulk call ``case`` at once."""
    method, params = MEMORY_CASES[case]
    with sim_server(scenario_text) as srv:
        time.sleep(0.2)
        before = _proc_status(srv.pid).get("VmRSS")
        reset = _reset_peak(srv.pid)
        r = load(srv, mode="burst", proto=proto, method=method, params=params, clients=clients)
        peak = _proc_status(srv.pid).get("VmHWM")
    reply = max(r["reply_bytes"]) / 2**20
    entry: dict = {
        "clients": clients,
        "reply_mib": round(reply, 2),
        "seconds": round(r["seconds"], 3),
        "rss_before_mib": round(before) if before else None,
        "peak_rss_mib": round(peak) if peak else None,
        "peak_reset": reset,
    }
    if before and peak:
        entry["growth_mib"] = round(peak - before, 1)
        entry["growth_per_reply"] = round((peak - before) / reply, 2)
    return entry


def bench_big_world(quick):
    """One server of a 10,000-VM world (quick: 1,000): ``xe vm-list``, memory."""
    out: dict = {"xe_vm_list": {}}
    reps = 2 if quick else 3
    for vms in (512,) if quick else (512, 10_000):
        with sim_server(_world_toml(vms)) as srv:
            times, counts = [], set()
            for _ in range(reps):
                t, n = _xe_vm_list(srv)
                times.append(t)
                counts.add(n)
            out["xe_vm_list"][str(vms)] = {"seconds": spread(times), "vms_listed": sorted(counts)}
    text = _world_toml(500, hosts=4, pcpus=8) if quick else _world_toml(10_000)
    out["memory"] = {"vms": 500 if quick else 10_000}
    many = 10 if quick else 50
    for key, case, clients in (
        ("bulk_read", "bulk_read", 1),
        (f"bulk_read_{many}_at_once", "bulk_read", many),
        ("event_from_initial", "event_from_initial", many),
    ):
        for proto in ("xml", "json"):
            out["memory"][f"{key}_{proto}"] = _memory(text, case, proto, clients)
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
    """``VM.get_all_records`` in this process: dispatch + encoding against the stdlib
    marshallers of the same records (single-threaded, so sharing the process is fair)."""
    world = world or _big_world(vms)
    master = world.pools[0].master
    d = Dispatcher(world)
    sess = d.dispatch(master, "session.login_with_password", ["root", "xenroot"])
    records = d.dispatch(master, "VM.get_all_records", [sess])
    # The stdlib marshaller cannot emit int64: give it the records with ints already as the
    # strings XAPI puts on the wire (conversion not timed), so the floor does less work.
    env = {"Status": "Success", "Value": _stringify_ints(records)}
    rep = 1 if quick else 3
    db = world.pools[0].db

    def cold():
        # a fresh snapshot each time: what the first of N simultaneous callers pays (the
        # others share it, dispatch.shared_records)
        db.snapshots.clear()
        return d.dispatch(master, "VM.get_all_records", [sess])

    server_xml = _best(lambda: xcodec.encode_success(cold()), rep)
    floor_xml = _best(
        lambda: xmlrpc.client.dumps((env,), methodresponse=True, allow_none=True), rep
    )
    server_json = _best(lambda: jcodec.encode_success(2, 1, cold()), rep)
    floor_json = _best(lambda: json.dumps({"jsonrpc": "2.0", "result": records, "id": 1}), rep)
    return {
        "vms": len(records),
        "xml": {
            "server_s": round(server_xml, 4),
            "floor_dumps_s": round(floor_xml, 4),
            "ratio": round(server_xml / floor_xml, 3),
        },
        "json": {
            "server_s": round(server_json, 4),
            "floor_dumps_s": round(floor_json, 4),
            "ratio": round(server_json / floor_json, 3),
        },
    }


def bench_startup(scenario_text=None):
    """Time from process start to the ready file, and peak RSS, of ``xapi-sim serve``."""
    with sim_server(scenario_text) as srv:
        rss = _peak_rss_mib(srv.pid)
        return {"ready_s": round(srv.ready_s, 3), "peak_rss_mib": round(rss) if rss else None}


def bench_startup_big(vms, hosts=64, pcpus=512):
    """Start-up of a generated world; above 64,000 VMs, one host per 1,000 VMs (a scenario
    host runs at most 1,000 VMs)."""
    hosts = max(hosts, -(-vms // 1000))
    try:
        return bench_startup(scenario_toml(hosts, pcpus, vms))
    except RuntimeError as e:  # reported, and the other figures still measured
        return {"error": str(e)[:500], "ready_s": None, "peak_rss_mib": None}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    ap.add_argument("--json", metavar="FILE", default="bench-results.json")
    ap.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated subset: call_rate, events, big_world, bulk_read, startup, workers",
    )
    args = ap.parse_args(argv)
    q = args.quick
    only = set(args.only.split(",")) if args.only else None
    res: dict[str, Any] = {
        "mode": "quick" if q else "full",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    t0 = time.perf_counter()

    def want(name):
        return only is None or name in only

    sections: dict[str, float] = {}
    for name, fn in (
        ("call_rate", bench_call_rate),
        ("events", bench_events),
        ("big_world", bench_big_world),
        ("workers", bench_workers),
    ):
        if want(name):
            t = time.perf_counter()
            res[name] = fn(q)
            sections[name] = round(time.perf_counter() - t, 1)
    res["section_s"] = sections
    if want("bulk_read"):
        res["bulk_read"] = (
            bench_bulk_read(q, _big_world(1000, hosts=8, pcpus=16))
            if q
            else bench_bulk_read(q, vms=10_000)
        )
    if want("startup"):
        res["startup"] = {"default": bench_startup()}
        if q:
            res["growth"] = {"400": {"startup": bench_startup_big(400, 4, 8)}}
        else:
            res["growth"] = {}
            for n in (1000, 10_000, 50_000, 100_000):
                entry: dict = {"startup": bench_startup_big(n)}
                if n <= 50_000:
                    br = (
                        res["bulk_read"]
                        if n == 10_000 and "bulk_read" in res
                        else bench_bulk_read(True, vms=n)
                    )
                    entry["bulk_read_server_s"] = br["xml"]["server_s"]
                    entry["bulk_read_floor_s"] = br["xml"]["floor_dumps_s"]
                res["growth"][str(n)] = entry
    res["total_s"] = round(time.perf_counter() - t0, 1)
    with open(args.json, "w") as fh:
        json.dump(res, fh, indent=2)
    _print_table(res)
    return 0


def _sp(v, unit=""):
    return f"{v['median']}{unit} [{v['min']}-{v['max']}]"


def _print_table(res):
    print(
        f"xapi-sim benchmarks ({res['mode']} mode, {res['machine']['cpus']} CPUs, "
        f"Python {res['machine']['python']}, {res['total_s']} s); median [min-max]"
    )
    for k, v in res.get("call_rate", {}).items():
        print(
            f"  call rate {k:<16} sim {_sp(v['sim_calls_per_s'], '/s')}  floor "
            f"{_sp(v['floor_calls_per_s'], '/s')}  ratio {_sp(v['ratio'])}"
        )
    wk = res.get("workers")
    for method in WORKER_CALLS if wk else ():
        v = wk[method]
        print(
            f"  {wk['pools']} pools, {wk['clients']} clients on their masters, {method}: one "
            f"process {_sp(v['one_process_calls_per_s'], '/s')}  --workers {wk['workers']} "
            f"{_sp(v['workers_calls_per_s'], '/s')}  ratio {_sp(v['ratio'])}"
        )
        print(
            f"    server cores {_sp(v['one_process_server_cores'])} / "
            f"{_sp(v['workers_server_cores'])}, CPU per call "
            f"{_sp(v['one_process_server_us_per_call'], ' us')} / "
            f"{_sp(v['workers_server_us_per_call'], ' us')}"
        )
    ev = res.get("events")
    if ev:
        print(
            f"  events: {ev['waiters']} waiters, {ev['wakeups']} wake-ups, received"
            f" ({ev['stamped_by']} stamps): p50 {ev['p50_ms']} ms, p99 {ev['p99_ms']} ms;"
            f" per run p99 {_sp(ev['runs_p99_ms'], ' ms')}; seen by the client's selector:"
            f" p50 {ev['seen_p50_ms']} ms, p99 {ev['seen_p99_ms']} ms"
        )
    bw = res.get("big_world", {})
    for n, v in bw.get("xe_vm_list", {}).items():
        print(f"  xe vm-list {n:>6} VMs: {_sp(v['seconds'], ' s')}")
    for k, v in bw.get("memory", {}).items():
        if k == "vms":
            continue
        print(
            f"  memory {k:<24} {v['clients']} client(s), reply {v['reply_mib']} MiB: RSS "
            f"{v['rss_before_mib']} -> peak {v['peak_rss_mib']} MiB"
            f" (x{v.get('growth_per_reply')} of the reply)"
        )
    br = res.get("bulk_read")
    if br:
        for codec in ("xml", "json"):
            v = br[codec]
            print(
                f"  bulk read {codec:<4} {br['vms']} VMs in process: server {v['server_s']}s"
                f"  floor {v['floor_dumps_s']}s  ratio {v['ratio']}"
            )
    for k, v in res.get("startup", {}).items():
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
