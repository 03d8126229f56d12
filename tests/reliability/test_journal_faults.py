"""A journal write that fails (issue 12 item 1): the disk fills up, a write is cut short, an
fsync or the cut-back fails.

Wanted: the call whose write failed changes nothing -- no reader, no event, no restart ever
sees it -- and answers XAPI's error for an unexpected exception,
``INTERNAL_ERROR ['Unix.Unix_error(Unix.ENOSPC, "write", "")']``; the journal is cut back to
its last good line; writes after space returns are durable; every failure is logged with its
traceback. Faults are injected through ``persist.FaultyOps`` (the journal's system calls),
so no root is needed. "After kill -9" is checked two ways: in-process by loading the
directory while the writer still runs (writes are unbuffered and fsync'd, so the files are
what a kill would leave), and with a real ``kill -9`` of a ``serve`` child process.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import threading

import pytest
import XenAPI
from statedir_kit import HERE, Server, durable_world, lines, login, reload

from xapi_sim import persist

ENOSPC_WRITE = ["INTERNAL_ERROR", 'Unix.Unix_error(Unix.ENOSPC, "write", "")']


def other_config(world, pool_index, cls, ref):
    return world.pools[pool_index].db.get(cls, ref)["other_config"]


def journal_size(journal):
    return os.path.getsize(journal.active)


def test_unix_error_text_is_what_ocaml_prints():
    assert (
        persist.unix_error_text(errno.ENOSPC, "write")
        == 'Unix.Unix_error(Unix.ENOSPC, "write", "")'
    )
    assert persist.unix_error_text(errno.EIO, "fsync") == 'Unix.Unix_error(Unix.EIO, "fsync", "")'
    # the first constructor with the number: EAGAIN (= EWOULDBLOCK on Linux)
    assert (
        persist.unix_error_text(errno.EWOULDBLOCK, "write")
        == 'Unix.Unix_error(Unix.EAGAIN, "write", "")'
    )
    # OCaml has no EDQUOT: its errno is reported as a number
    assert (
        persist.unix_error_text(errno.EDQUOT, "write")
        == f'Unix.Unix_error(Unix.EUNKNOWNERR {errno.EDQUOT}, "write", "")'
    )


def test_a_full_disk_fails_the_call_and_changes_nothing(tmp_path, caplog):
    ops = persist.FaultyOps()
    state = tmp_path / "state"
    with durable_world(state, ops) as (sim, journal):
        s = login(sim.world.pools[0].master.url)
        x = s.xenapi
        reader = login(sim.world.pools[0].master.url).xenapi
        vm = x.VM.get_by_name_label("web1")[0]
        x.VM.add_to_other_config(vm, "k0", "acked")
        token = s.xenapi_request("event.from", (["VM"], "", 0.0))["token"]
        good = journal_size(journal)

        ops.space = 0  # the disk is full
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.add_to_other_config(vm, "k1", "refused")
        assert e.value.details == ENOSPC_WRITE
        assert "k1" not in reader.VM.get_other_config(vm)  # never visible to readers
        assert journal_size(journal) == good == journal.good_offset

        ops.space = 40  # room for part of a line only
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.set_name_description(vm, "refused too")
        assert e.value.details == ENOSPC_WRITE
        assert journal_size(journal) == good  # the 40 bytes were cut off again
        assert ops.space == 40  # ... and the space given back

        events = s.xenapi_request("event.from", (["VM"], token, 0.2))["events"]
        assert not [ev for ev in events if ev["ref"] == vm]  # no event for a failed call

        ops.space = None  # space returns
        x.VM.add_to_other_config(vm, "k2", "acked")
        kept = reload(state)  # what a restart would find
        oc = other_config(kept, 0, "VM", vm)
        assert {k: v for k, v in oc.items() if k.startswith("k")} == {"k0": "acked", "k2": "acked"}
        assert kept.pools[0].db.get("VM", vm)["name_description"] != "refused too"
    errors = [
        r
        for r in caplog.records
        if r.name.startswith("xapi_sim.persist") and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 2 and all(r.exc_info and "write failed" in r.getMessage() for r in errors)


@pytest.mark.parametrize(
    "fault,details",
    [
        (lambda ops: ops.fail_write(partial=7), ENOSPC_WRITE),
        (
            lambda ops: ops.fail_write(err=errno.EIO),
            ["INTERNAL_ERROR", 'Unix.Unix_error(Unix.EIO, "write", "")'],
        ),
        (
            lambda ops: ops.fail_fsync(err=errno.EIO),
            ["INTERNAL_ERROR", 'Unix.Unix_error(Unix.EIO, "fsync", "")'],
        ),
        (
            lambda ops: ops.fail_fsync(err=errno.EDQUOT),
            ["INTERNAL_ERROR", f'Unix.Unix_error(Unix.EUNKNOWNERR {errno.EDQUOT}, "fsync", "")'],
        ),
    ],
    ids=["short-write", "write-EIO", "fsync-EIO", "fsync-EDQUOT"],
)
def test_write_and_fsync_faults(tmp_path, fault, details):
    ops = persist.FaultyOps()
    state = tmp_path / "state"
    with durable_world(state, ops) as (sim, journal):
        x = login(sim.world.pools[0].master.url).xenapi
        pool = x.pool.get_all()[0]
        x.pool.set_name_description(pool, "before")
        good = journal_size(journal)
        fault(ops)
        with pytest.raises(XenAPI.Failure) as e:
            x.pool.set_name_description(pool, "refused")
        assert e.value.details == details
        assert ops.injected
        assert x.pool.get_name_description(pool) == "before"
        assert journal_size(journal) == good
        x.pool.set_name_description(pool, "after")
        assert reload(state).pools[0].db.get("pool", pool)["name_description"] == "after"
    persist.scan(str(state))  # the journal has no damaged or merged line


def test_a_failed_cut_back_refuses_changes_until_it_succeeds(tmp_path):
    """The old failure: a half-written line stayed, the next line was appended to it and
    replay stopped there. Now nothing is appended after a failed write until the journal is
    cut back to its last good line."""
    ops = persist.FaultyOps()
    state = tmp_path / "state"
    with durable_world(state, ops) as (sim, journal):
        x = login(sim.world.pools[0].master.url).xenapi
        vm = x.VM.get_by_name_label("web1")[0]
        good = journal_size(journal)
        ops.fail_write(partial=25)
        ops.fail_truncate(1)
        ops.fail_truncate(2)
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.add_to_other_config(vm, "a", "1")
        assert e.value.details == ENOSPC_WRITE
        assert journal_size(journal) == good + 25  # the cut-back failed: dirty
        with pytest.raises(XenAPI.Failure) as e:  # tries the cut-back first, fails
            x.VM.add_to_other_config(vm, "b", "2")
        assert e.value.details == ["INTERNAL_ERROR", 'Unix.Unix_error(Unix.EIO, "ftruncate", "")']
        assert journal_size(journal) == good + 25
        x.VM.add_to_other_config(vm, "c", "3")  # the cut-back works: written
        oc = x.VM.get_other_config(vm)
        assert "a" not in oc and "b" not in oc and oc["c"] == "3"
        kept = other_config(reload(state), 0, "VM", vm)
        assert "a" not in kept and "b" not in kept and kept["c"] == "3"
    persist.scan(str(state))


def test_a_failed_operation_is_undone_row_for_row(tmp_path):
    """VM.start changes the VM, its metrics, the host's resident_VMs and free memory: a
    journal failure undoes all of it; an Async call fails inside its task."""
    ops = persist.FaultyOps()
    state = tmp_path / "state"
    with durable_world(state, ops) as (sim, journal):
        s = login(sim.world.pools[0].master.url)
        x = s.xenapi
        vm = x.VM.get_by_name_label("batch1")[0]
        hosts = {h: sorted(x.host.get_resident_VMs(h)) for h in x.host.get_all()}
        free = {h: x.host.compute_free_memory(h) for h in hosts}
        before = x.VM.get_record(vm)
        ops.fail_fsync()
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.start(vm, False, False)
        assert e.value.details[0] == "INTERNAL_ERROR"
        assert x.VM.get_record(vm) == before
        assert {h: sorted(x.host.get_resident_VMs(h)) for h in hosts} == hosts
        assert {h: x.host.compute_free_memory(h) for h in hosts} == free
        assert sim.world.pools[0].db.check_relations() == []

        x.VM.start(vm, False, False)
        on = x.VM.get_resident_on(vm)
        target = next(h for h in hosts if h != on and x.host.get_enabled(h))
        ops.fail_write(partial=3)
        task = x.Async.VM.pool_migrate(vm, target, {})
        for _ in range(200):
            if x.task.get_status(task) != "pending":
                break
            threading.Event().wait(0.02)
        assert x.task.get_status(task) == "failure"
        assert x.task.get_error_info(task) == ENOSPC_WRITE
        assert x.VM.get_resident_on(vm) == on
        kept = reload(state)
        row = kept.pools[0].db.get("VM", vm)
        assert row["power_state"] == "Running" and row["resident_on"] == on
        assert kept.pools[0].db.check_relations() == []


def test_a_failed_compaction_is_logged_and_loses_nothing(tmp_path, caplog):
    ops = persist.FaultyOps()
    state = tmp_path / "state"
    with durable_world(state, ops) as (sim, journal):
        x = login(sim.world.pools[0].master.url).xenapi
        vm = x.VM.get_by_name_label("web1")[0]
        journal._compact_at = 1  # the next line starts a compaction
        ops.fail_write(2)  # 1: the journal line (acknowledged), 2: state.json
        x.VM.add_to_other_config(vm, "k1", "1")
        assert journal.active == journal.next_path  # the journal goes on in next
        assert not os.path.exists(str(state / "state.json.tmp"))
        assert any(
            "compaction failed" in r.getMessage() and r.exc_info
            for r in caplog.records
            if r.name.startswith("xapi_sim.persist")
        )
        x.VM.add_to_other_config(vm, "k2", "2")
        oc = other_config(reload(state), 0, "VM", vm)
        assert oc["k1"] == "1" and oc["k2"] == "2"
        journal._compact_at = 1  # the next attempt works
        x.VM.add_to_other_config(vm, "k3", "3")
        assert journal.active == journal.path
        assert not os.path.exists(journal.next_path)
        x.VM.add_to_other_config(vm, "k4", "4")
        oc = other_config(reload(state), 0, "VM", vm)
        assert [oc.get(f"k{i}") for i in range(1, 5)] == ["1", "2", "3", "4"]
    s = persist.scan(str(state))
    assert s.skipped >= 1  # lines already in the snapshot, passed over


class RandomFaults(persist.FaultyOps):
    """Every write or fsync fails with some probability (a write after writing part)."""

    def __init__(self, seed, p):
        super().__init__()
        self.rng = random.Random(seed)
        self.p = p

    def write(self, fd, data):
        with self.lock:
            fail = self.rng.random() < self.p
            part = self.rng.randrange(len(data)) if fail else 0
        if fail:
            self.fail_write(partial=part, err=self.rng.choice([errno.ENOSPC, errno.EIO]))
        return super().write(fd, data)

    def fsync(self, fd):
        with self.lock:
            fail = self.rng.random() < self.p / 2
        if fail:
            self.fail_fsync()
        super().fsync(fd)


def test_many_writers_on_three_pools_with_random_faults(tmp_path):
    """The journal is shared by every pool's commits: with faults hitting writes at random,
    each thread's acknowledged writes -- exactly those -- are kept, in memory and on disk."""
    ops = RandomFaults(seed=7, p=0.0)
    state = tmp_path / "state"
    with durable_world(state, ops) as (sim, journal):
        ops.p = 0.2
        world = sim.world
        targets = []  # (pool index, class, ref, url)
        for i, p in enumerate(world.pools):
            targets.append((i, "pool", p.ref, p.master.url))
            for ref, row in p.db.rows("VM"):
                if not row["is_control_domain"] and not row["is_a_template"]:
                    targets.append((i, "VM", ref, p.master.url))
        acked, failed = {}, {}
        errors = []

        def writer(n):
            try:
                rng = random.Random(n)
                sessions = {}
                for j in range(25):
                    i, cls, ref, url = rng.choice(targets)
                    x = sessions.get(url) or sessions.setdefault(url, login(url).xenapi)
                    key = f"t{n}-{j}"
                    try:
                        getattr(x, cls).add_to_other_config(ref, key, str(j))
                        acked[(cls, ref, key)] = str(j)
                    except XenAPI.Failure as e:
                        assert e.details[0] == "INTERNAL_ERROR" and "Unix" in e.details[1]
                        failed[(cls, ref, key)] = str(j)
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        assert acked and failed and ops.injected
        kept = reload(state)
        for world_ in (world, kept):
            for i, cls, ref, _ in targets:
                oc = other_config(world_, i, cls, ref)
                mine = {k for k in oc if k.startswith("t")}
                want = {k for (c, r, k) in acked if (c, r) == (cls, ref)}
                assert mine == want, (cls, ref)
        assert journal.failures == len(failed)
    persist.scan(str(state))


def test_disk_full_then_kill_9_keeps_exactly_the_acknowledged_writes(tmp_path):
    """A real ``serve`` child process, its disk filled and freed through a control file,
    then ``kill -9`` and a plain restart."""
    state, control = tmp_path / "state", tmp_path / "disk.json"

    def disk(gen, space):
        tmp = tmp_path / "disk.tmp"
        tmp.write_text(json.dumps({"gen": gen, "space": space}))
        os.replace(tmp, control)

    disk(0, None)
    srv = Server(
        state,
        tmp_path,
        launcher=os.path.join(HERE, "fault_serve.py"),
        env={"XAPI_SIM_TEST_DISK": str(control)},
    ).start()
    acked, refused = [], []
    try:
        x = login(srv.url()).xenapi
        reader = login(srv.url()).xenapi
        vm = x.VM.get_by_name_label("web1")[0]

        def write(key):
            try:
                x.VM.add_to_other_config(vm, key, "v")
                acked.append(key)
            except XenAPI.Failure as e:
                assert e.details == ENOSPC_WRITE
                refused.append(key)

        for i in range(10):
            write(f"a{i}")
        disk(1, 0)  # full
        for i in range(5):
            write(f"b{i}")
        disk(2, 50)  # a little room: each line is cut short
        for i in range(5):
            write(f"c{i}")
        assert not [k for k in reader.VM.get_other_config(vm) if k[0] in "bc"]
        disk(3, None)  # space returns
        for i in range(10):
            write(f"d{i}")
        assert len(refused) == 10 and len(acked) == 20
        srv.kill9()
    finally:
        if srv.proc.poll() is None:
            srv.kill9()
    again = Server(state, tmp_path).start()
    try:
        oc = login(again.url()).xenapi.VM.get_other_config(vm)
        assert sorted(k for k in oc if k[0] in "abcd") == sorted(acked)
    finally:
        assert again.stop() == 0


def test_a_layout_change_outside_any_lock_is_journaled_before_the_reply(tmp_path):
    """``sim.host_set_hardware`` stages hardware (runtime state, no row) without taking a
    database lock; the journal still has it before the call returns, and a journal failure
    fails the call and undoes it."""
    ops = persist.FaultyOps()
    state = tmp_path / "state"
    with durable_world(state, ops) as (sim, journal):
        s = login(sim.world.pools[0].master.url)
        h = s.xenapi.host.get_by_name_label("xs2")[0]
        ops.fail_write()
        with pytest.raises(XenAPI.Failure) as e:
            s.xenapi_request("sim.host_set_hardware", (h, {"sockets": 4}))
        assert e.value.details == ENOSPC_WRITE
        assert sim.world.hosts[h].next_hw is None
        s.xenapi_request("sim.host_set_hardware", (h, {"sockets": 4}))
        assert reload(state).hosts[h].next_hw.sockets == 4


def test_every_step_of_a_compaction_can_be_interrupted(tmp_path, monkeypatch):
    """A compaction stopped after the new state.json is in place but before the next
    journal replaces the old one: the old journal's lines are in the snapshot (skipped by
    sequence number), the next journal's follow it; the next compaction finishes the job."""
    ops = persist.FaultyOps()
    state = tmp_path / "state"
    real_replace = os.replace

    def replace(src, dst):
        if str(src).endswith(persist.JOURNAL_NEXT):
            raise OSError(errno.EIO, "injected: rename of the next journal")
        return real_replace(src, dst)

    with durable_world(state, ops) as (sim, journal):
        x = login(sim.world.pools[0].master.url).xenapi
        vm = x.VM.get_by_name_label("web1")[0]
        for i in range(5):
            x.VM.add_to_other_config(vm, f"old{i}", "1")
        monkeypatch.setattr(os, "replace", replace)
        journal._compact_at = 1
        x.VM.add_to_other_config(vm, "trigger", "1")
        monkeypatch.setattr(os, "replace", real_replace)
        assert journal.active == journal.next_path
        for i in range(3):
            x.VM.add_to_other_config(vm, f"new{i}", "1")
        s = persist.scan(str(state))
        # all of journal.jsonl is in the new state.json; journal.next's three lines follow
        assert s.skipped == len(lines(journal.path)) and s.replayed == 3
        oc = other_config(reload(state), 0, "VM", vm)
        assert {f"old{i}" for i in range(5)} | {"trigger"} | {f"new{i}" for i in range(3)} <= set(
            oc
        )
        journal._compact_at = 1
        x.VM.add_to_other_config(vm, "last", "1")
        assert journal.active == journal.path and not os.path.exists(journal.next_path)
        assert "last" in other_config(reload(state), 0, "VM", vm)
