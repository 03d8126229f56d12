"""Listener sockets are bound and closed with no pool lock held (issue "Safe core": no I/O
under a lock): a host's endpoint stops once its shutdown or crash has committed and
answers again once its power-on has committed."""

from __future__ import annotations

import threading

import pytest
import XenAPI

from xapi_sim.testing import running_world


def _locks_held(world) -> int:
    txn = world.txm.current()
    return len(txn.states) if txn is not None else 0


@pytest.fixture
def w():
    with running_world(seed=5) as w:
        yield w


def test_sockets_move_outside_the_pool_lock(w):
    sim = w.sim
    seen = []
    real_listen, real_unlisten = sim.listen, sim.unlisten

    def listen(h):
        seen.append(("listen", h.name_label, _locks_held(w.world)))
        return real_listen(h)

    def unlisten(h):
        seen.append(("unlisten", h.name_label, _locks_held(w.world)))
        return real_unlisten(h)

    sim.listen, sim.unlisten = listen, unlisten
    s = XenAPI.Session(w.master_url())
    s.xenapi.login_with_password("root", "xenroot")
    xs2 = w.host("xs2").ref
    s.xenapi.sim.host_crash(xs2)
    assert ("unlisten", "xs2", 0) in seen
    with pytest.raises(OSError):
        XenAPI.Session(w.url("xs2")).xenapi.login_with_password("root", "xenroot")
    s.xenapi.sim.host_power_on(xs2)
    assert ("listen", "xs2", 0) in seen
    with pytest.raises(XenAPI.Failure) as e:  # a member: it answers, HOST_IS_SLAVE
        XenAPI.Session(w.url("xs2")).xenapi.login_with_password("root", "xenroot")
    assert e.value.details[0] == "HOST_IS_SLAVE"
    assert all(held == 0 for _op, _h, held in seen), seen


def test_crash_and_power_on_race_from_many_threads(w):
    """Eight threads crash and power on the same member: every call ends with a XAPI
    answer, and the host ends up answering or not as its state says."""
    s = XenAPI.Session(w.master_url())
    s.xenapi.login_with_password("root", "xenroot")
    xs2 = w.host("xs2").ref
    errors = []

    def worker(i):
        x = XenAPI.Session(w.master_url())
        x.xenapi.login_with_password("root", "xenroot")
        for k in range(10):
            try:
                if (i + k) % 2:
                    x.xenapi.sim.host_crash(xs2)
                else:
                    x.xenapi.sim.host_power_on(xs2)
            except XenAPI.Failure:
                pass  # refused in the wrong state: an answer, not a failure
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    h = w.host("xs2")
    up = h.state == "up"
    assert (h.ref in w.sim.servers) == up
