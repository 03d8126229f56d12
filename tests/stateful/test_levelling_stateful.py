"""Hypothesis stateful test of levelling across random pool histories, once per release
profile with pool levelling (dundee, ely, stockholm, nile, xcp-ng-8.3; levelling/rules.py).

Random joins, ejects, hardware changes, reboots, toolstack restarts, VM starts, shutdowns,
suspends, resumes and migrations are driven through the real dispatcher (the same code path
as the wire, minus sockets). After every step:

* each pool's ``cpu_info`` equals the spec's computation over its hosts (§4; from 8.2 CU1 the
  ``features_*_host`` keys only);
* a non-halted VM's flags changed only as the spec allows (start: the pool level; migrate or
  resume: resized to the landing host and re-vendored, §11; otherwise untouched);
* every migration that succeeded without force passed the CPU check at that moment (§9);
* no VM is resident on a host outside its pool.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from xapi_sim import (
    classes,  # noqa: F401
    scenario,
)
from xapi_sim.dispatch import Dispatcher
from xapi_sim.errors import Failure
from xapi_sim.levelling import featureset as fs
from xapi_sim.levelling import policy
from xapi_sim.levelling import rules as lrules

SCENARIO = """
[[host]]
name_label = "h1"
cpu = "Haswell"
memory = "64GiB"
[[host]]
name_label = "h2"
cpu = "Broadwell"
memory = "64GiB"
[[host]]
name_label = "h3"
cpu = "SandyBridge"
memory = "64GiB"
[[host]]
name_label = "h4"
cpu = "Skylake-Server"
memory = "64GiB"
[[host]]
name_label = "h5"
cpu = "EPYC"
memory = "64GiB"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
[[vm]]
name_label = "v1"
domain_type = "hvm"
power_state = "Running"
host = "h1"
[[vm]]
name_label = "v2"
domain_type = "pv"
power_state = "Running"
host = "h2"
[[vm]]
name_label = "v3"
domain_type = "hvm"
power_state = "Halted"
host = "h1"
[[vm]]
name_label = "v4"
domain_type = "hvm"
power_state = "Halted"
host = "h3"
"""

HOSTS = ["h1", "h2", "h3", "h4", "h5"]
VMS = ["v1", "v2", "v3", "v4"]
CPUS = ["Haswell", "Broadwell", "SandyBridge", "IvyBridge", "Skylake-Server", "Nehalem"]
HIDDEN = [[], ["hle", "rtm"], ["avx2"], ["aesni"]]


def _scenario(version):
    return SCENARIO.replace('memory = "64GiB"', f'memory = "64GiB"\nversion = "{version}"')


class Levelling(RuleBasedStateMachine):
    RELEASE = "dundee"

    def __init__(self):
        super().__init__()
        self.rules = lrules.rules(self.RELEASE)
        self.world = scenario.build(scenario.loads(_scenario(self.RELEASE)), seed=7)
        self.d = Dispatcher(self.world)
        self.sessions = {}
        self.expected = {}  # vm name -> flags we expect while non-halted
        for v in VMS:
            _, row = self._vm(v)
            if row["power_state"] != "Halted":
                self.expected[v] = dict(row["last_boot_CPU_flags"])

    # -- plumbing ------------------------------------------------------------------------
    def _h(self, name):
        return self.world.host_by_name(name)

    def _call(self, host_name, method, *args):
        master = self._h(host_name).pool.master
        key = id(master.db)
        sess = self.sessions.get(key)
        if sess is None or not master.db.exists("session", sess):
            sess = self.d.dispatch(master, "session.login_with_password", ["root", "xenroot"])
            self.sessions[key] = sess
        return self.d.dispatch(master, method, [sess, *args])

    def _call_on(self, host_name, method, *args):
        """A call on the named host's own endpoint (pool.join runs on the joiner)."""
        h = self._h(host_name)
        sess = self.d.dispatch(h, "session.login_with_password", ["root", "xenroot"])
        return self.d.dispatch(h, method, [sess, *args])

    def _vm(self, name):
        for p in self.world.pools:
            refs = p.db.by_label("VM", name)
            if refs:
                return p, p.db.get("VM", refs[0])
        raise AssertionError(f"VM {name} vanished")

    def _vm_ref(self, name):
        p, _ = self._vm(name)
        return p.db.by_label("VM", name)[0]

    def _vm_pool_host(self, name):
        """A live host of the VM's pool to address calls to."""
        p, _ = self._vm(name)
        return p.master.name_label

    # -- rules ---------------------------------------------------------------------------
    @rule(vm=st.sampled_from(VMS), paused=st.booleans())
    def start(self, vm, paused):
        try:
            self._call(self._vm_pool_host(vm), "VM.start", self._vm_ref(vm), paused, False)
        except Failure:
            return
        p, row = self._vm(vm)
        pool_info = p.db.get("pool", p.ref)["cpu_info"]
        key = self.rules.boot_keys[1] if row["HVM_boot_policy"] else self.rules.boot_keys[0]
        assert row["last_boot_CPU_flags"] == {
            "vendor": pool_info["vendor"],
            "features": pool_info[key],
        }
        self.expected[vm] = dict(row["last_boot_CPU_flags"])

    @rule(
        vm=st.sampled_from(VMS),
        op=st.sampled_from(
            [
                "VM.clean_shutdown",
                "VM.hard_shutdown",
                "VM.clean_reboot",
                "VM.hard_reboot",
                "VM.suspend",
                "VM.pause",
                "VM.unpause",
            ]
        ),
    )
    def power_op(self, vm, op):
        try:
            self._call(self._vm_pool_host(vm), op, self._vm_ref(vm))
        except Failure:
            return
        p, row = self._vm(vm)
        if row["power_state"] == "Halted":
            self.expected.pop(vm, None)
        elif op == "VM.hard_reboot" and vm not in self.expected:
            self.expected[vm] = dict(row["last_boot_CPU_flags"])  # a Halted VM was started

    def _moved(self, vm, dest, before, forced):
        p, row = self._vm(vm)
        info = p.db.get("host", dest.ref)["cpu_info"]
        hvm = bool(row["HVM_boot_policy"])
        if not forced:
            assert (
                policy.check_vm_compatible("Running", before, hvm, info, rules=self.rules) is None
            )
        new = policy.updated_vm_flags(before, hvm, info, rules=self.rules)
        assert row["last_boot_CPU_flags"] == (before if new is None else new)
        self.expected[vm] = dict(row["last_boot_CPU_flags"])

    @rule(vm=st.sampled_from(VMS), dest=st.sampled_from(HOSTS), force=st.booleans())
    def migrate(self, vm, dest, force):
        p, row = self._vm(vm)
        d = self._h(dest)
        if d.pool is not p:
            return
        before = dict(row["last_boot_CPU_flags"])
        try:
            self._call(
                p.master.name_label,
                "VM.pool_migrate",
                self._vm_ref(vm),
                d.ref,
                {"force": "true"} if force else {},
            )
        except Failure:
            return
        self._moved(vm, d, before, force)

    @rule(
        vm=st.sampled_from(VMS), dest=st.sampled_from(HOSTS), on=st.booleans(), force=st.booleans()
    )
    def resume(self, vm, dest, on, force):
        p, row = self._vm(vm)
        before = dict(row["last_boot_CPU_flags"])
        d = self._h(dest)
        try:
            if on:
                if d.pool is not p:
                    return
                self._call(
                    p.master.name_label, "VM.resume_on", self._vm_ref(vm), d.ref, False, force
                )
            else:
                self._call(p.master.name_label, "VM.resume", self._vm_ref(vm), False, force)
                force = False
        except Failure:
            return
        p, row = self._vm(vm)
        landed = self.world.host(row["resident_on"])
        self._moved(vm, landed, before, force)

    @rule(joiner=st.sampled_from(HOSTS), to=st.sampled_from(HOSTS), force=st.booleans())
    def join(self, joiner, to, force):
        t = self._h(to)
        try:
            self._call_on(
                joiner, "pool.join_force" if force else "pool.join", t.address, "root", "xenroot"
            )
        except Failure:
            return

    @rule(host=st.sampled_from(HOSTS))
    def eject(self, host):
        h = self._h(host)
        try:
            self._call(host, "pool.eject", h.ref)
        except Failure:
            return

    @rule(host=st.sampled_from(HOSTS), cpu=st.sampled_from(CPUS), hidden=st.sampled_from(HIDDEN))
    def change_hardware(self, host, cpu, hidden):
        h = self._h(host)
        self._call(host, "sim.host_set_hardware", h.ref, {"cpu": cpu, "hidden_features": hidden})

    @rule(host=st.sampled_from(HOSTS), reboot=st.booleans())
    def restart(self, host, reboot):
        h = self._h(host)
        try:
            if reboot:
                self._call(host, "host.disable", h.ref)
                self._call(host, "host.reboot", h.ref)
            else:
                self._call(host, "host.restart_agent", h.ref)
        except Failure:
            return
        # VMs halted by the reboot's shutdown hook are no longer tracked
        for v in list(self.expected):
            if self._vm(v)[1]["power_state"] == "Halted":
                self.expected.pop(v)
            else:
                self.expected[v] = (
                    dict(self._vm(v)[1]["last_boot_CPU_flags"]) if reboot else self.expected[v]
                )

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def pool_level_is_intersection(self):
        pv_key, hvm_key = self.rules.pool_keys
        required = ("vendor", "cpu_count", "socket_count", pv_key, hvm_key)
        for p in self.world.pools:
            infos = [row["cpu_info"] for _, row in p.db.rows("host")]
            valid = [i for i in infos if all(k in i for k in required)]
            pv, hvm = (), ()
            for i in valid:
                pv = fs.intersect(pv, fs.parse(i[pv_key]))
                hvm = fs.intersect(hvm, fs.parse(i[hvm_key]))
            got = p.db.get("pool", p.ref)["cpu_info"]
            assert got[pv_key] == fs.format(pv)
            assert got[hvm_key] == fs.format(hvm)
            if self.rules.cpu_keys == "host":
                assert set(got) == {"vendor", "socket_count", "cpu_count", pv_key, hvm_key}
            assert int(got["cpu_count"]) == sum(int(i["cpu_count"]) for i in valid)
            if valid:
                assert got["vendor"] == valid[-1]["vendor"]

    @invariant()
    def flags_change_only_as_allowed(self):
        for v, flags in self.expected.items():
            _, row = self._vm(v)
            if row["power_state"] != "Halted":
                assert row["last_boot_CPU_flags"] == flags, v

    @invariant()
    def residents_stay_in_their_pool(self):
        for p in self.world.pools:
            hosts = set(p.db.refs("host"))
            for _ref, row in p.db.rows("VM"):
                if row["resident_on"] != "OpaqueRef:NULL":
                    assert row["resident_on"] in hosts
                    assert row["power_state"] in ("Running", "Paused")
                if row["is_control_domain"]:
                    assert row["last_boot_CPU_flags"] == {}


TestLevelling = Levelling.TestCase
TestLevelling.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _per_release(release):
    machine = type(f"Levelling_{release.replace('-', '_').replace('.', '')}", (Levelling,), {})
    machine.RELEASE = release
    case = machine.TestCase
    case.settings = settings(
        max_examples=20,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    return case


TestLevellingEly = _per_release("ely")
TestLevellingStockholm = _per_release("stockholm")
TestLevellingNile = _per_release("nile")
TestLevellingXcpNg83 = _per_release("xcp-ng-8.3")
