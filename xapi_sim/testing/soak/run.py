"""The soak run: ``xapi-sim serve`` as a child process, the load and the chaos for a given
time, then the checks and a report (``main``, what ``scripts/soak.py`` runs)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from .calls import Stats, scenario_toml
from .chaos import Chaos
from .checks import all_invariants, all_vm_records, converge_all, layout, snapshot, verify_clients
from .load import Client, Poller

DESCRIPTION = (
    "Soak xapi-sim: mixed load plus injected faults for a given time, then check everything."
)


class Server:
    """``xapi-sim serve`` as a child process on loopback."""

    def __init__(self, workdir, scenario_path, state_dir=None, seed=1):
        self.workdir, self.scenario, self.state_dir, self.seed = (
            workdir,
            scenario_path,
            state_dir,
            seed,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.hosts = {}

    def start(self):
        ready = os.path.join(self.workdir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        cmd = [
            sys.executable,
            "-m",
            "xapi_sim",
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(self.seed),
            "--scenario",
            self.scenario,
            "--ready-file",
            ready,
        ]
        if self.state_dir:
            cmd += ["--state-dir", self.state_dir]
        log = open(os.path.join(self.workdir, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {self.workdir}/server.log")
            time.sleep(0.05)
        with open(ready) as fh:
            self.hosts = {h["name_label"]: h for h in json.load(fh)["hosts"]}
        return self

    def kill9(self):
        assert self.proc is not None, "not started"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def status(self):
        """(threads, resident memory in KiB) of the server process (Linux /proc)."""
        assert self.proc is not None, "not started"
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            return int(fields["Threads"]), int(fields["VmRSS"].split()[0])
        except (OSError, KeyError, ValueError):
            return None, None

    def cpu_seconds(self):
        """User + system CPU time of the server process so far (Linux /proc)."""
        assert self.proc is not None, "not started"
        try:
            with open(f"/proc/{self.proc.pid}/stat") as fh:
                parts = fh.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None


# -- the run -----------------------------------------------------------------------------------


def report(title, rows):
    print(f"\n{title}")
    for row in rows:
        print("  " + row)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="soak", description=DESCRIPTION)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--state-dir",
        metavar="DIR",
        help="serve with --state-dir DIR; kill -9 mid-run and at the end",
    )
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--pollers", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-chaos", action="store_true", help="load only, no injected faults")
    ap.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the work directory (server log, scenario) even on success",
    )
    args = ap.parse_args(argv)
    if args.state_dir and os.path.exists(os.path.join(args.state_dir, "state.json")):
        ap.error(f"{args.state_dir} already holds a world: give an empty or new directory")
    workdir = tempfile.mkdtemp(prefix="xapi-sim-soak-")
    scn = os.path.join(workdir, "soak.toml")
    with open(scn, "w") as fh:
        fh.write(scenario_toml(max(60, args.clients)))
    server = Server(workdir, scn, args.state_dir, args.seed).start()
    checks = []  # (name, ok, detail)
    stats = Stats()
    t_start = time.monotonic()
    try:
        urls = [server.hosts["a1"]["url"], server.hosts["b1"]["url"]]
        lay = layout(urls)
        threads0, rss0 = server.status()
        stop = threading.Event()
        clients, pollers = [], []
        names = sorted(set(lay[0][4]) | set(lay[1][4]))
        for i in range(args.clients):
            name = names[i]
            p = 0 if name in lay[0][4] else 1
            url, pool, hosts, _, vms = lay[p]
            clients.append(Client(i, url, vms[name], pool, hosts, stats, stop, args.seed))
        for i in range(args.pollers):
            pollers.append(Poller(i, urls[i % 2], stats, stop))
        chaos = None
        if not args.no_chaos:
            chaos = Chaos(urls, [lay[0][3], lay[1][3]], clients, stats, stop, args.seed)
        workers = clients + pollers + ([chaos] if chaos else [])
        print(
            f"soak: {args.clients} clients, {args.pollers} pollers, "
            f"{'chaos' if chaos else 'no chaos'}, {args.seconds:g}s against "
            f"{server.hosts['a1']['url']} (2 pools, {sum(len(lay_[2]) for lay_ in lay)} "
            f"hosts, {len(names)} VMs){', state in ' + args.state_dir if args.state_dir else ''}"
        )
        for t in workers:
            t.start()
        killed = False
        deadline = t_start + args.seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if args.state_dir and not killed and time.monotonic() > t_start + args.seconds / 2:
                killed = True
                if chaos:
                    chaos.paused.set()
                t0 = time.monotonic()
                server.kill9()
                time.sleep(0.5)
                before = {h: v["url"] for h, v in server.hosts.items()}
                server.start()
                same = before == {h: v["url"] for h, v in server.hosts.items()}
                checks.append(
                    (
                        "kill -9 mid-load, restart from the state dir at the same addresses",
                        same,
                        f"back in {time.monotonic() - t0:.1f}s",
                    )
                )
                if chaos:
                    chaos.crashed.clear()  # a crashed host stays down across restarts
                    chaos.rules.clear()  # rules live in memory only
                    chaos.sessions.clear()
                    chaos.paused.clear()
        elapsed = time.monotonic() - t_start
        cpu = server.cpu_seconds()
        stop.set()
        t0 = time.monotonic()
        for t in workers:
            t.join(max(0.1, 30 - (time.monotonic() - t0)))
        hung = [t.name for t in workers if t.is_alive()]
        checks.append(
            (
                "every client, poller and chaos thread finished (no deadlock)",
                not hung,
                f"joined in {time.monotonic() - t0:.1f}s" + (f"; hung: {hung[:5]}" if hung else ""),
            )
        )
        if chaos:
            # hosts still crashed were powered on by settle(); a host crashed before the
            # mid-run restart is still down: power it on now
            chaos.settle()
            chaos.revive([(url, members) for url, _, _, members, _ in lay])
        time.sleep(0.3)
        bad = all_invariants(urls)
        checks.append(
            (
                "invariants: VMs resident only on hosts of their pool, power state "
                "consistent with resident_on and resident_VMs, host memory accounting, "
                "no stray pending task",
                not bad,
                "; ".join(bad[:5]),
            )
        )
        bad = verify_clients(urls, clients)
        checks.append(
            (
                "every acknowledged write visible (VM and pool other_config, "
                "name_description, power state)",
                not bad,
                "; ".join(bad[:5]),
            )
        )
        bad = converge_all(pollers, all_vm_records(urls))
        checks.append(
            ("every event.from cache equals the server's records", not bad, "; ".join(bad[:5]))
        )
        with stats.lock:
            problems = list(stats.problems)
        checks.append(
            (
                "no failed operation changed its VM, reads saw every acknowledged "
                "write, long-polls returned in time",
                not problems,
                "; ".join(problems[:5]),
            )
        )
        time.sleep(0.5)
        threads1, rss1 = server.status()
        if threads0 is not None and not killed:
            checks.append(
                (
                    f"server threads bounded (before {threads0}, after {threads1})",
                    threads1 <= threads0 + 8,
                    "",
                )
            )
            checks.append(
                (
                    f"server memory bounded (RSS {rss0 // 1024} MiB before, "
                    f"{rss1 // 1024} MiB after)",
                    rss1 - rss0 < 256 * 1024,
                    "",
                )
            )
        elif threads1 is not None:
            checks.append(
                (
                    f"server threads after the restart and the load: {threads1}; "
                    f"RSS {rss1 // 1024} MiB",
                    threads1 <= (threads0 or threads1) + 8,
                    "",
                )
            )
        if args.state_dir:
            before = snapshot(urls)
            server.kill9()
            server.start()
            after = snapshot(urls)
            diff = [r for r in before if before[r] != after.get(r)]
            checks.append(
                (
                    "after a final kill -9 and restart: every VM and pool as "
                    "acknowledged (uuids, refs, power state, placement, maps)",
                    not diff and len(before) == len(after),
                    f"{len(diff)} differ",
                )
            )
            bad = all_invariants(urls) + verify_clients(urls, clients)
            checks.append(
                (
                    "after the restart: invariants and acknowledged writes",
                    not bad,
                    "; ".join(bad[:5]),
                )
            )
    finally:
        server.stop()

    # -- what it did --
    total = stats.total()
    print(
        f"\n{total} calls in {elapsed:.1f}s ({total / elapsed:.0f}/s)"
        + (
            f"; server CPU {cpu:.1f}s" + (" since the restart" if args.state_dir else "")
            if cpu is not None
            else ""
        )
    )
    ops = sorted({op for op, _ in stats.counts})
    rows = []
    for op in ops:
        outs = {o: n for (o2, o), n in stats.counts.items() if o2 == op}
        lat = sorted(stats.lat.get(op, [0.0]))
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        detail = ", ".join(f"{o} {n}" for o, n in sorted(outs.items(), key=lambda kv: -kv[1]))
        rows.append(
            f"{op:32} {sum(outs.values()):7}  p50 {p50 * 1000:6.1f} ms  "
            f"p99 {p99 * 1000:7.1f} ms  {detail}"
        )
    report("calls per operation and outcome:", rows)
    if chaos:
        report("chaos:", [f"{a}: {n}" for a, n in sorted(chaos.actions.items())])
    polls = sum(p.polls for p in pollers)
    events = sum(p.events for p in pollers)
    report("event.from:", [f"{polls} polls, {events} events delivered"])
    report(
        "checks:",
        [
            ("PASS  " if ok else "FAIL  ") + name + (f" -- {detail}" if detail else "")
            for name, ok, detail in checks
        ],
    )
    failed = [c for c in checks if not c[1]]
    keep = failed or args.keep_logs
    print(
        f"\n{'FAILED' if failed else 'OK'}: {len(checks) - len(failed)}/{len(checks)} "
        f"checks passed" + (f" (server log in {workdir})" if keep else "")
    )
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0
