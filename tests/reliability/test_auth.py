"""Authentication (issue 12, items 9 and 11): passwords belong to a pool; failed logins are
slowed down as XAPI does, without slowing anyone else, and counted per pool.

Real clients: the ``XenAPI`` package over XML-RPC, raw JSON-RPC for the control API, the
``xapi-sim serve`` command line. The reference is xen-api ``ocaml/xapi/xapi_session.ml``
(see the docstring of ``xapi_sim/classes/session.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client

import pytest
import XenAPI

from xapi_sim import cli, persist
from xapi_sim import sessions as sess
from xapi_sim.testing import running_world


def login(url, pwd="xenroot"):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", pwd, "2.5", "test-auth")
    return s


def local_login(url, pwd="xenroot"):
    s = XenAPI.Session(url)
    s.slave_local_login_with_password("root", pwd)
    return s


def refused(fn, *args):
    """The XAPI error of a call expected to fail."""
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def raw(url, method, *args):
    """The error description of a call, or ["Success"]: XenAPI would retry SESSION_INVALID."""
    proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
    r = getattr(proxy, method)(*args)
    return ["Success"] if r["Status"] == "Success" else r["ErrorDescription"]


def can_login(url, pwd):
    try:
        login(url, pwd).xenapi.session.logout()
        return True
    except XenAPI.Failure as e:
        assert e.details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
        return False


def can_local_login(url, pwd):
    try:
        s = local_login(url, pwd)
        s.xenapi.session.logout()  # XenAPI sends session.local_logout
        return True
    except XenAPI.Failure as e:
        assert e.details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
        return False


# -- item 9: passwords belong to a pool ---------------------------------------------------


def test_standalone_host_change_password_stays_in_its_own_pool(fresh_world):
    w = fresh_world
    s4 = login(w.url("xs4"))
    s4.xenapi.session.change_password("xenroot", "secret4")
    assert can_login(w.url("xs4"), "secret4")
    assert not can_login(w.url("xs4"), "xenroot")
    # every other pool keeps its password: pool-a (master and members) and standalone xs5
    assert can_login(w.url("xs1"), "xenroot") and not can_login(w.url("xs1"), "secret4")
    assert can_local_login(w.url("xs2"), "xenroot")
    assert can_login(w.url("xs5"), "xenroot") and not can_login(w.url("xs5"), "secret4")
    # the session that changed it is still valid
    assert s4.xenapi.pool.get_all()


def test_pool_change_password_reaches_every_member(fresh_world):
    w = fresh_world
    login(w.url("xs1")).xenapi.session.change_password("xenroot", "pool-a-pw")
    assert can_login(w.url("xs1"), "pool-a-pw") and not can_login(w.url("xs1"), "xenroot")
    for member in ("xs2", "xs3"):  # config-file sync: the members have the new password
        assert can_local_login(w.url(member), "pool-a-pw")
        assert not can_local_login(w.url(member), "xenroot")
        # a member still refuses normal logins before looking at the password
        assert refused(login, w.url(member), "pool-a-pw")[0] == "HOST_IS_SLAVE"
    assert can_login(w.url("xs4"), "xenroot")


def test_change_password_ignores_old_password_as_xapi_does(fresh_world):
    # xapi_session.ml change_password: the old_pwd check is commented out (CA-13567)
    w = fresh_world
    login(w.url("xs4")).xenapi.session.change_password("not the old one", "n3w")
    assert can_login(w.url("xs4"), "n3w")


def test_empty_new_password_is_rejected_and_changes_nothing(fresh_world):
    w = fresh_world
    x = login(w.url("xs1")).xenapi
    assert refused(x.session.change_password, "xenroot", "") == [
        "CHANGE_PASSWORD_REJECTED",
        "Authentication token manipulation error",
    ]
    assert can_login(w.url("xs1"), "xenroot")
    # PAM_DISALLOW_NULL_AUTHTOK: an empty password never logs in
    assert not can_login(w.url("xs1"), "")


def test_joiner_takes_the_pool_password_ejected_host_keeps_it(fresh_world):
    w = fresh_world
    x4 = login(w.url("xs4")).xenapi
    x4.session.change_password("xenroot", "own-xs4")
    x1 = login(w.url("xs1")).xenapi
    x1.session.change_password("xenroot", "pool-a-pw")
    master = w.host("xs1").address
    # the join logs in to the master: the master pool's password, not the joiner's
    assert refused(x4.pool.join, master, "root", "own-xs4") == [
        "SESSION_AUTHENTICATION_FAILED",
        "root",
        "Authentication failure",
    ]
    x4.pool.join(master, "root", "pool-a-pw")
    assert w.host("xs4").pool is w.host("xs1").pool
    assert can_local_login(w.url("xs4"), "pool-a-pw")
    assert not can_local_login(w.url("xs4"), "own-xs4")
    # eject: the host restarts as its own pool with the password it had, not its own old
    # one nor the starting one
    x1 = login(w.url("xs1"), "pool-a-pw").xenapi
    x1.pool.eject(x1.host.get_by_name_label("xs4")[0])
    assert w.host("xs4").is_master and w.host("xs4").pool is not w.host("xs1").pool
    assert can_login(w.url("xs4"), "pool-a-pw")
    assert not can_login(w.url("xs4"), "own-xs4") and not can_login(w.url("xs4"), "xenroot")
    # from now on the two pools' passwords are independent
    x1.session.change_password("pool-a-pw", "pool-a-2")
    assert can_login(w.url("xs4"), "pool-a-pw") and not can_login(w.url("xs4"), "pool-a-2")
    assert can_local_login(w.url("xs3"), "pool-a-2")


def test_new_hosts_start_with_the_starting_password(fresh_world):
    w = fresh_world
    login(w.url("xs1")).xenapi.session.change_password("xenroot", "changed")
    s = login(w.url("xs1"), "changed")
    ref = s.xenapi_request("sim.add_host", ({"name_label": "xs9", "cpu": "Haswell"},))
    assert w.world.hosts[ref].pool.password == w.world.password == "xenroot"
    assert can_login(w.url("xs9"), "xenroot")


def test_local_session_is_valid_on_its_host_only_until_xapi_restarts(fresh_world):
    w = fresh_world
    s = local_login(w.url("xs2"))  # a member: no HOST_IS_SLAVE
    ref = s.handle
    assert s.xenapi.host.get_by_name_label("xs2")
    # not in the database: other hosts of the pool do not know it
    assert raw(w.url("xs1"), "pool.get_all", ref) == ["SESSION_INVALID", ref]
    assert raw(w.url("xs3"), "pool.get_all", ref) == ["SESSION_INVALID", ref]
    # not a database session: change_password cannot read it
    assert refused(s.xenapi.session.change_password, "xenroot", "x") == [
        "HANDLE_INVALID",
        "session",
        ref,
    ]
    # the host's xapi restarts: its local sessions are gone
    login(w.url("xs1")).xenapi.host.restart_agent(w.host("xs2").ref)
    assert raw(w.url("xs2"), "pool.get_all", ref) == ["SESSION_INVALID", ref]
    # local_logout ends one
    s2 = local_login(w.url("xs2"))
    ref2 = s2.handle
    assert raw(w.url("xs2"), "pool.get_all", ref2)[0] == "Success"
    s2.xenapi.session.logout()  # XenAPI: session.local_logout
    assert raw(w.url("xs2"), "pool.get_all", ref2) == ["SESSION_INVALID", ref2]


def test_local_sessions_are_bounded_per_host():
    from xapi_sim import scenario
    from xapi_sim.dispatch import Dispatcher

    world = scenario.build(scenario.default(), seed=5)
    d = Dispatcher(world)
    xs2 = world.host_by_name("xs2")
    refs = [
        d.dispatch(xs2, "session.slave_local_login_with_password", ["root", "xenroot"])
        for _ in range(sess.MAX_LOCAL_SESSIONS_PER_HOST + 20)
    ]
    local = world.service(sess.LocalSessions)
    assert len(local.hosts[xs2.ref][1]) == sess.MAX_LOCAL_SESSIONS_PER_HOST
    assert not local.valid(xs2, refs[0]) and local.valid(xs2, refs[-1])
    with pytest.raises(Exception) as e:
        d.dispatch(xs2, "pool.get_all", [refs[0]])
    assert e.value.args[0] == "SESSION_INVALID"


def test_passwords_survive_kill_9_and_old_state_loads(tmp_path):
    state, ready = tmp_path / "state", tmp_path / "ready.json"

    def serve():
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
                "--auth-delay",
                "0",
                "--state-dir",
                str(state),
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while not ready.exists():
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.02)
        return p, {h["name_label"]: h["url"] for h in json.loads(ready.read_text())["hosts"]}

    p, urls = serve()
    try:
        login(urls["xs4"]).xenapi.session.change_password("xenroot", "xs4-pw")
        login(urls["xs1"]).xenapi.session.change_password("xenroot", "pool-a-pw")
    finally:
        os.kill(p.pid, signal.SIGKILL)  # acknowledged: in the journal
        p.wait()
    p, urls = serve()
    try:
        assert can_login(urls["xs4"], "xs4-pw") and not can_login(urls["xs4"], "xenroot")
        assert can_login(urls["xs1"], "pool-a-pw")
        assert can_local_login(urls["xs3"], "pool-a-pw")
        assert can_login(urls["xs5"], "xenroot")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    lay = json.loads((state / "state.json").read_text())["layout"]
    assert sorted(pl["password"] for pl in lay["pools"]) == ["pool-a-pw", "xenroot", "xs4-pw"]
    # a state file written before passwords belonged to pools: one world-level password
    for pl in lay["pools"]:
        del pl["password"]
    lay["password"] = "old-world-pw"
    snap = json.loads((state / "state.json").read_text())
    snap["layout"] = lay
    (state / "state.json").write_text(json.dumps(snap))
    (state / "journal.jsonl").write_text("")
    world, _ = persist.load(str(state))
    assert {p.password for p in world.pools} == {"old-world-pw"}
    assert world.password == "old-world-pw"


# -- item 11: brute force ------------------------------------------------------------------


def _serve_args(*argv):
    parser = argparse.ArgumentParser()
    cli._serve_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_waits_xapis_delay_after_a_failed_login_by_default():
    # xapi_session.ml thread_delay_and_raise_error: some_seconds = 5.0
    assert sess.AUTH_FAILURE_DELAY == 5.0
    assert _serve_args().auth_delay == 5.0
    assert _serve_args("--auth-delay", "0").auth_delay == 0.0
    assert _serve_args("--auth-delay", "0.25").auth_delay == 0.25
    for bad in ("-1", "nan", "inf", "1e9", "soon"):
        with pytest.raises(SystemExit):
            _serve_args("--auth-delay", bad)


def test_serve_auth_delay_is_applied(tmp_path):
    ready = tmp_path / "ready.json"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xapi_sim",
            "serve",
            "--port",
            "0",
            "--auth-delay",
            "1",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while not ready.exists():
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.02)
        url = json.loads(ready.read_text())["hosts"][0]["url"]
        t0 = time.monotonic()
        assert not can_login(url, "wrong")
        assert time.monotonic() - t0 >= 1.0
        t0 = time.monotonic()
        assert can_login(url, "xenroot")
        assert time.monotonic() - t0 < 1.0
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


def test_hammering_wrong_passwords_does_not_slow_correct_logins():
    delay = 1.0
    with running_world(auth_failure_delay=delay) as w:
        url = w.master_url()
        stop = threading.Event()
        failures, slow = [], []

        def hammer():
            while not stop.is_set():
                t0 = time.monotonic()
                ok = can_login(url, "guess")
                failures.append(time.monotonic() - t0)
                assert not ok

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)  # every hammer is inside its delay
            for _ in range(10):
                t0 = time.monotonic()
                assert can_login(url, "xenroot")
                slow.append(time.monotonic() - t0)
                # the failed logins of another pool's master do not matter either
                assert can_login(w.url("xs4"), "xenroot")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert failures and min(failures) >= delay
        assert max(slow) < delay / 2, slow
        stats = login(url).xenapi_request("sim.auth_stats", ())
        assert int(stats[w.world.pools[0].ref]["failed"]) == len(failures)


def test_failed_login_counter_is_exact_under_many_threads():
    from xapi_sim import scenario
    from xapi_sim.dispatch import Dispatcher
    from xapi_sim.errors import Failure

    world = scenario.build(scenario.default(), seed=2)
    d = Dispatcher(world)
    xs1, xs2, xs4 = (world.host_by_name(n) for n in ("xs1", "xs2", "xs4"))
    n_threads, per_thread = 8, 200
    errors = []
    start = threading.Barrier(n_threads)

    def worker(i):
        start.wait()
        for j in range(per_thread):
            host, method = [
                (xs1, "session.login_with_password"),
                (xs2, "session.slave_local_login_with_password"),
                (xs4, "session.login_with_password"),
            ][(i + j) % 3]
            pwd = "xenroot" if j % 4 == 0 else f"guess{i}-{j}"
            try:
                s = d.dispatch(host, method, [f"user{i}" if pwd != "xenroot" else "root", pwd])
                assert pwd == "xenroot", s
            except Failure as e:
                if e.args[0] != "SESSION_AUTHENTICATION_FAILED" or pwd == "xenroot":
                    errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {xs1.pool.ref: 0, xs4.pool.ref: 0}
    for i in range(n_threads):
        for j in range(per_thread):
            if j % 4:
                host = [xs1, xs2, xs4][(i + j) % 3]
                expected[host.pool.ref] += 1
    s = d.dispatch(xs1, "session.login_with_password", ["root", "xenroot"])
    stats = d.dispatch(xs1, "sim.auth_stats", [s])
    assert {ref: stats[ref]["failed"] for ref in expected} == expected
    assert stats[world.host_by_name("xs5").pool.ref]["failed"] == 0
    assert stats[world.host_by_name("xs5").pool.ref]["last_failure"] == 0.0
    assert stats[xs1.pool.ref]["name_label"] == "pool-a"
    assert stats[xs1.pool.ref]["master"] == xs1.ref
    assert stats[xs1.pool.ref]["last_user"].startswith("user")
    assert abs(stats[xs1.pool.ref]["last_failure"] - time.time()) < 60
    assert set(stats) == {p.ref for p in world.pools}
    assert world.service(sess.AuthStats).snapshot(world) == stats


def test_auth_stats_over_both_wires_and_with_the_join_login(fresh_world):
    w = fresh_world
    assert not can_login(w.url("xs4"), "nope")
    x4 = login(w.url("xs4")).xenapi
    # the join's login to the master is a failed login of the master's pool
    assert (
        refused(x4.pool.join, w.host("xs1").address, "root", "nope")[0]
        == "SESSION_AUTHENTICATION_FAILED"
    )
    s = login(w.url("xs1"))
    stats = s.xenapi_request("sim.auth_stats", ())
    pa, p4 = w.host("xs1").pool.ref, w.host("xs4").pool.ref
    assert stats[pa]["failed"] == "1" and stats[p4]["failed"] == "1"  # XML-RPC: int64 text
    import urllib.request

    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "sim.auth_stats", "params": [s.handle]}
    ).encode()
    req = urllib.request.Request(
        w.url("xs5") + "jsonrpc", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        result = json.loads(r.read())["result"]
    assert result[pa]["failed"] == 1 and result[p4]["last_user"] == "root"
    assert (
        refused(s.xenapi_request, "sim.auth_stats", ("extra",))[0]
        == "MESSAGE_PARAMETER_COUNT_MISMATCH"
    )
