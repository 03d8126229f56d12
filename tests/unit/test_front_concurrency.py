"""The HTTP front's shared structures under many threads (xapi_sim/wire/front.py): the worker
pool runs every job exactly once and never more threads than its bound, shrinking when idle;
``Front.call`` from many threads runs everything on the loop thread; listeners come and go
(host crash and power-on) while clients hammer them, and nothing hangs or leaks.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time

import XenAPI

from xapi_sim.testing import running_world
from xapi_sim.wire.front import Front, Workers


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_workers_run_every_job_once_within_the_bound():
    pool = Workers(max_workers=8, name="t-workers", idle=0.3)
    lock = threading.Lock()
    done = []
    running = [0]
    peak = [0]

    def job(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.0005 if i % 7 == 0 else 0)
        with lock:
            running[0] -= 1
            done.append(i)

    def submitter(base):
        for i in range(base, base + 500):
            pool.submit(job, i)

    threads = [threading.Thread(target=submitter, args=(k * 500,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wait_for(lambda: len(done) == 8000, 20)
    assert sorted(done) == list(range(8000))
    assert 1 <= peak[0] <= 8
    assert pool.threads <= 8
    assert wait_for(lambda: pool.threads == 0, 5), pool.threads  # idle threads end
    pool.submit(job, 8000)  # and come back
    assert wait_for(lambda: len(done) == 8001, 5)
    pool.stop()


def test_blocked_workers_queue_the_rest_in_order():
    pool = Workers(max_workers=4, name="t-block", idle=0.5)
    gate = threading.Event()
    started, finished = [], []
    lock = threading.Lock()

    def job(i):
        with lock:
            started.append(i)
        gate.wait(10)
        with lock:
            finished.append(i)

    for i in range(12):
        pool.submit(job, i)
    assert wait_for(lambda: len(started) == 4, 5)
    time.sleep(0.1)
    assert len(started) == 4 and pool.backlog() == 8  # bounded: the rest wait
    gate.set()
    assert wait_for(lambda: len(finished) == 12, 5)
    assert started[4:] == list(range(4, 12))  # queued jobs run in order
    pool.stop()


def test_front_call_runs_on_the_loop_from_many_threads():
    front = Front(name="t-front").start()
    counter = {"n": 0}
    wrong_thread = []

    def bump():
        if not front.in_loop():
            wrong_thread.append(threading.current_thread().name)
        counter["n"] += 1  # loop-owned: no lock needed
        return counter["n"]

    def caller(_):
        return [front.call(bump) for _ in range(200)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        results = [v for vs in ex.map(caller, range(32)) for v in vs]
    assert counter["n"] == 6400 and sorted(results) == list(range(1, 6401))
    assert not wrong_thread
    front.stop()
    assert front.call(bump) == 6401  # after stop: runs in the caller
    t0 = time.monotonic()
    front.stop()  # idempotent
    assert time.monotonic() - t0 < 1


def test_listeners_come_and_go_under_load():
    """xs4 crashes and powers on repeatedly while 8 clients call it and 8 others call xs1."""
    with running_world(seed=3) as w:
        xs1, xs4 = w.url("xs1"), w.url("xs4")
        stop = threading.Event()
        errors = []
        ok = {"xs1": 0, "xs4": 0}
        lock = threading.Lock()

        def client(name, url):
            while not stop.is_set():
                s = XenAPI.Session(url)
                try:
                    s.xenapi.login_with_password("root", "xenroot")
                    for _ in range(5):
                        s.xenapi.host.get_all_records()
                    s.xenapi.session.logout()
                    with lock:
                        ok[name] += 1
                except Exception as e:  # noqa: BLE001 -- xs4 is down half the time
                    if name == "xs1":
                        errors.append(repr(e))
                    time.sleep(0.01)
                finally:
                    s._ServerProxy__close()  # XenAPI: s.close() is an RPC

        threads = [
            threading.Thread(target=client, args=("xs1" if i % 2 else "xs4", xs1 if i % 2 else xs4))
            for i in range(16)
        ]
        for t in threads:
            t.start()
        for _ in range(8):  # what sim.host_crash / sim.host_power_on do
            time.sleep(0.15)
            w.world.host_down(w.host("xs4"), state="crashed")
            time.sleep(0.1)
            w.world.host_boot(w.host("xs4"))
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads), "a client hangs"
        assert not errors, errors[:5]  # the other host never noticed
        assert ok["xs1"] > 0 and ok["xs4"] > 0
        # every connection closed by its client is gone from the front
        assert wait_for(lambda: w.sim.front.connections() == 0, 5), w.sim.front.connections()
        host, port = xs4.split("//")[1].rstrip("/").rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=2).close()  # listening again


def test_a_light_load_keeps_few_workers():
    """Idle workers are woken last-idle-first: after a burst, a trickle of jobs is served
    by one or two threads and the others end."""
    pool = Workers(max_workers=16, name="t-lifo", idle=0.3)
    gate = threading.Event()
    for _ in range(16):
        pool.submit(gate.wait, 5)
    assert wait_for(lambda: pool.threads == 16, 5)
    gate.set()
    done = []
    t_end = time.monotonic() + 1.2
    while time.monotonic() < t_end:  # one short job every 20 ms
        pool.submit(done.append, 1)
        time.sleep(0.02)
    assert pool.threads <= 3, pool.threads
    assert len(done) > 30
    pool.stop()
