"""Spec §21 B (host and pool level), Dundee semantics: scenarios 7-17, over the wire.

"restart H" is ``host.restart_agent`` (a toolstack restart is a xapi start, §3) unless a
scenario is about reboots or power; toy featuresets are staged with ``sim.host_set_hardware``.
"""

from __future__ import annotations

from xapi_sim.levelling import cpus, policy

POOL_KEYS = {"vendor", "cpu_count", "socket_count", "features_pv", "features_hvm"}


def two_hosts(cpu1="Haswell", cpu2="Haswell", extra1="", extra2=""):
    return f"""
[[host]]
name_label = "xs1"
cpu = "{cpu1}"
{extra1}

[[host]]
name_label = "xs2"
cpu = "{cpu2}"
{extra2}

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]
"""


THREE_HOSTS = """
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "Broadwell"

[[host]]
name_label = "xs3"
cpu = "SandyBridge"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2", "xs3"]
"""


def _pool_uuid(L, x=None):
    x = x or L.x
    return x.pool.get_uuid(x.pool.get_all()[0])


# -- 7 ---------------------------------------------------------------------------------------


def test_21_7_two_pool_featuresets(lab):
    L = lab(
        two_hosts(
            "Haswell",
            "IvyBridge",
            "sockets = 2\ncpus_per_socket = 8",
            "sockets = 1\ncpus_per_socket = 6",
        )
    )
    x = L.x
    L.hw("xs1", features_pv=L.w9(0x0F), features_hvm=L.w9(0xFF))
    L.hw("xs2", features_pv=L.w9(0x07), features_hvm=L.w9(0x7F))
    info = L.pool_info()
    assert set(info) == POOL_KEYS  # exactly these keys: no "features"
    assert info["features_pv"] == L.w9(0x07)
    assert info["features_hvm"] == L.w9(0x7F)
    assert info["cpu_count"] == "22" and info["socket_count"] == "3"
    assert info["vendor"] == L.INTEL
    # the vendor is the *last* valid host's in DB order (no agreement check)
    order = x.host.get_all()
    names = [x.host.get_name_label(h) for h in order]
    L.hw(names[-1], vendor=L.AMD)
    assert L.pool_info()["vendor"] == L.AMD
    L.hw(names[-1], vendor=L.INTEL)
    L.hw(names[0], vendor=L.AMD)
    assert L.pool_info()["vendor"] == L.INTEL


# -- 8 ---------------------------------------------------------------------------------------


def test_21_8_different_lengths(lab):
    L = lab(two_hosts())
    L.hw("xs1", features_hvm="ffffffff")
    L.hw("xs2", features_hvm="ffffffff-ffffffff")
    assert L.pool_info()["features_hvm"] == "ffffffff-00000000"


# -- 9 ---------------------------------------------------------------------------------------


def test_21_9_pre_dundee_host_ignored(lab):
    """B is a 6.5 SP1 host: vendor/cpu_count/socket_count/features only (no features_pv/hvm)."""
    L = lab("""
[[host]]
name_label = "xs1"
cpu = "Haswell"
sockets = 1
cpus_per_socket = 1

[[host]]
name_label = "old"
cpu = "SandyBridge"
version = "6.5.0"
sockets = 2
cpus_per_socket = 8

[[pool]]
name_label = "P"
master = "xs1"
members = ["old"]
""")
    a, b = L.cpu_info("xs1"), L.cpu_info("old")
    assert {"vendor", "cpu_count", "socket_count", "features"} <= set(b)
    assert "features_pv" not in b and "features_hvm" not in b
    info = L.pool_info()
    assert info["features_hvm"] == a["features_hvm"]
    assert info["features_pv"] == a["features_pv"]
    assert info["cpu_count"] == "1" and info["socket_count"] == "1"


def test_21_9_fresh_host_with_empty_cpu_info_ignored(lab):
    """A just-joined host whose record still has cpu_info = {} (before its first start as a
    member) contributes nothing, counts included."""
    L = lab("""
[[host]]
name_label = "xs1"
cpu = "Haswell"
sockets = 1
cpus_per_socket = 1

[[host]]
name_label = "new"
cpu = "SandyBridge"
sockets = 2
cpus_per_socket = 8
""")
    a = L.cpu_info("xs1")
    L.world.join_restart_delay = 0.6
    L.join("new", "xs1")
    x = L.x
    assert x.host.get_cpu_info(L.ref("new")) == {}
    info = L.pool_info()
    assert (info["features_hvm"], info["features_pv"]) == (a["features_hvm"], a["features_pv"])
    assert info["cpu_count"] == "1" and info["socket_count"] == "1"
    # ... until its first start as a member
    L.wait(lambda: x.host.get_cpu_info(L.ref("new")) != {})
    assert L.pool_info()["cpu_count"] == "17"


# -- 10 --------------------------------------------------------------------------------------


def test_21_10_pv_only_host_zeroes_pool_hvm(lab):
    """Dundee includes hosts that cannot run HVM (features_hvm all zeros)."""
    L = lab(two_hosts())
    L.hw("xs1", features_hvm="000000ff")
    L.hw("xs2", features_hvm="00000000")
    assert L.pool_info()["features_hvm"] == "00000000"


# -- 11 --------------------------------------------------------------------------------------


def test_21_11_recalculated_at_every_boot(lab):
    L = lab(two_hosts("Haswell", "Haswell"))
    x = L.x
    level = L.pool_info()
    old_b = L.cpu_info("xs2")
    L.mark()
    # new hardware, fewer hvm bits: nothing changes until B's xapi starts
    L.stage("xs2", cpu="SandyBridge")
    assert L.cpu_info("xs2") == old_b
    assert L.pool_info() == level
    assert L.new_messages() == []
    # B reboots (host.reboot needs the host disabled first)
    x.host.disable(L.ref("xs2"))
    x.host.reboot(L.ref("xs2"))
    new_b = L.cpu_info("xs2")
    expected_b = cpus.host_cpu_info("SandyBridge", sockets=1, cpus_per_socket=8)
    assert new_b == expected_b
    assert new_b["features_hvm"] != old_b["features_hvm"]
    new_level = L.pool_info()
    assert new_level["features_hvm"] == L.meet(
        L.cpu_info("xs1")["features_hvm"], new_b["features_hvm"]
    )
    assert new_level["features_pv"] == L.meet(
        L.cpu_info("xs1")["features_pv"], new_b["features_pv"]
    )
    assert new_level["features_hvm"] != level["features_hvm"]
    b_uuid = x.host.get_uuid(L.ref("xs2"))
    msgs = L.new_messages()
    assert (
        "HOST_CPU_FEATURES_DOWN",
        3,
        "Host",
        b_uuid,
        "The CPU features of host have changed. Some features have gone away.",
    ) in msgs
    assert (
        "POOL_CPU_FEATURES_DOWN",
        5,
        "Pool",
        _pool_uuid(L),
        "The pool-level CPU features have changed. Some features have gone away.",
    ) in msgs
    assert len(msgs) == 2, msgs


# -- 12 --------------------------------------------------------------------------------------


def test_21_12_features_gained(lab):
    """xs1 restarts with a strict superset (avx2 no longer hidden); xs2 (Sandy Bridge) is
    the limiting host, so the pool level is unchanged and there is no pool message."""
    L = lab(two_hosts("Haswell", "SandyBridge", 'hidden_features = ["avx2"]'))
    x = L.x
    before = L.cpu_info("xs1")["features_hvm"]
    level = L.pool_info()
    L.mark()
    L.hw("xs1", hidden_features=[])
    after = L.cpu_info("xs1")["features_hvm"]
    assert L.meet(before, after) == before and before != after  # strict superset
    assert L.pool_info() == level
    assert L.new_messages() == [
        (
            "HOST_CPU_FEATURES_UP",
            5,
            "Host",
            x.host.get_uuid(L.ref("xs1")),
            "The CPU features of host have changed. Some features were added.",
        )
    ]


# -- 13 --------------------------------------------------------------------------------------


def test_21_13_pv_only_change_no_alert(lab):
    L = lab(two_hosts())
    level = L.pool_info()
    b = L.cpu_info("xs2")
    new_pv = L.clear_bits(b["features_pv"], 0, 0x1)  # drop a bit the pool level has
    assert L.meet(level["features_pv"], new_pv) != level["features_pv"]
    L.mark()
    L.hw("xs2", features_pv=new_pv)
    info = L.pool_info()
    assert info["features_pv"] == L.meet(L.cpu_info("xs1")["features_pv"], new_pv)
    assert info["features_hvm"] == level["features_hvm"]
    assert L.new_messages() == []


# -- 14 --------------------------------------------------------------------------------------


def test_21_14_alerts_suppressed_during_rpu(lab):
    L = lab(two_hosts())
    x = L.x
    pool = x.pool.get_all()[0]
    x.pool.add_to_other_config(pool, "rolling_upgrade_in_progress", "true")
    level = L.pool_info()
    L.mark()
    L.hw("xs2", cpu="SandyBridge")  # a slave: the master's RPU detection does not run
    assert L.pool_info()["features_hvm"] != level["features_hvm"]  # the level did drop
    assert L.new_messages() == []


def test_21_14_alerts_suppressed_on_first_boot(lab):
    L = lab(two_hosts())
    ref = L.x.sim.add_host({"name_label": "fresh", "cpu": "Broadwell"})
    xf = L.session(L.url("fresh")).xenapi
    assert xf.host.get_cpu_info(ref)["features_hvm"]
    assert xf.message.get_all() == []


def test_21_14_no_pool_alert_in_one_host_pool(lab):
    L = lab("""
[[host]]
name_label = "solo"
cpu = "Haswell"
""")
    L.mark()
    L.hw("solo", cpu="SandyBridge")
    msgs = L.new_messages()
    assert [m[0] for m in msgs] == ["HOST_CPU_FEATURES_DOWN"]  # host alert only
    assert L.pool_info()["features_hvm"] == L.cpu_info("solo")["features_hvm"]


# -- 15 --------------------------------------------------------------------------------------


def test_21_15_spurious_down_in_dundee(lab):
    """X (9 words) -> X + one zero word: Dundee's length-sensitive comparison reports a loss.
    The pool comparison uses the same logic (§4), so the pool alert is DOWN too."""
    L = lab(two_hosts())
    x = L.x
    X = L.cpu_info("xs2")["features_hvm"]
    assert len(L.words(X)) == 9
    L.mark()
    L.hw("xs2", features_hvm=X + "-00000000")
    msgs = L.new_messages()
    assert (
        "HOST_CPU_FEATURES_DOWN",
        3,
        "Host",
        x.host.get_uuid(L.ref("xs2")),
        "The CPU features of host have changed. Some features have gone away.",
    ) in msgs
    assert (
        "POOL_CPU_FEATURES_DOWN",
        5,
        "Pool",
        _pool_uuid(L),
        "The pool-level CPU features have changed. Some features have gone away.",
    ) in msgs
    assert len(msgs) == 2
    # the >=2018 zero-extended comparison (CA-279498) sees no change: no message (unit level;
    # the simulated world runs Dundee GA semantics)
    old, new = {"features_hvm": X}, {"features_hvm": X + "-00000000"}
    assert policy.host_alert(old, new, semantics="2018") is None
    assert policy.host_alert(old, new, semantics="dundee")[0] == "HOST_CPU_FEATURES_DOWN"


# -- 16 --------------------------------------------------------------------------------------


def test_21_16_toolstack_restart_recomputes_without_change(lab):
    L = lab(two_hosts("Haswell", "IvyBridge"))
    x = L.x
    level = L.pool_info()
    hosts = {n: L.cpu_info(n) for n in ("xs1", "xs2")}
    L.mark()
    event_from = getattr(x.event, "from")
    token = event_from(["pool"], "", 0.0)["token"]
    for name in ("xs2", "xs1"):  # a slave, then the master
        L.restart(name)
        # the pool level was rewritten (an event on the pool object) ...
        ev = event_from(["pool"], token, 1.0)
        token = ev["token"]
        assert any(e["class"] == "pool" and e["operation"] == "mod" for e in ev["events"])
        # ... with no change and no message
        assert L.pool_info() == level
        assert {n: L.cpu_info(n) for n in ("xs1", "xs2")} == hosts
    assert L.new_messages() == []


# -- 17 --------------------------------------------------------------------------------------


def test_21_17_offline_host_still_counts(lab):
    L = lab(THREE_HOSTS)
    x = L.x
    a, b, c = (L.cpu_info(n) for n in ("xs1", "xs2", "xs3"))
    full = L.meet(a["features_hvm"], b["features_hvm"], c["features_hvm"])
    assert L.pool_info()["features_hvm"] == full
    xs3 = L.ref("xs3")
    x.host.disable(xs3)
    x.host.shutdown(xs3)
    assert x.host_metrics.get_live(x.host.get_metrics(xs3)) is False
    L.mark()
    L.restart("xs1")
    L.restart("xs2")
    assert L.pool_info()["features_hvm"] == full  # C still holds the level down
    assert L.pool_info()["cpu_count"] == str(sum(int(i["cpu_count"]) for i in (a, b, c)))
    assert L.new_messages() == []
    x.host.destroy(xs3)
    assert xs3 not in x.host.get_all()
    info = L.pool_info()
    assert info["features_hvm"] == L.meet(a["features_hvm"], b["features_hvm"])
    assert info["features_pv"] == L.meet(a["features_pv"], b["features_pv"])
    assert info["features_hvm"] != full
    assert L.new_messages() == [
        (
            "POOL_CPU_FEATURES_UP",
            5,
            "Pool",
            _pool_uuid(L),
            "The pool-level CPU features have changed. Some features were added.",
        )
    ]
