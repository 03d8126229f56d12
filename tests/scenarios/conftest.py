"""Shared helpers for the spec §21 scenario tests (docs: /work/shared/docs/xapi-levelling.md).

Every scenario test builds a small inline TOML world, then drives it over the wire with the
real ``XenAPI`` package. The ``lab`` fixture is a factory::

    def test_21_7_two_pool_featuresets(lab):
        L = lab(TOML)                 # world started, torn down after the test
        x = L.x                       # XenAPI proxy logged in on the first pool's master
        L.hw("xs2", features_hvm=L.w9(0x7f))   # stage toy hardware + host.restart_agent

Helpers live on the ``Lab`` object (not in an importable module) so that test files need no
``from conftest import``. Expected values are computed with the small independent featureset
arithmetic below, not with ``xapi_sim.levelling``, so the tests do not share code with the
implementation they check.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import XenAPI

from xapi_sim.testing import running_world

INTEL = "GenuineIntel"
AMD = "AuthenticAMD"
# §9 / §19 reason strings, quoted from the spec
REASON_VENDOR = "VM last booted on a host which had a CPU from a different vendor."
REASON_FEATURES = "VM last booted on a CPU with features this host's CPU does not have."


# -- independent featureset arithmetic (spec §2.1-§2.2) -------------------------------------


def words(s: str) -> list:
    return [int(p, 16) for p in s.split("-")] if s else []


def fmt(ws) -> str:
    return "-".join(f"{w:08x}" for w in ws)


def meet(*sets: str) -> str:
    """Zero-extending intersection of featureset strings; "" is an identity (§2.2)."""
    acc = []
    for s in sets:
        w = words(s)
        if not w:
            continue
        if not acc:
            acc = w
            continue
        n = max(len(acc), len(w))
        acc = [
            a & b for a, b in zip(acc + [0] * (n - len(acc)), w + [0] * (n - len(w)), strict=True)
        ]
    return fmt(acc)


def w9(first: int, *extra: int) -> str:
    """§21 notation: ⟨x⟩ is the 9-word set with first word x; ⟨x⟩+y appends a 10th word y."""
    return fmt([first] + [0] * 8 + list(extra))


def clear_bits(s: str, word: int, mask: int) -> str:
    w = words(s)
    w[word] &= ~mask & 0xFFFFFFFF
    return fmt(w)


class Lab:
    """A running world plus XenAPI sessions and the helpers the scenario tests share."""

    INTEL, AMD = INTEL, AMD
    REASON_VENDOR, REASON_FEATURES = REASON_VENDOR, REASON_FEATURES
    words, fmt, meet, w9, clear_bits = (
        staticmethod(words),
        staticmethod(fmt),
        staticmethod(meet),
        staticmethod(w9),
        staticmethod(clear_bits),
    )

    def __init__(self, rw):
        self.rw = rw
        self.world = rw.world
        self._sessions = {}
        self.first_master = rw.world.pools[0].master.name_label

    # -- sessions ---------------------------------------------------------------------------
    def session(self, url) -> XenAPI.Session:
        s = self._sessions.get(url)
        if s is None:
            s = XenAPI.Session(url)
            s.xenapi.login_with_password(self.rw.user, self.rw.password, "2.5", "scenario-tests")
            self._sessions[url] = s
        return s

    def api(self, host_name=None):
        """XenAPI proxy on the *current* master of ``host_name``'s pool (default: the
        first scenario pool's master)."""
        h = self.world.host_by_name(host_name or self.first_master)
        master = h.pool.master if h.pool is not None else h
        return self.session(master.url).xenapi

    @property
    def x(self):
        return self.api()

    def url(self, name) -> str:
        return self.world.host_by_name(name).url

    def forget_session(self, url):
        self._sessions.pop(url, None)

    # -- lookups ----------------------------------------------------------------------------
    def ref(self, host_name) -> str:
        return self.world.host_by_name(host_name).ref

    def vm(self, name, x=None) -> str:
        refs = (x or self.x).VM.get_by_name_label(name)
        assert len(refs) == 1, (name, refs)
        return refs[0]

    def cpu_info(self, host_name, x=None) -> dict:
        return (x or self.api(host_name)).host.get_cpu_info(self.ref(host_name))

    def pool_info(self, x=None) -> dict:
        x = x or self.x
        return x.pool.get_cpu_info(x.pool.get_all()[0])

    def flags(self, vm, x=None) -> dict:
        return (x or self.x).VM.get_last_boot_CPU_flags(vm)

    def set_flags(self, vm, flags, x=None):
        (x or self.x).sim.vm_set_last_boot_CPU_flags(vm, flags)

    def mark(self, x=None):
        """Remember the messages that exist now; see ``new_messages``."""
        self._seen = set((x or self.x).message.get_all())

    def new_messages(self, x=None) -> list:
        """Messages created since ``mark()``, as (name, priority, cls, obj_uuid, body)."""
        recs = (x or self.x).message.get_all_records()
        seen = getattr(self, "_seen", set())
        return [
            (r["name"], int(r["priority"]), r["cls"], r["obj_uuid"], r["body"])
            for ref, r in recs.items()
            if ref not in seen
        ]

    # -- actions ----------------------------------------------------------------------------
    def stage(self, host_name, **changes):
        """sim.host_set_hardware: applied at the host's next xapi start."""
        self.api(host_name).sim.host_set_hardware(self.ref(host_name), changes)

    def restart(self, host_name):
        """A toolstack restart (host.restart_agent): a xapi start, §3/§4."""
        self.api(host_name).host.restart_agent(self.ref(host_name))

    def hw(self, host_name, **changes):
        """Stage hardware (toy featuresets via the vendor/features_* hooks) and restart."""
        self.stage(host_name, **changes)
        self.restart(host_name)

    def join(self, joiner, master, force=False):
        """pool.join / join_force sent to ``joiner``'s own endpoint, naming ``master``."""
        xj = self.session(self.url(joiner)).xenapi
        addr = self.api(master).host.get_address(self.ref(master))
        fn = xj.pool.join_force if force else xj.pool.join
        fn(addr, self.rw.user, self.rw.password)
        self.forget_session(self.url(joiner))  # its old pool database is gone

    @contextlib.contextmanager
    def fails(self, *expected):
        """The call fails with ``ErrorDescription == expected``; a trailing ``...``
        compares only the given prefix."""
        with pytest.raises(XenAPI.Failure) as ei:
            yield ei
        got = list(ei.value.details)
        if expected and expected[-1] is Ellipsis:
            want = list(expected[:-1])
            assert got[: len(want)] == want, got
        else:
            assert got == list(expected), got

    @staticmethod
    def wait(pred, timeout=5.0, step=0.02):
        end = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > end:
                raise AssertionError("condition not reached in time")
            time.sleep(step)


@pytest.fixture
def lab():
    """Factory: ``lab(toml_text, **world_options)`` -> started ``Lab`` (stopped at teardown)."""
    stack = contextlib.ExitStack()

    def make(toml, **world_kw):
        rw = stack.enter_context(running_world(toml, **world_kw))
        return Lab(rw)

    with stack:
        yield make
