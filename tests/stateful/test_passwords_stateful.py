"""Hypothesis stateful test: root's password belongs to a pool, across random histories.

Random password changes (from any pool's master, empty ones included), joins (with the
right or a wrong password) and ejects are driven through the real dispatcher. A model keeps
one password per host, changed only as XAPI changes dom0's /etc/passwd:

* ``session.change_password`` on a host: every host of its pool (config-file sync);
* ``pool.join``: the joiner fetches the master's password at its start as a member;
* ``pool.eject``: nothing (the ejected host keeps the password it had).

After every step each host accepts exactly its model password: ``login_with_password`` on a
master, ``slave_local_login_with_password`` on every host; and every host of one pool has
the same password.
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

SCENARIO = """
[[host]]
name_label = "h1"
cpu = "Haswell"
memory = "16GiB"
[[host]]
name_label = "h2"
cpu = "Haswell"
memory = "16GiB"
[[host]]
name_label = "h3"
cpu = "Broadwell"
memory = "16GiB"
[[host]]
name_label = "h4"
cpu = "SandyBridge"
memory = "16GiB"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
"""

HOSTS = ["h1", "h2", "h3", "h4"]
PASSWORDS = ["xenroot", "a", "b", "c", ""]
AUTH_FAILED = ("SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure")


class Passwords(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.world = scenario.build(scenario.loads(SCENARIO), seed=3)
        self.d = Dispatcher(self.world)
        self.model = {h: "xenroot" for h in HOSTS}

    def _h(self, name):
        return self.world.host_by_name(name)

    def _session(self, host):
        """A session on the master of ``host``'s pool, with the model's password."""
        master = host.pool.master
        return master, self.d.dispatch(
            master, "session.login_with_password", ["root", self.model[master.name_label]]
        )

    def _pool_of(self, name):
        pool = self._h(name).pool
        return [h.name_label for h in self.world.hosts.values() if h.pool is pool]

    @rule(
        host=st.sampled_from(HOSTS), new=st.sampled_from(PASSWORDS), old=st.sampled_from(PASSWORDS)
    )
    def change_password(self, host, new, old):
        master, s = self._session(self._h(host))
        try:
            self.d.dispatch(master, "session.change_password", [s, old, new])
        except Failure as e:
            assert new == "" and e.args[0] == "CHANGE_PASSWORD_REJECTED", e
            return
        assert new != ""
        for h in self._pool_of(host):
            self.model[h] = new

    @rule(joiner=st.sampled_from(HOSTS), into=st.sampled_from(HOSTS), right=st.booleans())
    def join(self, joiner, into, right):
        j, master = self._h(joiner), self._h(into).pool.master
        s = (
            self.d.dispatch(j, "session.login_with_password", ["root", self.model[joiner]])
            if j.is_master
            else None
        )
        if s is None:
            return  # a member cannot be asked to join (HOST_IS_SLAVE)
        pwd = self.model[master.name_label] if right else "wrong"
        try:
            self.d.dispatch(j, "pool.join_force", [s, master.address, "root", pwd])
        except Failure as e:
            if not right:
                assert e.args == AUTH_FAILED
            else:
                assert e.args[0] in (
                    "OPERATION_NOT_ALLOWED",
                    "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS",
                ), e
            return
        assert right
        self.model[joiner] = self.model[master.name_label]

    @rule(host=st.sampled_from(HOSTS))
    def eject(self, host):
        h = self._h(host)
        if h.is_master:
            return
        master, s = self._session(h)
        self.d.dispatch(master, "pool.eject", [s, h.ref])
        assert h.is_master  # model unchanged: the ejected host keeps its password

    @invariant()
    def each_host_accepts_exactly_its_password(self):
        for name in HOSTS:
            h = self._h(name)
            assert len({self.model[m] for m in self._pool_of(name)}) == 1
            for pwd in PASSWORDS:
                methods = ["session.slave_local_login_with_password"]
                if h.is_master:
                    methods.append("session.login_with_password")
                for method in methods:
                    try:
                        self.d.dispatch(h, method, ["root", pwd])
                        ok = True
                    except Failure as e:
                        assert e.args == AUTH_FAILED
                        ok = False
                    assert ok == (pwd == self.model[name] and pwd != ""), (name, pwd, method)


TestPasswords = Passwords.TestCase
TestPasswords.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
