"""Playback (xapi_sim/playback.py): real pool databases loaded as pools of a world.

Against every sample in ``tests/data/xapi-db`` (three files real pools wrote -- Orlando,
Boston, Tampa -- and two hand-written from the format -- Dundee, Stockholm):

* the file loads, and the pool has the file's hosts, VMs, SRs, VDIs, networks and PIFs;
* the report names every column and table that was not mapped, with the reason the
  datamodel's lifecycles give, and nothing else;
* each host boots and reports the ``cpu_info`` the file recorded (every key its release
  reports), also after a crash and power-on; ``software_version`` verbatim for a 7.0 host;
* VMs keep their power states, residence and ``last_boot_CPU_flags``; messages load;
  secrets and sessions are never read;
* load, dump and load again gives the same records, and the second dump the same rows.

Clients are the ``XenAPI`` package against the served world.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import xmlrpc.client

import pytest
import XenAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim import datamodel, dbvalues, dbxml, playback, playback_dump, playback_hw
from xapi_sim.datamodel import RELEASE_INDEX, Schema
from xapi_sim.levelling import cpus
from xapi_sim.server import Simulator
from xapi_sim.world import World

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "xapi-db"
FILES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".xml", ".db"))
NOW = 1_700_000_000.0


def path(name):
    return str(DATA / name)


def load(*names, seed=0, password="xenroot"):
    world = World(seed=seed, password=password, auth_failure_delay=0.0)
    world.clock.set_source(lambda: NOW)
    reports = [playback.load(world, path(n)) for n in names]
    return world, reports


@contextlib.contextmanager
def served(*names, password="xenroot"):
    world, reports = load(*names, password=password)
    sim = Simulator(world, port=0).start()
    try:
        yield world, reports
    finally:
        sim.stop()


def session(world, pool_index=0, password="xenroot"):
    s = XenAPI.Session(world.pools[pool_index].master.url)
    s.xenapi.login_with_password("root", password, "2.5", "pytest")
    return s


def raw(name):
    return dbxml.read(path(name))


def recorded_map(text):
    return dict(dbvalues.unmarshal_map(text)) if text else {}


def test_samples_present():
    assert len(FILES) >= 5
    releases = {dbxml.release_for_schema(*raw(f).schema_version()) for f in FILES}
    assert releases == {"orlando", "boston", "tampa", "dundee", "stockholm"}


@pytest.mark.parametrize("name", FILES)
def test_each_sample_loads_with_the_files_objects(name):
    world, (report,) = load(name)
    f = raw(name)
    db = world.pools[0].db
    for cls in ("host", "VM", "SR", "VDI", "network", "PIF", "PBD", "VBD"):
        assert db.count(cls) == len(f.tables.get(cls, [])), cls
        assert report.loaded_counts.get(cls, 0) == db.count(cls)
        assert set(db.tables[cls]) == {r.ref for r in f.tables.get(cls, [])}
    assert [h.name_label for h in world.hosts.values()] == [
        r.columns.get("name__label") for r in f.tables["host"]
    ]
    assert all(h.state == "up" for h in world.hosts.values())
    assert db.check_relations() == []
    want = {"dundee": "dundee", "stockholm": "stockholm_psr"}
    assert report.release == want.get(name.split("-")[0], "cream")


def expected_unmapped(name):
    """What the report must hold, worked out from the file and the datamodel alone:
    {(table, field): reason} for every column the emulated release lacks."""
    f = raw(name)
    file_release = dbxml.release_for_schema(*f.schema_version())
    release = {"dundee": "dundee", "stockholm": "stockholm_psr"}.get(file_release, "cream")
    schema = Schema.for_release(release)
    out = {}
    for table, rows in f.tables.items():
        if table in ("session", "task"):
            if rows:
                out[(table, "*")] = "do not outlive xapi"
            continue
        if table not in schema.classes:
            if rows:
                out[(table, "*")] = "class"
            continue
        fields = schema.classes[table].fields
        for r in rows:
            for col in r.columns:
                if col == "_ref" or dbxml.field_of_column(col, fields):
                    continue
                field = col.replace("__", "_", 1) if "__" in col else col
                life = datamodel.field_lifecycle(table, field)
                if life is None:
                    why = "not in the API datamodel"
                elif life[1] and RELEASE_INDEX[life[1]] <= RELEASE_INDEX[release]:
                    why = f"removed in {life[1]}: dropped"
                else:
                    why = f"added in {life[0]}, after {release}"
                out[(table, field)] = why
        if table == "secret" and any(r.columns.get("value") for r in rows):
            out[("secret", "value")] = "never read"
    return out


@pytest.mark.parametrize("name", FILES)
def test_report_names_exactly_what_was_not_mapped(name):
    _, (report,) = load(name)
    want = expected_unmapped(name)
    got = {}
    for u in report.unmapped:
        if (
            "bad value" in u.reason
            or "element dropped" in u.reason
            or "database GC" in u.reason
            or "Dbsync_master" in u.reason
        ):
            continue
        got[(u.table, u.field)] = u.reason
    assert set(got) == set(want)
    for key, why in want.items():
        assert why in got[key], (key, got[key])
    for u in report.unmapped:
        assert u.rows >= 1 and u.line().startswith(f"{u.table}.{u.field}: ")


def test_report_spot_checks():
    _, (r,) = load("stockholm-1host.xml")
    lines = r.unmapped_lines()
    # an 8.2 database runs as 8.2 CU1: its Certificate class and VM.domain_type are served
    served = ("VM.domain_type", "Certificate.", "host.certificates")
    assert not any(x.startswith(served) for x in lines)
    _, (r,) = load("tampa-2hosts.xml")
    assert (
        "host.boot_free_mem: not in the API datamodel (internal to xapi): kept aside, "
        "not served (2 rows)" in r.unmapped_lines()
    )
    assert (
        "VM.is_snapshot_from_vmpp: removed in clearwater: dropped (67 rows)" in r.unmapped_lines()
    )
    assert any(
        d.table == "VM" and d.field == "VCPUs_params" or d.table == "host" for d in r.defaulted
    )
    assert any("runs as 6.5.0 (cream)" in n for n in r.notes)


def test_truncated_value_reported_and_defaulted(tmp_path):
    """A value that does not convert is reported with why; the field takes its default."""
    text = (
        (DATA / "dundee-2hosts.xml")
        .read_text()
        .replace("tags=\"('prod' 'web tier')\"", "tags=\"('prod' \"")
    )
    p = tmp_path / "bad.xml"
    p.write_text(text)
    world = World(seed=0)
    report = playback.load(world, str(p))
    bad = [u for u in report.unmapped if u.table == "VM" and u.field == "tags"]
    assert len(bad) == 1 and bad[0].reason.startswith("bad value, datamodel default used")
    db = world.pools[0].db
    assert db.get("VM", "OpaqueRef:8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c11")["tags"] == []


KEYS = playback.CPU_INFO_KEYS


@pytest.mark.parametrize("name", FILES)
def test_hosts_boot_and_report_the_recorded_cpu_info(name):
    with served(name) as (world, (report,)):
        x = session(world).xenapi
        recorded = {
            r.ref: recorded_map(r.columns.get("cpu_info")) for r in raw(name).tables["host"]
        }
        keys = KEYS[report.release]
        for ref, rec in recorded.items():
            served_info = x.host.get_cpu_info(ref)
            for k in keys:
                if k in rec:
                    assert served_info[k] == rec[k], (ref, k)
            assert set(served_info) == set(keys)
            assert x.host_metrics.get_live(x.host.get_metrics(ref))
        if name.startswith("dundee"):
            assert all(x.host.get_cpu_info(r) == rec for r, rec in recorded.items())


def test_cpu_info_survives_a_crash_and_power_on():
    with served("dundee-2hosts.xml") as (world, _):
        s = session(world)
        member = "OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e02"
        before = s.xenapi.host.get_cpu_info(member)
        s.xenapi_request("sim.host_crash", (member,))
        s.xenapi_request("sim.host_power_on", (member,))
        assert s.xenapi.host.get_cpu_info(member) == before
        row = next(r for r in raw("dundee-2hosts.xml").tables["host"] if r.ref == member)
        assert before == recorded_map(row.columns["cpu_info"])


def test_hardware_from_cpu_info():
    world, _ = load("dundee-2hosts.xml")
    a = world.host("OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e01")
    b = world.host("OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e02")
    assert (a.hw.cpu, a.hw.sockets, a.hw.cpus_per_socket, a.hw.memory) == (
        "Haswell",
        2,
        8,
        274861129728,
    )
    assert (b.hw.cpu, b.hw.sockets, b.hw.cpus_per_socket, b.hw.memory) == (
        "IvyBridge",
        1,
        4,
        34359738368,
    )
    world, _ = load("tampa-2hosts.xml")
    assert {h.hw.cpu for h in world.hosts.values()} == {"Nehalem"}
    world, (r,) = load("orlando-state.db")
    assert any("no cpu_info recorded: taken from its host_cpu rows" in n for n in r.notes)
    assert any("no host_metrics row, one made" in n for n in r.notes)


def test_software_versions():
    with served("dundee-2hosts.xml", "tampa-2hosts.xml") as (world, _):
        x = session(world).xenapi
        for r in raw("dundee-2hosts.xml").tables["host"]:
            assert x.host.get_software_version(r.ref) == recorded_map(r.columns["software_version"])
            assert x.host.get_API_version_minor(r.ref) == "5"
        x2 = session(world, 1).xenapi
        for r in raw("tampa-2hosts.xml").tables["host"]:
            assert x2.host.get_software_version(r.ref)["product_version"] == "6.5.0"
        assert (
            x2.pool.get_other_config(x2.pool.get_all()[0]).get("rolling_upgrade_in_progress")
            is None
        )


@pytest.mark.parametrize("name", ["dundee-2hosts.xml", "tampa-2hosts.xml", "stockholm-1host.xml"])
def test_vms_keep_power_state_residence_and_flags(name):
    with served(name) as (world, _):
        x = session(world).xenapi
        records = x.VM.get_all_records()
        for r in raw(name).tables["VM"]:
            got = records[r.ref]
            assert got["power_state"] == r.columns["power_state"]
            assert got["resident_on"] == r.columns["resident_on"]
            assert got["last_boot_CPU_flags"] == recorded_map(r.columns["last_boot_CPU_flags"])
            assert got["uuid"] == r.columns["uuid"]
            # kept aside by a Dundee pool, served by an 8.2 CU1 one
            assert ("domain_type" in got) == name.startswith("stockholm")


def test_messages_secrets_and_sessions():
    with served("dundee-2hosts.xml", "boston-2hosts.xml", password="s3cret") as (world, _):
        s = session(world, password="s3cret")
        msgs = s.xenapi.message.get_all_records()
        assert [m["name"] for m in msgs.values()] == ["POOL_CPU_FEATURES_DOWN"]
        assert list(msgs) == ["OpaqueRef:5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e1001"]
        # the session the file recorded does not exist: sessions are never loaded
        proxy = xmlrpc.client.ServerProxy(world.pools[0].master.url)
        reply = proxy.pool.get_all("OpaqueRef:0f1e2d3c-4b5a-4968-8776-655443322101")
        assert reply["Status"] == "Failure"
        assert reply["ErrorDescription"][0] == "SESSION_INVALID"
        with pytest.raises(XenAPI.Failure):
            session(world, password="xenroot")
        boston = world.pools[1].db
        assert boston.count("secret") == 2
        assert all(row["value"] == "" for _, row in boston.rows("secret"))


def test_two_files_two_pools_and_no_double_load():
    world, _ = load("dundee-2hosts.xml", "tampa-2hosts.xml")
    assert len(world.pools) == 2 and len(world.hosts) == 4
    with pytest.raises(playback.PlaybackError) as e:
        playback.load(world, path("dundee-2hosts.xml"))
    assert "already in the world" in str(e.value) and "\n" not in str(e.value)
    assert len(world.pools) == 2 and len(world.hosts) == 4


def records(world):
    db = world.pools[0].db
    return {
        (cls, ref): row
        for cls, t in db.tables.items()
        if dbxml.persistent(cls)
        for ref, row in t.items()
    }


def rows_of(text):
    f = dbxml.read(io.BytesIO(text.encode()))
    return {(t, r.ref): r.columns for t, rows in f.tables.items() for r in rows}


@pytest.mark.parametrize("name", FILES)
def test_load_dump_load_gives_the_same_records(name, tmp_path):
    w1, _ = load(name, seed=3)
    d1 = "".join(playback_dump.dump(w1.pools[0]))
    p = tmp_path / "dump.xml"
    p.write_text(d1, encoding="utf-8")
    w2 = World(seed=3, auth_failure_delay=0.0)
    w2.clock.set_source(lambda: NOW)
    (r2,) = [playback.load(w2, str(p))]
    assert records(w2) == records(w1)
    assert {u.reason for u in r2.unmapped} <= {playback.NOT_IN_API}
    d2 = "".join(playback_dump.dump(w2.pools[0]))
    assert rows_of(d2) == rows_of(d1)


def test_dump_is_what_xapi_writes():
    world, _ = load("dundee-2hosts.xml")
    text = "".join(playback_dump.dump(world.pools[0]))
    assert text.startswith(
        '<?xml version="1.0" encoding="UTF-8"?>\n<database><manifest>'
        '<pair key="schema_major_vsn" value="5"/><pair key='
        '"schema_minor_vsn" value="93"/><pair key="generation_count" '
        'value="'
    )
    for empty in ("VTPM", "message", "session", "task", "role", "event"):
        assert f'<table name="{empty}"/>' in text
    f = dbxml.read(io.BytesIO(text.encode()))
    assert list(f.tables) == sorted(f.tables, key=str.encode)
    host = next(r for r in f.tables["host"] if r.ref.endswith("9e01"))
    assert host.columns["boot_free_mem"] == "267137449984"  # internal column kept
    assert host.columns["name__description"] == "Default install  of XenServer"
    assert host.ctime == 50 and host.mtime > 4242  # booted after the load
    pool = f.tables["pool"][0]
    assert pool.columns["name_label"] == "lab-pool" and "name__label" not in pool.columns
    vm = next(r for r in f.tables["VM"] if r.ref.endswith("3c11"))
    assert vm.columns["HVM__boot_params"] == "(('order' 'cd') ('firmware' 'bios'))"
    assert vm.columns["name__description"] == "Web front end   (nginx)"
    assert f.generation() >= max(r.mtime for rows in f.tables.values() for r in rows)


def test_a_later_release_runs_as_its_profile():
    """An 8.2 database runs as the 8.2 CU1 profile (docs/releases.md): its fields are
    served, its host keeps its recorded software_version (same 8.2 line), and the dump
    carries the schema that host reports."""
    world, (r,) = load("stockholm-1host.xml")
    assert r.file_release == "stockholm" and r.release == "stockholm_psr"
    text = "".join(playback_dump.dump(world.pools[0]))
    assert "domain_type" in text and '<table name="Certificate"><row' in text
    assert 'schema_minor_vsn" value="601"' in text
    h = next(iter(world.hosts.values()))
    sv = h.db.get("host", h.ref)["software_version"]
    assert sv["product_version"] == "8.2.0" and sv["db_schema"] == "5.601"
    assert h.product.profile == "stockholm"
    h = next(iter(world.hosts.values()))
    assert h.db.get("host", h.ref)["name_description"] == "Default install"
    assert h.recorded_address == "192.168.40.21"


# -- the pure parts: nearest CPU model, hardware, releases ---------------------------------


@pytest.mark.parametrize("model", sorted(cpus.MODELS))
@pytest.mark.parametrize("release", ["dundee", "cream"])
def test_every_catalogue_cpu_is_its_own_nearest(model, release):
    """A cpu_info the catalogue derives maps back to that model, or to one that reports
    exactly the same identity and features."""
    info = cpus.host_cpu_info(model, release=release)
    got, why = playback.nearest_cpu(info)
    again = cpus.host_cpu_info(got, release=release)
    assert got == model or all(
        again[k] == info[k]
        for k in ("vendor", "family", "model", "features", "features_hvm")
        if k in info
    ), why


@settings(max_examples=80, deadline=None)
@given(
    count=st.integers(1, 512),
    sockets=st.integers(0, 16),
    keys=st.sets(
        st.sampled_from(
            sorted(
                set(cpus.DUNDEE_KEYS)
                | set(cpus.CREAM_KEYS)
                | {"features_pv_host", "threads_per_core"}
            )
        )
    ),
    release=st.sampled_from(sorted(playback.CPU_INFO_KEYS)),
    memory=st.integers(-1, 1 << 42),
)
def test_hardware_for(count, sockets, keys, release, memory):
    base = {}
    for profile in ("cream", "dundee", "xcp-ng-8.3"):
        base |= cpus.host_cpu_info("Haswell", release=profile)
    info = {k: base.get(k, "x") for k in keys}
    info["cpu_count"], info["socket_count"] = str(count), str(sockets)
    hw, notes = playback.hardware_for(info, [], memory, release)
    assert hw.overrides == {k: v for k, v in info.items() if k in playback.ALL_CPU_INFO_KEYS}
    assert 1 <= hw.sockets <= max(1, count) and hw.sockets * hw.cpus_per_socket <= count
    assert hw.memory == (memory if memory > 0 else playback.DEFAULT_MEMORY)
    extra = sorted(k for k in info if k not in playback.CPU_INFO_KEYS[release])
    assert bool(extra) == any("not reported by" in n for n in notes)


@settings(max_examples=80, deadline=None)
@given(
    file_release=st.sampled_from(datamodel.RELEASES) | st.none(),
    version=st.from_regex(r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]", fullmatch=True) | st.just(""),
)
def test_emulated_release(file_release, version):
    """With a recorded product version, the profile of its product line; without one, the
    newest profile not after the file's schema (the oldest if none), dundee without
    either."""
    got = playback.emulated_release(file_release, version)
    if version:
        assert got == playback_hw.profile_for_line(version).release
        major = int(version.split(".")[0])
        want_major = {6: "cream", 7: None, 8: None}.get(major)
        if major < 6:
            assert got == "cream"
        elif want_major:
            assert got == want_major
        elif major > 8:
            assert got == "23.30.0"  # XenServer 8, the newest XenServer profile
    elif file_release is None:
        assert got == "dundee"
    else:
        assert RELEASE_INDEX[got] <= max(RELEASE_INDEX[file_release], RELEASE_INDEX["cream"])


@pytest.mark.parametrize(
    "pv,brand,want",
    [
        ("5.6.0", "", "cream"),
        ("6.2.0", "", "cream"),
        ("7.0.0", "", "dundee"),
        ("7.6.0", "", "ely"),
        ("8.0.0", "Citrix Hypervisor", "stockholm"),
        ("8.2.1", "Citrix Hypervisor", "stockholm"),
        ("8.2.1", "XCP-ng", "stockholm"),
        ("8.3.0", "XCP-ng", "xcp-ng-8.3"),
        ("8.4.0", "XenServer", "nile"),
    ],
)
def test_profile_for_line(pv, brand, want):
    assert playback_hw.profile_for_line(pv, brand).name == want


@pytest.mark.parametrize(
    "pv,cap,exact,want,verbatim",
    [
        ("7.0.0", "dundee", False, "7.0.0", True),
        ("6.5.0", "dundee", False, "6.5.0", True),
        ("6.0.50", "cream", False, "6.5.0", False),
        ("8.2.0", "dundee", False, "7.0.0", False),
        ("7.0.0", "cream", False, "6.5.0", False),
        ("6.5.0", "dundee", True, "7.0.0", False),
        ("", "cream", False, "6.5.0", False),
    ],
)
def test_product_for(pv, cap, exact, want, verbatim):
    sv = {"product_version": pv, "build_number": "x1"} if pv else {}
    p, note = playback.product_for(sv, cap, exact=exact)
    assert p.version == want and (note is None) == verbatim
    assert (p.software_version_map("") == sv) == verbatim


# -- rolling upgrades -------------------------------------------------------------------------


def test_a_pool_caught_mid_upgrade_stays_mid_upgrade(tmp_path):
    """A 7.0 master with a 6.5 SP1 member: the member keeps running 6.5 (its recorded
    software_version and v1 cpu_info), and the pool is in rolling-upgrade mode."""
    text = (DATA / "dundee-2hosts.xml").read_text()
    member_sv = (
        "(('product_version' '6.5.0') ('product_version_text' '6.5') "
        "('platform_version' '1.9.0') ('build_number' '90233c') ('xapi' '1.9'))"
    )
    member_cpu = (
        "(('cpu_count' '4') ('socket_count' '1') ('vendor' 'GenuineIntel') "
        "('speed' '3292.520') ('modelname' 'Intel(R) Xeon(R) CPU E3-1230 V2 @ "
        "3.30GHz') ('family' '6') ('model' '58') ('stepping' '9') ('flags' 'fpu') "
        "('features' '7fbae3ff-bfebfbff-00000001-28100800') "
        "('features_after_reboot' '7fbae3ff-bfebfbff-00000001-28100800') "
        "('physical_features' '7fbae3ff-bfebfbff-00000001-28100800') "
        "('maskable' 'full'))"
    )
    head, _, tail = text.partition('<row ref="OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e02"')
    row, end, rest = tail.partition("/>")
    row = row.replace(
        row[row.index(' cpu_info="') : row.index('" edition=') + 1], f' cpu_info="{member_cpu}"'
    )
    row = (
        row[: row.index(' software_version="')]
        + f' software_version="{member_sv}"'
        + row[row.index('" uuid=') + 1 :]
    )
    p = tmp_path / "mid-rpu.xml"
    p.write_text(
        head + '<row ref="OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e02"' + row + end + rest
    )
    with served_file(p) as world:
        x = session(world).xenapi
        assert x.pool.get_other_config(x.pool.get_all()[0])["rolling_upgrade_in_progress"] == "true"
        member = "OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e02"
        assert x.host.get_software_version(member) == recorded_map(member_sv)
        assert x.host.get_cpu_info(member) == recorded_map(member_cpu)
        assert world.host(member).product.release == "cream"


@contextlib.contextmanager
def served_file(p):
    world = World(seed=0, auth_failure_delay=0.0)
    playback.load(world, str(p))
    sim = Simulator(world, port=0).start()
    try:
        yield world
    finally:
        sim.stop()


def test_rolling_upgrade_of_the_tampa_pool():
    """docs/playback.md's walk-through: the Tampa pool (run as 6.5 SP1) upgraded host by host
    to 7.0, its VMs moved forward and restarted."""
    with served("tampa-2hosts.xml") as (world, _):
        p = world.pools[0]
        s = session(world)
        x = s.xenapi
        hosts = {x.host.get_name_label(h): h for h in x.host.get_all()}
        vms = {r["name_label"]: ref for ref, r in x.VM.get_all_records().items()}
        master, member = hosts["dt16"], hosts["dt23"]
        old = "0098e3fd-bfebfbff-00000001-28100800"
        assert {
            x.VM.get_last_boot_CPU_flags(vms[n])["features"]
            for n in ("16local", "16shared", "23local", "23shared")
        } == {old}
        # 1. the master first: its local VM stops, the rest moves to the member
        x.host.disable(master)
        x.VM.clean_shutdown(vms["16local"])
        x.host.evacuate(master)
        s.xenapi_request("sim.host_install", (master, "7.0.0"))
        s = session(world)
        x = s.xenapi
        assert x.pool.get_other_config(p.ref)["rolling_upgrade_in_progress"] == "true"
        info = x.host.get_cpu_info(master)
        assert (info["modelname"], info["speed"], info["features"]) == (
            "Intel(R) Xeon(R) CPU           X3450  @ 2.67GHz",
            "2660.026",
            old,
        )
        assert "maskable" not in info and "features_hvm" in info
        # 2. VMs move forward only
        for n in ("23shared", "16shared"):
            x.VM.pool_migrate(vms[n], master, {})
            assert len(x.VM.get_last_boot_CPU_flags(vms[n])["features"].split("-")) > 4
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.pool_migrate(vms["23shared"], member, {})
        assert e.value.details[0] == "NOT_SUPPORTED_DURING_UPGRADE"
        # 3. then the member
        x.host.disable(member)
        x.VM.clean_shutdown(vms["23local"])
        x.host.evacuate(member)
        s.xenapi_request("sim.host_install", (member, "7.0.0"))
        assert "rolling_upgrade_in_progress" not in x.pool.get_other_config(p.ref)
        assert {x.host.get_software_version(h)["product_version"] for h in (master, member)} == {
            "7.0.0"
        }
        # 4. restarted VMs boot with the pool level
        level = x.pool.get_cpu_info(p.ref)["features_pv"]
        for n in ("16local", "23local"):
            x.VM.start(vms[n], False, False)
            assert x.VM.get_last_boot_CPU_flags(vms[n])["features"] == level
        assert x.message.get_all() == []


# -- liberal reading: whatever a file holds, a pool or one line ------------------------------

BASE = raw("dundee-2hosts.xml")


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_damaged_files_load_or_are_refused_with_one_line(data, tmp_path_factory):
    """Columns dropped, values replaced by junk, rows dropped: the loader either makes a
    pool (reporting what it could not map) or refuses the file with one line -- never
    anything else."""
    tables = []
    for name, rows in BASE.tables.items():
        out = []
        for r in rows:
            if data.draw(st.integers(0, 9), label="drop row") == 0:
                continue
            cols = {}
            for col, val in r.columns.items():
                action = data.draw(st.integers(0, 4), label=f"{name}.{col}")
                if action == 0:
                    continue
                if action == 1:
                    val = data.draw(
                        st.text(max_size=12)
                        | st.sampled_from(
                            [
                                "()",
                                "(('a'",
                                "-1",
                                "99999999999999999999",
                                "true",
                                "nan",
                                "OpaqueRef:NULL",
                                "(('cpu_count' '100000'))",
                            ]
                        ),
                        label="junk",
                    )
                cols[col] = val
            out.append((r.ref, r.ctime, r.mtime, cols))
        tables.append(dbxml.TableOut(name, out))
    p = tmp_path_factory.mktemp("damaged") / "db.xml"
    p.write_text("".join(dbxml.write((5, 93), 10, tables)), encoding="utf-8")
    world = World(seed=0)
    try:
        report = playback.load(world, str(p))
    except playback.PlaybackError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e)
        assert "cannot be loaded" not in str(e)  # an exception the loader missed
        return
    db = world.pools[0].db
    assert db.check_relations() == []
    assert all(h.state == "up" for h in world.hosts.values())
    assert report.pool_ref in db.tables["pool"]
    "".join(playback_dump.dump(world.pools[0]))


def test_dangling_references_cleared_as_a_master_start_does(tmp_path):
    """Rows pointing at rows the file lacks: Dbsync_master and one Db_gc pass."""
    f = raw("dundee-2hosts.xml")
    gone_vm = "OpaqueRef:8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c12"  # db, on xs70-b
    tables = []
    for name, rows in f.tables.items():
        out = []
        for r in rows:
            cols = dict(r.columns)
            if r.ref == gone_vm:
                continue
            if r.ref.endswith("3c11"):  # web: resident on a vanished host
                cols["resident_on"] = "OpaqueRef:gone-host"
            if name == "VM" and r.ref.endswith("3c02"):  # xs70-b's dom0 too
                cols["resident_on"] = "OpaqueRef:gone-host"
            if name == "VM" and r.ref.endswith("3c13"):  # build: its metrics row missing
                cols["metrics"] = "OpaqueRef:no-metrics"
            out.append((r.ref, r.ctime, r.mtime, cols))
        tables.append(dbxml.TableOut(name, out))
    p = tmp_path / "dangling.xml"
    p.write_text("".join(dbxml.write((5, 93), 4242, tables)))
    world = World(seed=0)
    report = playback.load(world, str(p))
    db = world.pools[0].db
    lines = report.unmapped_lines()
    assert (
        "VBD.*: deleted by xapi's database GC (gc_VBDs: its VM or VDI does not exist) "
        "(1 row)" in lines
    )
    assert any(line.startswith("VM.*: control domain of a host not in the pool") for line in lines)
    web = db.get("VM", "OpaqueRef:8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c11")
    assert (web["power_state"], web["resident_on"], web["domid"]) == (
        "Halted",
        "OpaqueRef:NULL",
        -1,
    )
    assert not db.exists("VM", "OpaqueRef:8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c02")
    build = db.get("VM", "OpaqueRef:8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c13")
    assert db.exists("VM_metrics", build["metrics"])
    assert db.check_relations() == []


@pytest.mark.parametrize(
    "profile", [p for p in sorted(playback_hw.MODELLED.values()) if p != "6.5.0"]
)
def test_a_pool_of_every_release_dumps_and_plays_back_as_itself(profile, tmp_path):
    """Every release profile from 7.0 on (6.5 SP1: the Tampa sample's round trip): a pool of
    the built-in world running it, dumped as xapi writes its database, loads back as the
    same release with the same rows (host_cpu rows are made anew at each xapi start, as
    xapi's are), and dumps to the same rows again."""
    from xapi_sim import scenario
    from xapi_sim.cli import with_release

    scn = with_release(scenario.default(), profile)
    w1 = scenario.build(scn, seed=4, auth_failure_delay=0.0)
    pool = w1.pools[0]
    d1 = "".join(playback_dump.dump(pool))
    major, minor = playback_dump.schema_version(pool)
    assert f'"schema_minor_vsn" value="{minor}"' in d1
    p = tmp_path / "dump.xml"
    p.write_text(d1, encoding="utf-8")
    w2 = World(seed=4, auth_failure_delay=0.0)
    (r2,) = [playback.load(w2, str(p))]
    assert r2.release == pool.db.schema.release
    assert {u.reason for u in r2.unmapped} <= {playback.NOT_IN_API}
    assert {h.product.profile for h in w2.hosts.values()} == {pool.master.product.profile}
    again = rows_of("".join(playback_dump.dump(w2.pools[0])))
    first = rows_of(d1)

    def kinds(rows):
        return {k for k in rows if k[0] != "host_cpu"}

    assert kinds(again) == kinds(first)
    assert len(again) == len(first)
