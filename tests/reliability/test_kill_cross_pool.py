"""``kill -9`` during cross-pool migrations (issue 11): after every restart each VM is in
exactly one pool, whole, and every relation holds.

A ``xapi-sim serve --state-dir`` process serves two pools; a client migrates VMs back and
forth between them (``host.migrate_receive`` + ``VM.migrate_send``, one transaction over
both pools); the test kills the process with SIGKILL at a random moment, restarts it from
the state dir (a fresh process each time, started ahead: ``Server(warm=True)``), and checks.
50 kills in all.
"""

from __future__ import annotations

import random
import threading
import time

import XenAPI

from tests.reliability.statedir_kit import Server
from tests.reliability.test_deadlocks import two_pools

KILLS = 50


def login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot")
    return s


def migrate_forever(urls, stop, counts):
    """Move every VM of both pools to the other pool, again and again, until ``stop``."""
    try:
        x = [login(u).xenapi for u in urls]
        while not stop.is_set():
            for src in (0, 1):
                dst = 1 - src
                hosts = sorted(x[dst].host.get_all())
                net = x[dst].network.get_all()[0]
                for vm, rec in x[src].VM.get_all_records().items():
                    if rec["is_a_template"] or rec["is_control_domain"] or stop.is_set():
                        continue
                    dest = x[dst].host.migrate_receive(random.choice(hosts), net, {})
                    x[src].VM.migrate_send(vm, dest, True, {}, {}, {})
                    counts[0] += 1
    except Exception:  # noqa: BLE001 -- the server was killed under us
        pass


def check(urls, uuids):
    """Each VM in exactly one pool; resident_on and resident_VMs agree; no operation left."""
    where = {}
    for i, u in enumerate(urls):
        x = login(u).xenapi
        vms = x.VM.get_all_records()
        hosts = x.host.get_all_records()
        for ref, rec in vms.items():
            if rec["is_a_template"] or rec["is_control_domain"]:
                continue
            where.setdefault(rec["uuid"], []).append(i)
            assert rec["current_operations"] == {}, rec["current_operations"]
            if rec["power_state"] == "Running":
                assert rec["resident_on"] in hosts
                assert ref in hosts[rec["resident_on"]]["resident_VMs"]
            else:
                assert rec["resident_on"] == "OpaqueRef:NULL"
        for href, h in hosts.items():
            for ref in h["resident_VMs"]:
                assert vms[ref]["resident_on"] == href
    assert sorted(where) == sorted(uuids), (sorted(where), sorted(uuids))
    assert all(len(p) == 1 for p in where.values()), where


def test_kill_9_during_cross_pool_migrations(tmp_path):
    scn = tmp_path / "two.toml"
    scn.write_text(two_pools(3))
    srv = Server(tmp_path / "state", tmp_path, "--scenario", str(scn), warm=True).start()
    urls = [srv.url("a1"), srv.url("b1")]
    uuids = [
        r["uuid"]
        for u in urls
        for r in login(u).xenapi.VM.get_all_records().values()
        if not r["is_a_template"] and not r["is_control_domain"]
    ]
    rng = random.Random(7)
    migrated = [0]
    try:
        for _ in range(KILLS):
            stop = threading.Event()
            t = threading.Thread(target=migrate_forever, args=(urls, stop, migrated), daemon=True)
            t.start()
            time.sleep(rng.uniform(0.05, 0.4))
            srv.kill9()
            stop.set()
            t.join(10)
            srv.start()
            urls = [srv.url("a1"), srv.url("b1")]
            check(urls, uuids)
    finally:
        srv.close_spare()
        if srv.proc.poll() is None:
            srv.kill9()
    assert migrated[0] > KILLS  # the kills did land in the middle of migrations
