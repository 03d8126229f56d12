"""``xapi-sim serve --workers N``: the world's pools in N processes (docs/performance.md).

The parent process loads the scenario, splits its pools among N children (:func:`split`:
a standalone host is a pool of one, every pool lies whole in one child, children balanced
by host and VM count), and starts each child as ``python -m xapi_sim serve`` of its share
(:func:`sub_scenario`; the child learns its share from the ``XAPI_SIM_WORKER`` environment
variable). Each child builds its pools from a seed of its own (:func:`child_seed`, derived
from ``--seed``, N and its index), so no two objects of the world share a UUID or ref and
the same seed and N give the same world. Once every child's ready file exists the parent
writes the peers file (every child's control port: the children forward control calls over
it, ``multiproc_forward.py``), then ONE ready file with the single-process schema and the same
host table. SIGINT/SIGTERM to the parent stop every child; a child that dies makes the
parent stop the others, say which one and exit 1.

Cross-pool operations between children go over the wire as between separate worlds
(``classes/cross_pool_remote.py``); a ``pool.join`` to a master in another child answers
``JOINING_HOST_CONNECTION_FAILED`` (the master is not in the joiner's world), as today for
any address outside the world.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time

import attrs

from .scenario_spec import Scenario

ENV = "XAPI_SIM_WORKER"  # the child's share: JSON {index, count, hosts, token, peers, parent}
READY_TIMEOUT = 300.0  # seconds for every child to be ready
STOP_TIMEOUT = 15.0  # seconds a child gets to stop after SIGTERM before SIGKILL


# -- the split (pure) ---------------------------------------------------------------------


def units(scn: Scenario) -> list[tuple[list[str], int]]:
    """The scenario's pools in its host order, standalone hosts as pools of one: (host
    names, weight = hosts + VMs), a VM counted in the pool of its host (or, without one,
    of the first host, as the loader places it)."""
    pool_of = {h.name_label: h.name_label for h in scn.hosts}
    for p in scn.pools:
        for h in (p.master, *p.members):
            pool_of[h] = p.master
    members: dict[str, list[str]] = {}
    for h in scn.hosts:
        members.setdefault(pool_of[h.name_label], []).append(h.name_label)
    weight = {k: len(v) for k, v in members.items()}
    first = scn.hosts[0].name_label
    for v in scn.vms:
        weight[pool_of[v.host or first]] += 1
    return [(names, weight[k]) for k, names in members.items()]


def split(scn: Scenario, n: int) -> list[list[str]]:
    """The host names of each of ``n`` children: whole pools, heaviest first to the
    lightest child (ties to the lower index); deterministic. ValueError when the world has
    fewer pools than ``n``."""
    us = units(scn)
    if n > len(us):
        raise ValueError(f"--workers {n}: the world has only {len(us)} pool(s) to share out")
    load = [0] * n
    got: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(len(us)), key=lambda i: (-us[i][1], i)):
        c = min(range(n), key=lambda c: (load[c], c))
        got[c].append(i)
        load[c] += us[i][1]
    order = {h.name_label: k for k, h in enumerate(scn.hosts)}
    out = []
    for idx in got:
        names = [h for i in idx for h in us[i][0]]
        out.append(sorted(names, key=order.__getitem__))
    return out


def sub_scenario(scn: Scenario, hosts) -> Scenario:
    """The part of ``scn`` made of the pools of ``hosts`` (whole pools), with their VMs, SRs
    and networks; entries without a host belong to the first host's pool as in the loader."""
    keep = set(hosts)
    first = scn.hosts[0].name_label
    return attrs.evolve(
        scn,
        hosts=tuple(h for h in scn.hosts if h.name_label in keep),
        pools=tuple(p for p in scn.pools if p.master in keep),
        vms=tuple(v for v in scn.vms if (v.host or first) in keep),
        srs=tuple(s for s in scn.srs if s.hosts[0] in keep),
        networks=tuple(nw for nw in scn.networks if (nw.host or first) in keep),
    )


def child_seed(seed: int | None, n: int, index: int) -> int | None:
    """The seed of child ``index`` of ``n``: distinct per child, the same for the same
    ``--seed`` and N; None (random) without ``--seed``."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"xapi-sim workers {seed} {n} {index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def worker_spec() -> dict | None:
    """This process's share when it is a child of ``serve --workers``, else None."""
    text = os.environ.get(ENV)
    return json.loads(text) if text else None


# -- the ready file and the host table ----------------------------------------------------


def write_json(path, data) -> None:
    """Atomically write ``data`` as JSON (tmp + rename in the same directory)."""
    text = json.dumps(data, indent=2) + "\n"
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".ready-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def print_host_table(desc: dict) -> None:
    """The table ``serve`` prints: one line per host, then the page."""
    print(f"{'HOST':<12} {'POOL':<12} {'ROLE':<8} URLS (HTTP and HTTPS on one port)")
    for h in desc["hosts"]:
        print(
            f"{h['name_label']:<12} {h['pool'] or '-':<12} "
            f"{'master' if h['master'] else 'member':<8} {h['http_url']}  {h['https_url']}"
        )
    if desc["hosts"]:  # the page of the world (xapi_sim/web), served by every endpoint
        print(f"{'PAGE':<34} {desc['hosts'][0]['http_url']}sim/  (any host's URL + sim/)")


# -- the parent ---------------------------------------------------------------------------


def _alias_mode(bind: str) -> bool:
    try:
        ip = ipaddress.ip_address(bind)
    except ValueError:
        return False
    return ip.version == 4 and ip.is_loopback


def _child_argv(args, index: int, first_octet: int, ready: str) -> list[str]:
    """``serve`` options of child ``index`` (its share comes in the environment)."""
    argv = [sys.executable, "-m", "xapi_sim", "serve", "--ready-file", ready]
    if args.scenario:
        argv += ["--scenario", args.scenario]
    if args.release is not None:
        argv += ["--release", args.release]
    if _alias_mode(args.bind):  # each child's hosts from their own loopback address on
        argv += ["--bind", str(ipaddress.ip_address(args.bind) + first_octet)]
        argv += ["--port", str(args.port)]
    else:  # one port per host: only the first child may take the fixed one
        argv += ["--bind", args.bind, "--port", str(args.port if index == 0 else 0)]
    argv += ["--user", args.user, "--password", args.password]
    argv += ["--auth-delay", repr(args.auth_delay)]
    argv += ["--log-level", logging.getLevelName(args.log_level)]
    if args.log_file:
        argv += ["--log-file", args.log_file]
    if args.tls_cert:
        argv += ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key]
    if args.allow_remote_migration:
        argv.append("--allow-remote-migration")
    seed = child_seed(args.seed, args.workers, index)
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv


class Children:
    """The running children: start, watch, stop."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.shares: list[list[str]] = []

    def start(self, argv, env, share):
        self.procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL))
        self.shares.append(share)

    def dead(self) -> int | None:
        """The index of a child that has exited, or None."""
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                return i
        return None

    def describe(self, i) -> str:
        p = self.procs[i]
        code = p.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"status {code}"
        return f"worker {i} (pid {p.pid}, hosts {', '.join(self.shares[i])}) exited with {how}"

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_parent(args, scn: Scenario, source: str) -> int:
    """``serve --workers N`` (N > 1): start the children, one ready file, wait, stop."""
    try:
        shares = split(scn, args.workers)
    except ValueError as e:
        print(f"xapi-sim: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    kids = Children()
    with tempfile.TemporaryDirectory(prefix="xapi-sim-workers-") as tmp:
        peers = os.path.join(tmp, "peers.json")
        token = secrets.token_hex(16)
        readies = [os.path.join(tmp, f"ready-{i}.json") for i in range(len(shares))]
        octet = 0
        try:
            for i, share in enumerate(shares):
                spec = {
                    "index": i,
                    "count": len(shares),
                    "hosts": share,
                    "token": token,
                    "peers": peers,
                    "parent": os.getpid(),
                }
                env = dict(os.environ, **{ENV: json.dumps(spec)})
                kids.start(_child_argv(args, i, octet, readies[i]), env, share)
                octet += len(share)
            descs = _wait_ready(kids, readies, stop)
            if descs is None and kids.dead() is None and stop.is_set():
                kids.stop()
                print("xapi-sim: stopped", flush=True)
                return 0
            if descs is None:
                return _failed(kids)
            ports = []
            for i in range(len(shares)):  # written by each child before its ready file
                with open(os.path.join(tmp, f"control-{i}")) as fh:
                    ports.append(fh.read().strip())
            write_json(peers, ports)
            desc = _aggregate(scn, descs)
            print(f"xapi-sim: {len(desc['hosts'])} hosts from {source}, in {len(shares)} workers")
            print_host_table(desc)
            for i, p in enumerate(kids.procs):
                print(f"worker {i}: pid {p.pid}, hosts {', '.join(shares[i])}")
            print(
                "TLS: "
                + (
                    f"{args.tls_cert} on every host"
                    if args.tls_cert
                    else "a self-signed certificate per host (made at its first TLS client), "
                    "in a temporary directory of its worker"
                )
            )
            print(f"login: {args.user} / {args.password}    (Ctrl-C to stop)", flush=True)
            if args.ready_file:
                write_json(args.ready_file, desc)
            while not stop.wait(0.2):
                if kids.dead() is not None:
                    return _failed(kids)
        finally:
            kids.stop()
    print("xapi-sim: stopped", flush=True)
    return 0


def _failed(kids: Children) -> int:
    """A child exited (or they were not ready in time): stop the others, say which."""
    i = kids.dead()
    if i is not None:
        print(f"xapi-sim: {kids.describe(i)}; stopping the others", file=sys.stderr, flush=True)
    kids.stop()
    return 1


def _wait_ready(kids: Children, readies, stop) -> list[dict] | None:
    """Every child's ready file, or None if one exited (or a signal came) first."""
    deadline = time.monotonic() + READY_TIMEOUT
    descs: list[dict | None] = [None] * len(readies)
    while not stop.is_set():
        for i, path in enumerate(readies):
            if descs[i] is None and os.path.exists(path):
                with open(path) as fh:
                    descs[i] = json.load(fh)
        if all(d is not None for d in descs):
            return [d for d in descs if d is not None]
        if kids.dead() is not None:
            return None
        if time.monotonic() > deadline:
            print(f"xapi-sim: the workers were not ready in {READY_TIMEOUT:g} s", file=sys.stderr)
            return None
        time.sleep(0.02)
    return None


def _aggregate(scn: Scenario, descs: list[dict]) -> dict:
    """One ready description of the whole world, hosts in the scenario's order."""
    order = {h.name_label: k for k, h in enumerate(scn.hosts)}
    hosts = [h for d in descs for h in d["hosts"]]
    hosts.sort(key=lambda h: order.get(h["name_label"], len(order)))
    return {"hosts": hosts}
