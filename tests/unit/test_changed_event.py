"""``Database.changed_event``: made on demand, set and dropped by the next commit that
changes the database. A waiter takes it before it reads the generation, so no change is
ever missed -- here by many waiters against many committing threads."""

from __future__ import annotations

import threading
import time

from xapi_sim import scenario
from xapi_sim.dispatch import Dispatcher


def _world():
    world = scenario.build(scenario.default(), seed=1)
    d = Dispatcher(world)
    m = world.pools[0].master
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    return world, d, m, s


def test_a_commit_sets_the_event_a_waiter_holds_and_the_next_is_fresh():
    world, d, m, s = _world()
    db = m.pool.db
    ev = db.changed_event
    assert db.changed_event is ev  # one event until a commit takes it
    assert not ev.is_set()
    pool = d.dispatch(m, "pool.get_all", [s])[0]
    d.dispatch(m, "pool.add_to_other_config", [s, pool, "k", "v"])
    assert ev.is_set()
    fresh = db.changed_event
    assert fresh is not ev and not fresh.is_set()
    d.dispatch(m, "pool.get_other_config", [s, pool])  # a read commits nothing
    assert not fresh.is_set()


def test_many_waiters_never_miss_a_change_from_many_writers():
    world, d, m, s = _world()
    db = m.pool.db
    pool = d.dispatch(m, "pool.get_all", [s])[0]
    stop = threading.Event()
    missed: list = []
    seen_changes = [0] * 8

    def waiter(i):
        while not stop.is_set():
            ev = db.changed_event  # before the generation: the rule
            gen = db.gen
            if not ev.wait(2.0) and db.gen != gen and not stop.is_set():
                missed.append((i, gen, db.gen))  # a change came and nobody set our event
            elif db.gen != gen:
                seen_changes[i] += 1

    def writer(j):
        for k in range(150):
            d.dispatch(m, "pool.add_to_other_config", [s, pool, f"w{j}-{k}", "v"])
            time.sleep(0.0005)

    waiters = [threading.Thread(target=waiter, args=(i,)) for i in range(8)]
    writers = [threading.Thread(target=writer, args=(j,)) for j in range(6)]
    for t in waiters + writers:
        t.start()
    for t in writers:
        t.join()
    time.sleep(0.05)
    stop.set()
    d.dispatch(m, "pool.add_to_other_config", [s, pool, "last", "v"])  # release the waiters
    for t in waiters:
        t.join(5)
    assert missed == []
    assert all(n > 0 for n in seen_changes)
