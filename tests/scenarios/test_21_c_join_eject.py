"""Spec §21 C (pool join / eject), Dundee semantics: scenarios 18-23, over the wire.

``pool.join`` is sent to the joining host's own endpoint with the master's address, as
XenCenter and ``xe pool-join`` do.
"""

from __future__ import annotations

import XenAPI

POOL_AND_STANDALONES = """
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "Broadwell"

[[host]]
name_label = "n_intel"
cpu = "SandyBridge"

[[host]]
name_label = "n_amd"
cpu = "EPYC"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]
"""


def _pool_uuid(x):
    return x.pool.get_uuid(x.pool.get_all()[0])


# -- 18 --------------------------------------------------------------------------------------


def test_21_18_less_capable_host_joins(lab):
    L = lab(POOL_AND_STANDALONES)
    x = L.x
    level = L.pool_info()
    n = L.cpu_info("n_intel")
    assert n["vendor"] == L.INTEL
    assert L.meet(level["features_hvm"], n["features_hvm"]) != level["features_hvm"]
    L.mark()
    # the joiner's first start as a member happens 0.6 s after pool.join returns
    L.world.join_restart_delay = 0.6
    L.join("n_intel", "xs1")
    nref = L.ref("n_intel")
    assert nref in x.host.get_all()
    # intermediate state: the new record has cpu_info = {}, the pool level is still L
    assert x.host.get_cpu_info(nref) == {}
    assert L.pool_info() == level
    assert L.new_messages() == []
    # after N's first start as a slave: L ∩ N and a POOL_CPU_FEATURES_DOWN
    L.wait(lambda: x.host.get_cpu_info(nref) != {})
    info = L.pool_info()
    assert info["features_hvm"] == L.meet(level["features_hvm"], n["features_hvm"])
    assert info["features_pv"] == L.meet(level["features_pv"], n["features_pv"])
    assert info["cpu_count"] == str(int(level["cpu_count"]) + int(n["cpu_count"]))
    assert L.new_messages() == [
        (
            "POOL_CPU_FEATURES_DOWN",
            5,
            "Pool",
            _pool_uuid(x),
            "The pool-level CPU features have changed. Some features have gone away.",
        )
    ]
    # first start as a member: no previous features_hvm on its record, so no host alert


# -- 19 --------------------------------------------------------------------------------------


def test_21_19_vendor_mismatch(lab):
    L = lab(POOL_AND_STANDALONES)
    x = L.x
    assert L.cpu_info("n_amd")["vendor"] == L.AMD
    with L.fails("HOSTS_NOT_HOMOGENEOUS", "CPUs differ"):
        L.join("n_amd", "xs1")
    assert L.ref("n_amd") not in x.host.get_all()
    intel = L.pool_info()
    amd = L.cpu_info("n_amd")
    L.join("n_amd", "xs1", force=True)
    order = x.host.get_all()
    assert order[-1] == L.ref("n_amd")  # the joiner is last in DB order
    info = L.pool_info()
    assert info["vendor"] == L.AMD  # the last valid host's vendor wins
    assert info["features_hvm"] == L.meet(intel["features_hvm"], amd["features_hvm"])
    # any later start recomputes from DB order again: still the last host's vendor
    L.restart("xs1")
    assert L.pool_info()["vendor"] == x.host.get_cpu_info(order[-1])["vendor"] == L.AMD


# -- 20 --------------------------------------------------------------------------------------


def test_21_20_software_check_first(lab):
    """N differs in build number and vendor: the software check (inside
    assert_hosts_homogeneous) comes before the CPU check."""
    # the same 7.0 release with a different build: the scenario's build_number key
    L = lab(
        POOL_AND_STANDALONES.replace(
            'name_label = "n_amd"', 'name_label = "n_amd"\nbuild_number = "125999c"'
        )
    )
    h = L.world.host_by_name("n_amd")
    xn = L.api("n_amd")
    assert xn.host.get_software_version(h.ref)["build_number"] == "125999c"
    assert L.x.host.get_software_version(L.ref("xs1"))["build_number"] != "125999c"
    with L.fails("HOSTS_NOT_HOMOGENEOUS", "software version differs"):
        L.join("n_amd", "xs1")


# -- 21 --------------------------------------------------------------------------------------

JOINERS_WITH_VMS = """
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "IvyBridge"

[[host]]
name_label = "n_run"
cpu = "Haswell"

[[host]]
name_label = "n_susp"
cpu = "Broadwell"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]

[[vm]]
name_label = "r"
power_state = "Running"
host = "n_run"

[[vm]]
name_label = "s"
power_state = "Suspended"
host = "n_susp"
"""


def test_21_21_running_vm_blocks_join(lab):
    L = lab(JOINERS_WITH_VMS)
    with L.fails("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"):
        L.join("n_run", "xs1")
    assert L.ref("n_run") not in L.x.host.get_all()


def test_21_21_suspended_vm_does_not_block_join(lab):
    L = lab(JOINERS_WITH_VMS)
    xn = L.api("n_susp")
    s_before = L.vm("s", xn)
    F = xn.VM.get_last_boot_CPU_flags(s_before)
    assert xn.VM.get_power_state(s_before) == "Suspended"
    assert F["features"] == L.cpu_info("n_susp")["features_hvm"]  # its own 1-host pool level
    L.join("n_susp", "xs1")
    x = L.x
    s = L.vm("s")
    assert x.VM.get_power_state(s) == "Suspended"
    assert L.flags(s) == F  # unchanged by the join
    # a later resume_on is checked against the host X it names
    x1 = L.ref("xs1")
    assert L.meet(F["features"], L.cpu_info("xs1")["features_hvm"]) != F["features"]
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", s, x1, L.REASON_FEATURES):
        x.VM.resume_on(s, x1, False, False)
    x.VM.resume_on(s, L.ref("n_susp"), False, False)
    assert x.VM.get_power_state(s) == "Running"
    assert x.VM.get_resident_on(s) == L.ref("n_susp")


# -- 22 --------------------------------------------------------------------------------------


def test_21_22_eject_raises_level(lab):
    L = lab("""
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "Broadwell"

[[host]]
name_label = "c"
cpu = "SandyBridge"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2", "c"]
""")
    x = L.x
    a, b, c = (L.cpu_info(n) for n in ("xs1", "xs2", "c"))
    assert L.pool_info()["features_hvm"] == L.meet(
        a["features_hvm"], b["features_hvm"], c["features_hvm"]
    )
    L.mark()
    cref = L.ref("c")
    x.pool.eject(cref)
    assert cref not in x.host.get_all()
    info = L.pool_info()
    assert info["features_hvm"] == L.meet(a["features_hvm"], b["features_hvm"])
    assert info["features_pv"] == L.meet(a["features_pv"], b["features_pv"])
    assert info["cpu_count"] == str(int(a["cpu_count"]) + int(b["cpu_count"]))
    # Dundee: the recomputation can raise POOL_CPU_FEATURES_UP (§5.3)
    assert L.new_messages() == [
        (
            "POOL_CPU_FEATURES_UP",
            5,
            "Pool",
            _pool_uuid(x),
            "The pool-level CPU features have changed. Some features were added.",
        )
    ]
    # the ejected host comes back as the master of a new pool of its own
    xc = L.session(L.url("c")).xenapi
    assert xc.pool.get_cpu_info(xc.pool.get_all()[0])["features_hvm"] == c["features_hvm"]


# -- 23 --------------------------------------------------------------------------------------


def test_21_23_login_on_slave(lab):
    L = lab(POOL_AND_STANDALONES)
    x = L.x
    master_addr = x.host.get_address(L.ref("xs1"))
    s = XenAPI.Session(L.url("xs2"))
    with L.fails("HOST_IS_SLAVE", master_addr):
        s.xenapi.login_with_password(L.rw.user, L.rw.password, "2.5", "scenario-tests")
    # pool.join naming a slave of P: the login inside the join surfaces HOST_IS_SLAVE
    with L.fails("HOST_IS_SLAVE", master_addr):
        L.join("n_intel", "xs2")
    assert L.ref("n_intel") not in x.host.get_all()


def test_join_ends_the_joiners_own_sessions():
    """The joiner's toolstack restarts as a member: sessions opened on it end, and an
    event.from blocked on one returns SESSION_INVALID instead of waiting out its timeout."""
    import threading
    import time as _time
    import xmlrpc.client

    from xapi_sim.testing import running_world

    with running_world(seed=8) as w:
        s4 = XenAPI.Session(w.url("xs4"))
        s4.xenapi.login_with_password("root", "xenroot")
        raw = xmlrpc.client.ServerProxy(w.url("xs4"))
        sess = raw.session.login_with_password("root", "xenroot")["Value"]
        tok = getattr(raw.event, "from")(sess, ["vm"], "", 0.0)["Value"]["token"]
        got = {}

        def wait():
            t0 = _time.monotonic()
            proxy = xmlrpc.client.ServerProxy(w.url("xs4"))
            got["reply"] = getattr(proxy.event, "from")(sess, ["vm"], tok, 30.0)
            got["t"] = _time.monotonic() - t0

        th = threading.Thread(target=wait)
        th.start()
        _time.sleep(0.5)
        s4.xenapi.pool.join(w.host("xs1").address, "root", "xenroot")
        th.join(10)
        assert not th.is_alive() and got["t"] < 10
        assert got["reply"] == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", sess]}
