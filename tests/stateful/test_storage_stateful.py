"""The storage object lifecycle as a hypothesis state machine against a running world, and
many threads competing for one thick SR's space: relations hold and space adds up after
every step; a refused call changes nothing."""

from __future__ import annotations

import threading

import XenAPI
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from xapi_sim import install_storage
from xapi_sim.install_storage import GiB, MiB
from xapi_sim.testing import running_world

NULL = "OpaqueRef:NULL"


def _vdi(sr, size):
    return {
        "name_label": "d",
        "name_description": "",
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }


def _vbd(vm, vdi):
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": "autodetect",
        "bootable": False,
        "mode": "RW",
        "type": "Disk",
        "unpluggable": True,
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


def _login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    return s.xenapi


class StorageMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.ctx = running_world()
        self.w = self.ctx.__enter__()
        self.x = _login(self.w.master_url())
        x = self.x
        master = x.pool.get_master(x.pool.get_all()[0])
        self.thick = x.pool.get_default_SR(x.pool.get_all()[0])
        self.thin = x.SR.create(
            master, {"server": "h", "serverpath": "/p"}, "0", "n", "", "nfs", "user", True, {}
        )
        self.vm = x.VM.get_by_name_label("batch1")[0]
        self.vdis, self.vbds = [], []

    def teardown(self):
        if hasattr(self, "ctx"):
            self.ctx.__exit__(None, None, None)

    def _try(self, fn, *args):
        before = self.snapshot()
        try:
            return fn(*args)
        except XenAPI.Failure as e:
            assert e.details[0] != "INTERNAL_ERROR", e.details
            assert self.snapshot() == before  # a refused call changes nothing
            return None

    def snapshot(self):
        db = self.w.world.pools[0].db
        return {c: sorted(db.tables[c]) for c in ("SR", "PBD", "VDI", "VBD")}

    @rule(size=st.integers(min_value=0, max_value=600 * GiB), thin=st.booleans())
    def create(self, size, thin):
        v = self._try(self.x.VDI.create, _vdi(self.thin if thin else self.thick, size))
        if v:
            self.vdis.append(v)

    @rule(data=st.data())
    def snapshot_vdi(self, data):
        if self.vdis:
            v = self._try(self.x.VDI.snapshot, data.draw(st.sampled_from(self.vdis)), {})
            if v:
                self.vdis.append(v)

    @rule(data=st.data(), size=st.integers(min_value=0, max_value=300 * GiB))
    def resize(self, data, size):
        if self.vdis:
            self._try(self.x.VDI.resize, data.draw(st.sampled_from(self.vdis)), str(size))

    @rule(data=st.data())
    def destroy(self, data):
        if self.vdis:
            v = data.draw(st.sampled_from(self.vdis))
            if self._try(self.x.VDI.destroy, v) is not None or v not in self.x.VDI.get_all():
                self.vdis.remove(v)
                self.vbds = [b for b in self.vbds if b in self.x.VBD.get_all()]

    @rule(data=st.data())
    def attach(self, data):
        if self.vdis:
            b = self._try(self.x.VBD.create, _vbd(self.vm, data.draw(st.sampled_from(self.vdis))))
            if b:
                self.vbds.append(b)

    @rule(data=st.data())
    def detach(self, data):
        if self.vbds:
            b = data.draw(st.sampled_from(self.vbds))
            self._try(self.x.VBD.destroy, b)
            self.vbds.remove(b)

    @invariant()
    def relations_hold(self):
        if hasattr(self, "w"):
            assert self.w.world.pools[0].db.check_relations() == []

    @invariant()
    def space_adds_up(self):
        if not hasattr(self, "w"):
            return
        db = self.w.world.pools[0].db
        for _sr, row in db.rows("SR"):
            vdis = [db.tables["VDI"][v] for v in row["VDIs"]]
            util, alloc = install_storage.sr_usage(row["type"], vdis)
            assert (row["physical_utilisation"], row["virtual_allocation"]) == (util, alloc)
            if install_storage.is_thick(row["type"]):
                assert row["physical_utilisation"] <= row["physical_size"]


StorageMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=12, deadline=None)
TestStorage = StorageMachine.TestCase


def test_threads_never_overcommit_a_thick_sr():
    with running_world() as w:
        x = _login(w.master_url())
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        size = 40 * GiB
        per = install_storage.lvhd_lv_size(size)
        fits = int(x.SR.get_physical_size(sr)) // per
        results, lock = [], threading.Lock()

        def worker():
            y = _login(w.master_url())
            for _ in range(3):
                try:
                    y.VDI.create(_vdi(sr, size))
                    out = "ok"
                except XenAPI.Failure as e:
                    out = e.details[0]
                with lock:
                    results.append(out)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert len(results) == 24
        assert results.count("ok") == min(fits, 24)
        assert set(results) <= {"ok", "SR_BACKEND_FAILURE_44"}
        db = w.world.pools[0].db
        assert db.get("SR", sr)["physical_utilisation"] == results.count("ok") * per
        assert db.check_relations() == []
        assert per < 41 * GiB and per > size + MiB
