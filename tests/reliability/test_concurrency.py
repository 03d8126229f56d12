"""Concurrent load (issue 7 item 2), a short CI version of scripts/soak.py
(``xapi_sim.testing.soak``).

50 XenAPI clients, each owning a VM of a generated two-pool world, mix reads, writes (map
edits on their VM and on the shared pool record, name changes) and VM operations (start,
clean_shutdown, suspend, resume, pool_migrate, hard_reboot) while 50 ``event.from``
long-polls run, all at once. Then: every thread finished within a deadline (no deadlock);
every acknowledged write is visible (no lost update); invariants hold (each VM resident
only on hosts of its pool, power state consistent with ``resident_on`` and
``host.resident_VMs``, host memory accounting, no stray pending task); every poller's event
cache equals the server's records; the front's worker threads return to their count before
the load and memory does not grow with a second round. Slow and stalled clients -- idle
keep-alive sockets, half-sent requests, byte-a-second trickles -- hold no thread, do not
block anyone and are closed by the idle and request timeouts.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import XenAPI

from xapi_sim.testing import running_world, soak
from xapi_sim.wire import http as http_mod

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"  # the launcher

IDLE, REQUEST = 1.5, 2.5


@pytest.fixture
def lab():
    with running_world(soak.scenario_toml(60), seed=4) as w:
        w.world.idle_timeout = IDLE  # read when a connection is accepted
        w.world.request_timeout = REQUEST
        yield w


def server_threads():
    """Threads of the HTTP fronts' worker pools (no thread is kept per connection)."""
    return sum(1 for t in threading.enumerate() if "-worker-" in t.name)


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def rss_kib():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return None


def one_round(w, seconds, clients_n=50, pollers_n=50, seed=0):
    urls = [w.url("a1"), w.url("b1")]
    lay = soak.layout(urls)
    stats, stop, gate = soak.Stats(), threading.Event(), threading.Event()
    names = sorted(set(lay[0][4]) | set(lay[1][4]))
    clients = []
    for i in range(clients_n):
        p = 0 if names[i] in lay[0][4] else 1
        url, pool, hosts, _, vms = lay[p]
        clients.append(
            soak.Client(i, url, vms[names[i]], pool, hosts, stats, stop, seed, gate=gate)
        )
    # server, clients and pollers share one interpreter here: allow for the GIL in the
    # long-poll timing (the soak script runs the server in its own process)
    pollers = [
        soak.Poller(i, urls[i % 2], stats, stop, timeout=1.0, slack=8.0, gate=gate)
        for i in range(pollers_n)
    ]
    for t in clients + pollers:
        t.start()
    gate.set()  # all at once
    time.sleep(seconds)
    stop.set()
    t0 = time.monotonic()
    for t in clients + pollers:
        t.join(max(0.1, 20 - (time.monotonic() - t0)))
    hung = [t.name for t in clients + pollers if t.is_alive()]
    assert not hung, f"deadlock or hang: {hung[:5]} still running after 20 s"
    problems = list(stats.problems) + soak.all_invariants(urls)
    problems += soak.verify_clients(urls, clients)
    problems += soak.converge_all(pollers, soak.all_vm_records(urls))
    assert not problems, "\n".join(problems[:20])
    return stats, clients, pollers


def test_fifty_clients_and_fifty_long_polls(lab):
    w = lab.world
    before = server_threads()
    stats, clients, pollers = one_round(lab, 2.5)
    ok = sum(n for (op, out), n in stats.counts.items() if out == "ok")
    vm_ops = sum(
        n
        for (op, out), n in stats.counts.items()
        if out == "ok"
        and op
        in (
            "VM.start",
            "VM.clean_shutdown",
            "VM.suspend",
            "VM.resume",
            "VM.pool_migrate",
            "VM.hard_reboot",
        )
    )
    failed = {k: n for k, n in stats.counts.items() if k[1] != "ok"}
    assert not failed, failed  # no faults injected: everything succeeds
    assert ok > 150 and vm_ops > 10, (ok, vm_ops)
    assert all(p.polls > 0 for p in pollers)
    # every connection closed by its client: the server's threads go back
    assert wait_for(lambda: server_threads() <= before, 5), (server_threads(), before)
    # nothing accumulates per call: sessions logged out or evicted, no task left. The
    # first round's pollers hold their caches of every record (the default templates
    # included): let them go before measuring, as the second round's are
    del clients, pollers
    gc.collect()
    rss1 = rss_kib()
    one_round(lab, 2.5, seed=1)
    gc.collect()
    rss2 = rss_kib()
    if rss1 is not None:
        assert rss2 - rss1 < 48 * 1024, f"memory grew by {(rss2 - rss1) // 1024} MiB"
    db = w.pools[0].db
    assert not [t for t in db.tables["task"].values() if t["status"] == "pending"]
    assert len(db.tables["session"]) <= 2 * (50 + 50) + 10  # two rounds of logins
    assert wait_for(lambda: server_threads() <= before, 5)


def _closed_within(sock, seconds):
    """Wait until the server closes ``sock``; return the time it took (None if not)."""
    sock.settimeout(seconds)
    t0 = time.monotonic()
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    except TimeoutError:
        return None


def test_slow_and_stalled_clients_cannot_block_others(lab):
    url = lab.master_url()
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    port = int(port)
    before = server_threads()
    idle = [socket.create_connection((host, port)) for _ in range(20)]
    half = []
    for _ in range(20):
        s = socket.create_connection((host, port))
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 500\r\n\r\n<methodCall><methodName>pool.ge"
        )
        half.append(s)
    heads = []
    for _ in range(10):
        s = socket.create_connection((host, port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Ty")  # not even the head
        heads.append(s)
    trickle_closed = []

    def trickle():
        """One byte every 0.4 s: never idle, but the request never completes."""
        s = socket.create_connection((host, port))
        s.settimeout(0.4)
        t0 = time.monotonic()
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
        for b in request:
            try:
                s.send(bytes([b]))
                if s.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        trickle_closed.append(time.monotonic() - t0)
        s.close()

    trick = [threading.Thread(target=trickle) for _ in range(5)]
    for t in trick:
        t.start()
    time.sleep(0.2)
    # 55 stalled connections are held, and not one thread for them
    assert lab.sim.front.connections() >= 55
    assert server_threads() <= before
    # meanwhile, a normal client is served at once
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "impatient")
    t0 = time.monotonic()
    for _ in range(30):
        s.xenapi.VM.get_all_records()
    assert time.monotonic() - t0 < 3
    s.xenapi.session.logout()
    soak.close(s)
    # the server closes the stalled ones: idle after IDLE, half-sent within IDLE of the
    # last byte, trickles at the request deadline
    for sock in idle + half + heads:
        took = _closed_within(sock, IDLE + REQUEST + 2)
        assert took is not None, "a stalled connection was never closed"
        sock.close()
    for t in trick:
        t.join(REQUEST + 5)
    assert len(trickle_closed) == 5
    assert all(REQUEST - 0.5 <= d <= REQUEST + 2 for d in trickle_closed), trickle_closed
    assert wait_for(lambda: server_threads() <= before, 5), (server_threads(), before)


def test_when_every_connection_slot_is_taken_the_idle_timeout_frees_them(monkeypatch):
    monkeypatch.setattr(http_mod, "MAX_CONNECTIONS", 8)
    with running_world(seed=2) as w:
        w.world.idle_timeout = 1.0
        url = w.master_url()
        host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
        hogs = [socket.create_connection((host, int(port))) for _ in range(8)]
        time.sleep(0.2)
        t0 = time.monotonic()
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot")  # waits for a free slot
        waited = time.monotonic() - t0
        assert 0.5 <= waited < 4, waited
        s.xenapi.session.logout()
        soak.close(s)
        for h in hogs:
            h.close()


def test_the_soak_script_runs_and_its_checks_pass(tmp_path):
    """A few seconds of scripts/soak.py (load, faults, crashes, logouts, kill -9 and restart
    from a state dir), so the script cannot rot; long runs are for humans."""
    r = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--seconds",
            "3",
            "--clients",
            "6",
            "--pollers",
            "2",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "FAIL " not in r.stdout and "checks passed" in r.stdout
    assert "calls per operation and outcome" in r.stdout
