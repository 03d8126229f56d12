"""``<class>.get_all_records`` as one shared result while the class is unchanged
(``dispatch.shared_records``): clients asking at once get the same object, encoded once per
codec, so the reply is made and held once however many ask. Rules checked here: a read
after a write sees it (a change of the class gives a new snapshot), a snapshot holds only
committed rows, and many threads reading while others write always get a whole, correct
table.
"""

from __future__ import annotations

import threading
import time

import XenAPI

from xapi_sim import dispatch
from xapi_sim.errors import Failure
from xapi_sim.testing import running_world
from xapi_sim.wire.values import Shared


def _login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "test")
    return s


def test_the_same_snapshot_until_the_class_changes():
    with running_world() as w:
        db = w.world.pools[0].db
        a = dispatch.shared_records(db, "VM")
        b = dispatch.shared_records(db, "VM")
        assert type(a) is Shared and a is b
        assert a == dict(db.rows("VM"))
        host_rows = dispatch.shared_records(db, "host")
        s = _login(w.master_url())
        try:
            vm = next(r for r, v in a.items() if not v["is_a_template"])
            s.xenapi.VM.set_name_description(vm, "changed")
            c = dispatch.shared_records(db, "VM")
            assert c is not a and c[vm]["name_description"] == "changed"
            assert a[vm]["name_description"] != "changed"  # the old snapshot is untouched
            # another class's change does not make a new VM snapshot
            s.xenapi.host.set_name_description(next(iter(host_rows)), "h")
            assert dispatch.shared_records(db, "VM") is c
            assert dispatch.shared_records(db, "host") is not host_rows
            # over the wire, the bytes say the same
            assert s.xenapi.VM.get_all_records()[vm]["name_description"] == "changed"
        finally:
            s.xenapi.session.logout()


def test_a_snapshot_never_holds_a_write_that_is_rolled_back():
    with running_world() as w:
        world = w.world
        db = world.pools[0].db
        before = dispatch.shared_records(db, "VM")
        vm = next(r for r, v in before.items() if not v["is_a_template"])
        inside = threading.Event()
        release = threading.Event()
        seen = []

        def failing_writer():
            try:
                with world.txm.transaction():
                    db.set("VM", vm, "name_description", "never committed")
                    inside.set()
                    release.wait(5)
                    raise Failure("INTERNAL_ERROR", "test rollback")
            except Failure:
                pass

        def reader():
            seen.append(dispatch.shared_records(db, "VM"))

        t = threading.Thread(target=failing_writer)
        t.start()
        inside.wait(5)
        r = threading.Thread(target=reader)
        r.start()
        r.join(0.3)
        assert r.is_alive(), "the snapshot waits for the writer's lock"
        release.set()
        t.join(5)
        r.join(5)
        assert seen[0][vm]["name_description"] != "never committed"
        assert seen[0] is before  # nothing was published: the same snapshot


def test_many_readers_and_writers_get_whole_correct_tables():
    with running_world() as w:
        url = w.master_url()
        s0 = _login(url)
        vms = {
            r: v
            for r, v in s0.xenapi.VM.get_all_records().items()
            if not v["is_a_template"] and not v["is_control_domain"]
        }
        refs = set(s0.xenapi.VM.get_all())
        errors = []
        done = threading.Event()

        def writer(i):
            s = _login(url)
            try:
                for k in range(30):
                    for vm in vms:
                        s.xenapi.VM.set_name_description(vm, f"w{i}-{k}")
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(repr(e))
            finally:
                s.xenapi.session.logout()

        def reader():
            s = _login(url)
            try:
                while not done.is_set():
                    got = s.xenapi.VM.get_all_records()
                    if set(got) != refs:
                        errors.append("a partial table")
                    for vm in vms:
                        d = got[vm]["name_description"]
                        if not (d == vms[vm]["name_description"] or d.startswith("w")):
                            errors.append(f"unexpected {d!r}")
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(repr(e))
            finally:
                s.xenapi.session.logout()

        writers = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        readers = [threading.Thread(target=reader) for _ in range(8)]
        for t in writers + readers:
            t.start()
        for t in writers:
            t.join(120)
        done.set()
        for t in readers:
            t.join(60)
        assert errors == []
        # once the writers are done, a read sees the last write of every VM
        final = s0.xenapi.VM.get_all_records()
        for vm in vms:
            assert final[vm]["name_description"] == s0.xenapi.VM.get_name_description(vm)
            assert final[vm]["name_description"].endswith("-29")
        s0.xenapi.session.logout()


def test_simultaneous_first_event_from_calls_make_one_reply(monkeypatch):
    """50 clients' first ``event.from`` at once on a big world: the batch and its reply are
    made once and shared (they were once made by every caller that arrived while the first
    was still making it -- 35x one reply's memory in a bench run)."""
    from xapi_sim.classes import event

    made = []
    real = event.valid_ref_counts

    def slow_counts(db):
        made.append(threading.current_thread().name)
        time.sleep(0.2)  # a big world's counts take a while: the others arrive meanwhile
        return real(db)

    monkeypatch.setattr(event, "valid_ref_counts", slow_counts)
    with running_world() as w:
        url = w.master_url()
        results, errors = [], []

        def first_call():
            try:
                s = _login(url)
                results.append(s.xenapi.event_from(["VM"], "", 0.0))
                s.xenapi.session.logout()
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=first_call) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and len(results) == 20
        assert len(made) == 1, f"the reply was made {len(made)} times"
        assert all(r == results[0] for r in results)
