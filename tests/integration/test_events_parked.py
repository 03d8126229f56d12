"""``event.from`` long-polls over HTTP wait without a thread each (classes/event.py
``Parked``/``Pump``): hundreds of them cost no worker threads, one change answers them all
with the same batch, a logout answers SESSION_INVALID, and the timeout is kept."""

from __future__ import annotations

import selectors
import threading
import time
import xmlrpc.client

from xapi_sim import bench_load
from xapi_sim.classes import event as ev
from xapi_sim.dispatch import Dispatcher
from xapi_sim.testing import running_world


def _addr(url):
    host, port = url[len("http://") :].rstrip("/").split(":")
    return host, int(port)


def _open_polls(host, port, n, params):
    req = bench_load.request("xml", host, port, bench_load.encode("xml", "event.from", params))
    conns = [bench_load.Conn(host, port) for _ in range(n)]
    for c in conns:
        c.send(req)
    return conns


def _read_all(conns, timeout):
    sel = selectors.DefaultSelector()
    got = {}

    def on_reply(c, body):
        got[id(c)] = body

    for c in conns:
        c.on_reply = on_reply
        sel.register(c.sock, selectors.EVENT_READ, c)
    bench_load._loop(sel, lambda: len(got) == len(conns), time.perf_counter() + timeout)
    for c in conns:
        c.sock.close()
    return [xmlrpc.client.loads(got[id(c)])[0][0] for c in conns]


def test_hundreds_of_long_polls_park_and_one_change_answers_them():
    with running_world(seed=1) as w:
        host, port = _addr(w.master_url())
        s = bench_load.call("xml", host, port, "session.login_with_password", ["root", "xenroot"])
        pool = bench_load.call("xml", host, port, "pool.get_all", [s])[0]
        tok = bench_load.call("xml", host, port, "event.from", [s, ["pool"], "", 0.0])["token"]
        conns = _open_polls(host, port, 200, [s, ["pool"], tok, 30.0])
        time.sleep(1.5)  # all parked; the workers that parked them have gone idle and ended
        assert w.sim.front.workers.threads < 50
        bench_load.call("xml", host, port, "pool.add_to_other_config", [s, pool, "k", "v"])
        replies = _read_all(conns, 20)
        assert all(r["Status"] == "Success" for r in replies)
        batches = [r["Value"] for r in replies]
        assert all(b == batches[0] for b in batches)
        assert [e["operation"] for e in batches[0]["events"]] == ["mod"]
        assert batches[0]["events"][0]["snapshot"]["other_config"]["k"] == "v"


def test_a_parked_poll_keeps_its_timeout_and_its_session():
    with running_world(seed=1) as w:
        host, port = _addr(w.master_url())
        s = bench_load.call("xml", host, port, "session.login_with_password", ["root", "xenroot"])
        tok = bench_load.call("xml", host, port, "event.from", [s, ["pool"], "", 0.0])["token"]
        t0 = time.monotonic()
        [r] = _read_all(_open_polls(host, port, 1, [s, ["pool"], tok, 0.6]), 10)
        took = time.monotonic() - t0
        assert r["Status"] == "Success" and r["Value"]["events"] == []
        assert 0.5 < took < 5
        victim = bench_load.call(
            "xml", host, port, "session.login_with_password", ["root", "xenroot"]
        )
        conns = _open_polls(host, port, 5, [victim, ["pool"], tok, 30.0])
        time.sleep(0.3)
        bench_load.call("xml", host, port, "session.logout", [victim])
        replies = _read_all(conns, 10)
        assert all(r["ErrorDescription"] == ["SESSION_INVALID", victim] for r in replies)


def test_in_process_callers_still_block():
    with running_world(seed=1) as w:
        d = Dispatcher(w.world)
        m = w.world.pools[0].master
        s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
        tok = d.dispatch(m, "event.from", [s, ["pool"], "", 0.0])["token"]
        out = d.dispatch(m, "event.from", [s, ["pool"], tok, 0.2])
        assert isinstance(out, dict) and out["events"] == []


def test_many_threads_park_and_change_at_once():
    """Waiters parked from many threads while others change the database: every one is
    answered exactly once."""
    with running_world(seed=1) as w:
        d = Dispatcher(w.world)
        m = w.world.pools[0].master
        s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
        pool = d.dispatch(m, "pool.get_all", [s])[0]
        answers: list = []
        lock = threading.Lock()

        def park(i):
            tok = d.dispatch(m, "event.from", [s, ["pool"], "", 0.0])["token"]
            got = d.dispatch(m, "event.from", [s, ["pool"], tok, 10.0], defer_ok=True)
            if isinstance(got, ev.Parked):

                def finish(ok, value, i=i):
                    with lock:
                        answers.append((i, ok))

                got.start(finish)
            else:
                with lock:
                    answers.append((i, True))

        def change(i):
            d.dispatch(m, "pool.add_to_other_config", [s, pool, f"t{i}", "v"])

        ths = [threading.Thread(target=park, args=(i,)) for i in range(40)]
        ths += [threading.Thread(target=change, args=(i,)) for i in range(10)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        change(99)  # anyone parked after the last change is answered by this one
        deadline = time.monotonic() + 10
        while len(answers) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(i for i, _ in answers) == list(range(40))
        assert all(ok for _, ok in answers)


def _dispatcher(w):
    """(dispatcher, master, session, the pool, a VM) of a running world."""
    d = Dispatcher(w.world)
    m = w.world.pools[0].master
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    pool = d.dispatch(m, "pool.get_all", [s])[0]
    return d, m, s, pool, d.dispatch(m, "VM.get_all", [s])[0]


def _wait_for(answers, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(answers) < n and time.monotonic() < deadline:
        time.sleep(0.02)


def _park(d, m, s, classes, token, answers, lock, key):
    got = d.dispatch(m, "event.from", [s, classes, token, 30.0], defer_ok=True)
    if isinstance(got, ev.Parked):

        def finish(ok, value):
            with lock:
                answers.setdefault(key, []).append((ok, value))

        got.start(finish)
    else:
        with lock:
            answers.setdefault(key, []).append((True, got))


def test_a_change_answers_only_the_subscriptions_it_concerns():
    """The pump skips waiters whose classes a change did not touch (``Database.class_gen``),
    and waiters of one subscription share one answer, made once."""
    with running_world(seed=1) as w:
        d, m, s, pool, vm = _dispatcher(w)
        tok = d.dispatch(m, "event.from", [s, ["*"], "", 0.0])["token"]
        answers: dict = {}
        lock = threading.Lock()
        subs = {"pool": ["pool"], "vm": ["VM"], "one-vm": [f"vm/{vm}"], "all": ["*"]}
        for name, classes in subs.items():
            for i in range(3):
                _park(d, m, s, classes, tok, answers, lock, (name, i))
        time.sleep(0.2)
        assert answers == {}
        d.dispatch(m, "VM.set_name_description", [s, vm, "touched"])
        _wait_for(answers, 9)
        time.sleep(0.1)
        assert sorted({k[0] for k in answers}) == ["all", "one-vm", "vm"]
        for name in ("vm", "one-vm"):
            replies = [answers[(name, i)] for i in range(3)]
            assert all(len(r) == 1 and r[0][0] for r in replies)
            assert replies[0][0][1] is replies[1][0][1] is replies[2][0][1]  # made once
            [event] = replies[0][0][1]["events"]
            assert (event["class"], event["ref"], event["operation"]) == ("vm", vm, "mod")
        d.dispatch(m, "pool.add_to_other_config", [s, pool, "k", "v"])
        _wait_for(answers, 12)
        assert all(len(answers[("pool", i)]) == 1 for i in range(3))
        [event] = answers[("pool", 0)][0][1]["events"]
        assert event["class"] == "pool" and event["snapshot"]["other_config"]["k"] == "v"


def test_waiters_of_many_classes_lose_no_change_under_concurrent_writes():
    """Threads park waiters on several classes while others write those classes and
    unrelated ones (sessions, tasks): once each class has had a change after every waiter
    parked, every waiter has been answered exactly once, with events of its classes only."""
    with running_world(seed=1) as w:
        d, m, s, pool, vm = _dispatcher(w)
        net = d.dispatch(m, "network.get_all", [s])[0]
        answers: dict = {}
        lock = threading.Lock()
        classes = [["pool"], ["VM"], ["network"], ["pool", "network"]]

        def park(i):
            cls = classes[i % len(classes)]
            tok = d.dispatch(m, "event.from", [s, cls, "", 0.0])["token"]
            _park(d, m, s, cls, tok, answers, lock, i)

        def write(i):
            kind = i % 4
            if kind == 0:
                d.dispatch(m, "pool.add_to_other_config", [s, pool, f"p{i}", "v"])
            elif kind == 1:
                d.dispatch(m, "VM.set_name_description", [s, vm, f"d{i}"])
            elif kind == 2:
                d.dispatch(m, "network.add_to_other_config", [s, net, f"n{i}", "v"])
            else:  # a class nobody here subscribes to
                t = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
                d.dispatch(m, "session.logout", [t])

        ths = [threading.Thread(target=park, args=(i,)) for i in range(48)]
        ths += [threading.Thread(target=write, args=(i,)) for i in range(24)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        for i in range(3):  # a change of each subscribed class after everyone parked
            write(i + 100)
        _wait_for(answers, 48)
        time.sleep(0.1)
        assert sorted(answers) == list(range(48))
        for i, got in answers.items():
            assert len(got) == 1 and got[0][0], (i, got)
            wanted = {c.lower() for c in classes[i % len(classes)]}
            events = got[0][1]["events"]
            assert events and {e["class"] for e in events} <= wanted
