"""Consistent state across ``kill -9`` during long operations (issue 12 item 4).

Two lanes run side by side, each a ``xapi-sim serve --state-dir`` child process and a client
thread that runs host reboots (disable, then ``host.reboot``), ``VM.pool_migrate`` and
``pool.join`` / ``pool.eject`` of ``xs4`` back to back, while the lane kills the server
with ``SIGKILL`` at a random moment -- 50 kills in all. After each kill the directory is
loaded in-process and checked (every relation, every host up with its control domain, every
VM resident on exactly one live host when running and on none when halted, xs4 in exactly
one pool), the server is restarted from it and the same is checked over the wire, and each
operation must have happened entirely or not at all: the state is the one after the
acknowledged operations, or after those plus the one in flight.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import xml.parsers.expat
import xmlrpc.client

import XenAPI
from statedir_kit import Server, login

from xapi_sim import persist
from xapi_sim.datamodel import NULL_REF
from xapi_sim.testing.soak.checks import check_invariants

LANES = 2
KILLS_PER_LANE = 25
# (a reply cut short by the kill reaches xmlrpc.client's parser as incomplete XML: its reader
# stops at the early end of the stream without complaint)
CONN_ERRORS = (
    OSError,
    http.client.HTTPException,
    xmlrpc.client.ProtocolError,
    xml.parsers.expat.ExpatError,
)
ANY = "<anywhere but its old host>"
POOL_A = ("xs1", "xs2", "xs3")


class Model:
    """What the operations so far should have left: xs4's membership, which hosts are
    enabled, where each guest VM of pool-a runs (host name, None if halted)."""

    def __init__(self, member, enabled, vm_on):
        self.member, self.enabled, self.vm_on = member, dict(enabled), dict(vm_on)

    def after(self, op):
        m = Model(self.member, self.enabled, self.vm_on)
        kind = op[0]
        if kind == "disable":
            m.enabled[op[1]] = False
        elif kind == "reboot":
            m.enabled[op[1]] = True
            for vm, on in m.vm_on.items():
                if on == op[1]:
                    m.vm_on[vm] = (ANY, op[1])  # evacuated elsewhere, or halted
        elif kind == "migrate":
            m.vm_on[op[1]] = op[3]
        elif kind == "join":
            m.member = True
            m.enabled["xs4"] = True
        elif kind == "eject":
            m.member = False
            m.enabled["xs4"] = True
        return m

    def differences(self, seen: Model) -> list:
        out = []
        if seen.member != self.member:
            out.append(f"xs4 member={seen.member}, expected {self.member}")
        for h, e in self.enabled.items():
            if seen.enabled.get(h) != e:
                out.append(f"{h} enabled={seen.enabled.get(h)}, expected {e}")
        for vm, on in self.vm_on.items():
            got = seen.vm_on.get(vm)
            if isinstance(on, tuple):
                if got == on[1]:
                    out.append(f"{vm} still on rebooted {on[1]}")
            elif got != on:
                out.append(f"{vm} on {got}, expected {on}")
        return out


def observe_world(world) -> tuple[Model, list]:
    """A world loaded from the directory: its state and every broken invariant."""
    bad = []
    xs4 = world.host_by_name("xs4")
    pool_a = world.host_by_name("xs1").pool
    names = {}
    for p in world.pools:
        db = p.db
        bad += [f"relation: {x}" for x in db.check_relations()]
        for ref, row in db.rows("host"):
            names[ref] = row["name_label"]
            h = world.hosts.get(ref)
            if h is None or h.pool is not p:
                bad.append(f"host row {row['name_label']} in a pool it does not belong to")
                continue
            live = db.get("host_metrics", row["metrics"])["live"]
            dom0 = [v for v in row["resident_VMs"] if db.get("VM", v)["is_control_domain"]]
            if h.state != "up" or not live or len(dom0) != 1:
                bad.append(
                    f"host {h.name_label}: state {h.state}, live {live}, "
                    f"{len(dom0)} control domains"
                )
        for _ref, row in db.rows("VM"):
            on = row["resident_on"]
            if row["power_state"] in ("Running", "Paused"):
                if on == NULL_REF or not db.exists("host", on):
                    bad.append(f"VM {row['name_label']} running on no host of its pool")
                elif not db.get("host_metrics", db.get("host", on)["metrics"])["live"]:
                    bad.append(f"VM {row['name_label']} running on a dead host")
            elif on != NULL_REF:
                bad.append(f"VM {row['name_label']} {row['power_state']} but resident")
    homes = [p for p in world.pools if p.db.exists("host", xs4.ref)]
    if len(homes) != 1 or homes[0] is not xs4.pool:
        bad.append(f"xs4 has a host row in {len(homes)} pools")
    enabled = {
        world.hosts[r].name_label: row["enabled"]
        for p in {pool_a, xs4.pool}
        for r, row in p.db.rows("host")
    }
    vm_on = {
        row["name_label"]: names.get(row["resident_on"])
        for ref, row in pool_a.db.rows("VM")
        if not row["is_control_domain"] and not row["is_a_template"]
    }
    return Model(xs4.pool is pool_a, enabled, vm_on), bad


def observe_wire(srv) -> tuple[Model, list]:
    """The restarted server, through XenAPI: the same state and invariants."""
    bad = []
    s1 = login(srv.url("xs1"))
    x = s1.xenapi
    hosts = x.host.get_all_records()
    metrics = x.host_metrics.get_all_records()
    vms = x.VM.get_all_records()
    name = {ref: r["name_label"] for ref, r in hosts.items()}
    for _ref, r in hosts.items():
        dom0 = [v for v in r["resident_VMs"] if vms[v]["is_control_domain"]]
        if (
            not metrics[r["metrics"]]["live"]
            or len(dom0) != 1
            or vms[dom0[0]]["power_state"] != "Running"
        ):
            bad.append(f"host {r['name_label']} not fully up over the wire")
    bad += check_invariants(s1, "pool-a")
    enabled = {r["name_label"]: r["enabled"] for r in hosts.values()}
    member = "xs4" in enabled
    try:
        s4 = login(srv.url("xs4"))
    except XenAPI.Failure as e:
        if not member or e.details[0] != "HOST_IS_SLAVE":
            bad.append(f"xs4 login: {e.details}")
    else:
        if member:
            bad.append("xs4 answers as a master while pool-a lists it")
        enabled.update(
            {r["name_label"]: r["enabled"] for r in s4.xenapi.host.get_all_records().values()}
        )
        bad += check_invariants(s4, "xs4")
    vm_on = {
        r["name_label"]: name.get(r["resident_on"])
        for r in vms.values()
        if not r["is_control_domain"] and not r["is_a_template"]
    }
    return Model(member, enabled, vm_on), bad


class Lane:
    def __init__(self, workdir, seed):
        self.rng = random.Random(seed)
        self.srv = Server(workdir / "state", workdir, "--seed", str(seed), warm=True)
        self.kills = 0
        self.ops = {"acked": 0, "failed": 0, "in flight": 0}
        self.kinds: dict = {}
        self.problems: list = []

    def client(self, model, log, stop):
        """Operations back to back until the server dies; ``log`` gets
        [op, "acked"|"failed"|"in flight"]."""
        rng = random.Random(self.rng.random())
        try:
            x = login(self.srv.url("xs1")).xenapi
            ref = {r["name_label"]: h for h, r in x.host.get_all_records().items()}
            x4 = None if model.member else login(self.srv.url("xs4")).xenapi
            m = model
            while not stop.is_set():
                roll = rng.random()
                if roll < 0.2:
                    ops = [("eject",)] if m.member else [("join",)]
                elif roll < 0.5:
                    h = rng.choice(["xs2", "xs3"])
                    ops = [("disable", h), ("reboot", h)]
                else:
                    running = [v for v, on in m.vm_on.items() if on in POOL_A]
                    if not running:
                        continue
                    vm = rng.choice(running)
                    dst = rng.choice([h for h in POOL_A if h != m.vm_on[vm]])
                    ops = [("migrate", vm, m.vm_on[vm], dst)]
                for op in ops:
                    entry = [op, "in flight"]
                    log.append(entry)
                    try:
                        if op[0] == "join":
                            x4.pool.join(self.srv.hosts["xs1"]["address"], "root", "xenroot")
                        elif op[0] == "eject":
                            x.pool.eject(ref["xs4"])
                        elif op[0] in ("disable", "reboot"):
                            getattr(x.host, op[0])(ref[op[1]])
                        else:
                            vm_ref = x.VM.get_by_name_label(op[1])[0]
                            x.VM.pool_migrate(vm_ref, ref[op[3]], {})
                        entry[1] = "acked"
                        m = m.after(op)
                        if op[0] == "join":
                            ref = {r["name_label"]: h for h, r in x.host.get_all_records().items()}
                        elif op[0] == "eject":
                            x4 = login(self.srv.url("xs4")).xenapi
                        elif op[0] == "reboot":
                            # placement after an evacuation is the server's choice
                            m.vm_on.update(
                                {
                                    r["name_label"]: next(
                                        (n for n, hr in ref.items() if hr == r["resident_on"]), None
                                    )
                                    for r in x.VM.get_all_records().values()
                                    if r["name_label"] in m.vm_on
                                }
                            )
                    except XenAPI.Failure:
                        entry[1] = "failed"
                        break
        except CONN_ERRORS:
            return  # the server was killed: the last entry, if any, is in flight

    def run(self, kills):
        try:
            self.srv.start()
            seen, bad = observe_wire(self.srv)
            self.problems += [f"at start: {b}" for b in bad]
            for i in range(kills):
                self.iteration(i, seen)
                seen, bad = observe_wire(self.srv.start())
                self.problems += [f"kill {i} over the wire: {b}" for b in bad]
                if (seen.member, seen.enabled, seen.vm_on) != (
                    self.loaded.member,
                    self.loaded.enabled,
                    self.loaded.vm_on,
                ):
                    self.problems.append(
                        f"kill {i}: the restarted server differs from its directory: "
                        f"{(seen.member, seen.enabled, seen.vm_on)} != "
                        f"{(self.loaded.member, self.loaded.enabled, self.loaded.vm_on)}"
                    )
            assert self.srv.stop() == 0
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.problems.append(f"{type(e).__name__}: {e}")
            self.srv.close_spare()
            if self.srv.proc is not None and self.srv.proc.poll() is None:
                self.srv.kill9()

    def iteration(self, i, start):
        log: list = []
        stop = threading.Event()
        t = threading.Thread(target=self.client, args=(start, log, stop), daemon=True)
        t.start()
        time.sleep(self.rng.uniform(0.05, 0.4))
        self.srv.kill9()
        self.kills += 1
        stop.set()
        t.join(30)
        world, _ = persist.load(self.srv.state_dir)
        self.loaded, bad = observe_world(world)
        self.problems += [f"kill {i} on disk: {b}" for b in bad]
        for op, state in log:
            self.ops[state] += 1
            self.kinds[op[0]] = self.kinds.get(op[0], 0) + 1
        expect = self.replay(start, log)
        options = [expect]
        if log and log[-1][1] == "in flight":
            options.append(expect.after(log[-1][0]))
        diffs = [o.differences(self.loaded) for o in options]
        if all(diffs):
            self.problems.append(
                f"kill {i}: neither before nor after the operation in "
                f"flight ({log[-1][0] if log else None}): {diffs}"
            )

    @staticmethod
    def replay(start, log):
        m = start
        for op, state in log:
            if state == "acked":
                m = m.after(op)
        return m


def test_kill_9_during_long_operations_leaves_a_consistent_world(tmp_path):
    t0 = time.monotonic()
    lanes = []
    for n in range(LANES):
        d = tmp_path / f"lane{n}"
        d.mkdir()
        lanes.append(Lane(d, seed=100 + n))
    threads = [threading.Thread(target=lane.run, args=(KILLS_PER_LANE,)) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    problems = [p for lane in lanes for p in lane.problems]
    assert not problems, problems[:10]
    assert sum(lane.kills for lane in lanes) >= 50
    kinds = {}
    for lane in lanes:
        for k, v in lane.kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    # every kind of operation ran, and some were cut by a kill
    assert {"join", "eject", "disable", "reboot", "migrate"} <= set(kinds), kinds
    assert sum(lane.ops["in flight"] for lane in lanes) >= 5
    print(
        f"{sum(lane.kills for lane in lanes)} kills in {time.monotonic() - t0:.1f} s; "
        f"operations {kinds}; outcomes "
        f"{ {k: sum(lane.ops[k] for lane in lanes) for k in lanes[0].ops} }"
    )
