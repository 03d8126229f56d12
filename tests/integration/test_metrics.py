"""Metrics over the wire: ``/rrd_updates``, ``/host_rrd``, ``/vm_rrd``, ``/sr_rrd`` (xen-api
Dundee ``rrdd_proxy.ml``, xcp-rrdd v0.12.1 ``rrdd_http_handler.ml``, xcp-rrd v1.0.0) and the
data-source messages of VM, host and SR through the ``XenAPI`` package; Xen Orchestra's
reading of ``/rrd_updates`` through Node (``tests/node/xo-stats.mjs``)."""

from __future__ import annotations

import base64
import http.client
import json
import math
import pathlib
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import XenAPI

from xapi_sim.testing import running_world

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"
SCENARIO = """
[[host]]
name_label = "solo"
cpu = "EPYC-Rome"
sockets = 1
cpus_per_socket = 8
memory = "64GiB"

[[vm]]
name_label = "web"
power_state = "Running"
host = "solo"
vcpus = 3
memory = "2GiB"

[[vm]]
name_label = "db"
power_state = "Halted"
host = "solo"
vcpus = 2
memory = "1GiB"
"""


def get(host, target, headers=None):
    c = http.client.HTTPConnection(host.address_for_url, host.port, timeout=60)
    try:
        c.request("GET", target, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def xport(body: bytes):
    """(meta dict, legend, rows [(t, [floats])]) of an ``<xport>`` document."""
    root = ET.fromstring(body)
    meta = root.find("meta")
    info = {k: int(meta.findtext(k)) for k in ("start", "step", "end", "rows", "columns")}
    legend = [e.text for e in meta.find("legend")]
    rows = [
        (int(r.findtext("t")), [float(v.text) for v in r.findall("v")]) for r in root.find("data")
    ]
    return info, legend, rows


@pytest.fixture(scope="module")
def world():
    with running_world(SCENARIO, seed=11) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        x = s.xenapi
        web = x.VM.get_by_name_label("web")[0]
        # the halted VM gets a VIF and a disk, then starts: its series follow
        db = x.VM.get_by_name_label("db")[0]
        net = x.PIF.get_network(x.PIF.get_all()[0])
        x.VIF.create(
            {
                "VM": db,
                "network": net,
                "device": "0",
                "MAC": "",
                "MTU": "1500",
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
        sr = x.pool.get_default_SR(x.pool.get_all()[0])
        vdi = x.VDI.create(
            {
                "name_label": "db-disk",
                "name_description": "",
                "SR": sr,
                "virtual_size": str(1 << 30),
                "type": "user",
                "sharable": False,
                "read_only": False,
                "other_config": {},
            }
        )
        x.VBD.create(
            {
                "VM": db,
                "VDI": vdi,
                "userdevice": "0",
                "bootable": True,
                "mode": "RW",
                "type": "Disk",
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
        halted = x.VM.clone(db, "halted")  # stays halted
        x.VM.start(db, False, False)
        yield w, s, {"web": web, "db": db, "halted": halted, "sr": sr}
        s.xenapi.session.logout()


def _sid(s):
    return s._session


def test_rrd_updates_reflect_what_runs(world):
    w, s, refs = world
    x = s.xenapi
    host = w.host("solo")
    now = int(time.time())
    status, headers, body = get(
        host, f"/rrd_updates?session_id={_sid(s)}&start={now - 600}&host=true"
    )
    assert status == 200
    assert headers["content-type"] == "text/xml"
    assert headers["access-control-allow-origin"] == "*"
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta>')
    info, legend, rows = xport(body)
    assert info["step"] == 5 and info["rows"] == len(rows) and info["columns"] == len(legend)
    assert all(len(vals) == len(legend) for _, vals in rows)
    host_uuid = x.host.get_uuid(host.ref)
    by = {e: i for i, e in enumerate(legend)}
    web = x.VM.get_uuid(refs["web"])
    db = x.VM.get_uuid(refs["db"])
    halted = x.VM.get_uuid(refs["halted"])
    # a VM's vCPU sources follow VCPUs_at_startup; a halted VM has none
    assert {e for e in legend if e.startswith(f"AVERAGE:vm:{web}:cpu")} == {
        f"AVERAGE:vm:{web}:cpu{i}" for i in range(3)
    }
    assert not [e for e in legend if halted in e]
    # the started VM's VIF and disk, and the SR's I/O on the host
    assert f"AVERAGE:vm:{db}:vif_0_rx" in by
    assert any(e.startswith(f"AVERAGE:vm:{db}:vbd_") and e.endswith("_read") for e in legend)
    sr_uuid = x.SR.get_uuid(refs["sr"])
    assert f"AVERAGE:host:{host_uuid}:io_throughput_read_{sr_uuid[:8]}" in by
    # the host's memory is its accounting
    metrics = x.host_metrics.get_record(x.host.get_metrics(host.ref))
    newest = rows[0][1]
    assert (
        newest[by[f"AVERAGE:host:{host_uuid}:memory_free_kib"]]
        == int(x.host.compute_free_memory(host.ref)) // 1024
    )
    assert (
        newest[by[f"AVERAGE:host:{host_uuid}:memory_total_kib"]]
        == int(metrics["memory_total"]) // 1024
    )
    assert newest[by[f"AVERAGE:vm:{web}:memory_target"]] == int(x.VM.get_memory_target(refs["web"]))
    for _, vals in rows:
        for e, i in by.items():
            if e.endswith(":cpu0") or e.endswith(":cpu_avg"):
                assert 0.0 <= vals[i] <= 1.0


@pytest.mark.parametrize(
    "back,interval,step",
    [(600, 0, 5), (600, 60, 60), (7200, 0, 60), (7 * 86400, 0, 3600), (300 * 86400, 0, 86400)],
)
def test_the_step_follows_start_and_interval(world, back, interval, step):
    w, s, _ = world
    now = int(time.time())
    q = f"session_id={_sid(s)}&start={now - back + 1}&interval={interval}&host=true&cf=AVERAGE"
    status, _, body = get(w.host("solo"), f"/rrd_updates?{q}")
    assert status == 200
    info, _, rows = xport(body)
    assert info["step"] == step
    assert all(t % step == 0 for t, _ in rows)
    assert info["end"] == rows[0][0]


def test_negative_start_is_relative_and_cfs(world):
    w, s, _ = world
    host = w.host("solo")
    status, _, body = get(host, f"/rrd_updates?session_id={_sid(s)}&start=-300&host=true")
    info, legend, rows = xport(body)
    assert status == 200 and info["step"] == 5 and 59 <= len(rows) <= 61
    # the host keeps MIN and MAX; VMs AVERAGE only, so asking MIN fails while VMs run
    status, _, _ = get(host, f"/rrd_updates?session_id={_sid(s)}&start=-7200&host=true&cf=MIN")
    assert status == 500
    q = f"session_id={_sid(s)}&start=-7200&host=true&vm_uuid=none&cf=MIN"
    status, _, body = get(host, f"/rrd_updates?{q}")
    _, legend, _ = xport(body)
    assert status == 200 and legend and all(e.startswith("MIN:host:") for e in legend)
    q = f"session_id={_sid(s)}&start=-7200&host=true&vm_uuid=none&cf=nonsense"
    _, legend, rows = xport(get(host, f"/rrd_updates?{q}")[2])
    assert {e.split(":")[0] for e in legend} == {"AVERAGE", "MIN", "MAX"}
    n = len(legend) // 3
    for _, vals in rows:
        for i in range(n):
            assert vals[n + i] <= vals[i] <= vals[2 * n + i]


def test_credentials_and_bad_requests(world):
    w, s, _ = world
    host = w.host("solo")
    status, headers, _ = get(host, "/rrd_updates?start=0")
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="Get RRD updates."'
    assert get(host, "/rrd_updates?session_id=OpaqueRef:nope&start=0")[0] == 401
    basic = "Basic " + base64.b64encode(b"root:xenroot").decode()
    assert get(host, "/rrd_updates?start=-60", {"Authorization": basic})[0] == 200
    assert get(host, f"/rrd_updates?session_id={_sid(s)}")[0] == 400
    assert get(host, f"/rrd_updates?session_id={_sid(s)}&start=soon")[0] == 500
    assert get(host, "/host_rrd")[0] == 401
    assert get(host, f"/sr_rrd?session_id={_sid(s)}")[0] == 400
    assert get(host, f"/sr_rrd?session_id={_sid(s)}&uuid=x")[0] == 500


def test_host_rrd_dump(world):
    w, s, _ = world
    x = s.xenapi
    host = w.host("solo")
    status, headers, body = get(host, f"/host_rrd?session_id={_sid(s)}")
    assert status == 200 and headers["connection"] == "close"
    root = ET.fromstring(body)
    assert root.findtext("version") == "0003" and root.findtext("step") == "5"
    names = [d.findtext("name") for d in root.findall("ds")]
    enabled = [d["name_label"] for d in x.host.get_data_sources(host.ref) if d["enabled"]]
    assert names == enabled
    rras = root.findall("rra")
    assert [(r.findtext("cf"), r.findtext("pdp_per_row"), len(r.find("database"))) for r in rras][
        :4
    ] == [
        ("AVERAGE", "1", 120),
        ("AVERAGE", "12", 120),
        ("MIN", "12", 120),
        ("MAX", "12", 120),
    ]
    status, _, body = get(host, f"/host_rrd?session_id={_sid(s)}&json=true")
    assert status == 200 and body.startswith(b'{version: "0003",step:5,lastupdate:')


def test_vm_rrd_where_the_vm_is(world):
    w, s, refs = world
    x = s.xenapi
    host = w.host("solo")
    web = x.VM.get_uuid(refs["web"])
    # rrdd holds it: served before any credential check, as xapi hands the socket over
    status, _, body = get(host, f"/vm_rrd?uuid={web}")
    assert status == 200
    assert [d.findtext("name") for d in ET.fromstring(body).findall("ds")][:3] == [
        "cpu0",
        "cpu1",
        "cpu2",
    ]
    halted = x.VM.get_uuid(refs["halted"])
    assert get(host, f"/vm_rrd?uuid={halted}")[0] == 401
    status, headers, _ = get(host, f"/vm_rrd?session_id={_sid(s)}&uuid={halted}")
    assert status == 302
    assert "rrd_unarchive=" in headers["location"] and f"uuid={halted}" in headers["location"]
    assert get(host, f"/vm_rrd?session_id={_sid(s)}&uuid={halted}&rrd_unarchive=")[0] == 500
    assert get(host, f"/vm_rrd?session_id={_sid(s)}")[0] == 500


def _failure(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def test_vm_data_source_messages(world):
    w, s, refs = world
    x = s.xenapi
    web = refs["web"]
    dss = x.VM.get_data_sources(web)
    assert set(dss[0]) == {
        "name_label",
        "name_description",
        "enabled",
        "standard",
        "units",
        "min",
        "max",
        "value",
    }
    by = {d["name_label"]: d for d in dss}
    assert by["cpu0"]["enabled"] and by["cpu0"]["standard"] and by["cpu0"]["units"] == "(fraction)"
    assert by["cpu0"]["min"] == 0.0 and by["cpu0"]["max"] == 1.0
    assert by["memory"]["max"] == math.inf
    assert not by["runstate_blocked"]["enabled"] and not by["runstate_blocked"]["standard"]
    assert 0.0 <= float(x.VM.query_data_source(web, "cpu0")) <= 1.0
    assert float(x.VM.query_data_source(web, "memory_target")) == float(x.VM.get_memory_target(web))
    invalid = [
        "INTERNAL_ERROR",
        'Rrd_interface.Internal_error("Rrd.Invalid_data_source(\\"runstate_blocked\\")")',
    ]
    assert _failure(x.VM.query_data_source, web, "runstate_blocked") == invalid
    assert _failure(x.VM.forget_data_source_archives, web, "runstate_blocked") == invalid
    not_found = ["INTERNAL_ERROR", 'Rrd_interface.Internal_error("Not_found")']
    assert _failure(x.VM.record_data_source, web, "no_such_source") == not_found
    # recording enables it, with no history yet; points arrive with the next updates
    x.VM.record_data_source(web, "runstate_blocked")
    assert {d["name_label"]: d["enabled"] for d in x.VM.get_data_sources(web)}["runstate_blocked"]
    assert math.isnan(float(x.VM.query_data_source(web, "runstate_blocked")))
    w.world.clock.advance(15)
    try:
        assert 0.0 <= float(x.VM.query_data_source(web, "runstate_blocked")) <= 1.0
    finally:
        w.world.clock.advance(-15)
    x.VM.forget_data_source_archives(web, "runstate_blocked")
    assert _failure(x.VM.query_data_source, web, "runstate_blocked") == invalid
    # a halted VM: its operation check, or rrdd holding no RRD for it
    halted = refs["halted"]
    assert _failure(x.VM.get_data_sources, halted)[0] == "VM_BAD_POWER_STATE"
    assert _failure(x.VM.query_data_source, halted, "cpu0") == not_found


def test_host_and_sr_data_source_messages(world):
    w, s, refs = world
    x = s.xenapi
    host = w.host("solo").ref
    names = {d["name_label"]: d for d in x.host.get_data_sources(host)}
    assert {"cpu_avg", "cpu0", "cpu7", "memory_free_kib", "loadavg", "pif_eth0_rx"} <= set(names)
    assert not names["pif_eth0_rx_errors"]["enabled"]
    free = int(x.host.compute_free_memory(host)) // 1024
    assert float(x.host.query_data_source(host, "memory_free_kib")) == free
    x.host.record_data_source(host, "pif_eth0_rx_errors")
    assert {d["name_label"]: d["enabled"] for d in x.host.get_data_sources(host)}[
        "pif_eth0_rx_errors"
    ]
    x.host.forget_data_source_archives(host, "pif_eth0_rx_errors")
    not_found = ["INTERNAL_ERROR", 'Rrd_interface.Internal_error("Not_found")']
    assert x.SR.get_data_sources(refs["sr"]) == []
    assert _failure(x.SR.query_data_source, refs["sr"], "size") == not_found
    assert _failure(x.SR.record_data_source, refs["sr"], "size") == not_found


FIXED = 1_800_000_003.0


def _updates(seed):
    with running_world(SCENARIO, seed=seed) as w:
        w.world.clock.set_source(lambda: FIXED)
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        q = f"session_id={_sid(s)}&start={int(FIXED) - 3600}&host=true"
        out = [get(w.host("solo"), f"/rrd_updates?{q}{j}")[2] for j in ("", "&json=true")]
        out.append(repr(s.xenapi.host.query_data_source(w.host("solo").ref, "cpu_avg")).encode())
        return out


def test_series_are_deterministic_under_a_seed():
    a, b, c = _updates(5), _updates(5), _updates(6)
    assert a == b
    assert a[0] != c[0]


def test_xen_orchestra_reads_rrd_updates(world):
    """xo-server's ``XapiStats`` flow (``tests/node/xo-stats.mjs``): JSON.parse fails on
    xapi's unquoted keys, JSON5 parses, the step is the granularity's, the legend names
    parse with its regexp, and the values are the ones the API gives."""
    w, s, refs = world
    node = shutil.which("node")
    assert node is not None, "node is required (Node >= 18)"
    assert (NODE_DIR / "node_modules" / "json5" / "package.json").exists(), (
        "run `npm ci --prefix tests/node`"
    )
    x = s.xenapi
    for granularity, step in (("seconds", 5), ("minutes", 60), ("hours", 3600)):
        r = subprocess.run(
            [node, "xo-stats.mjs", w.master_url(), granularity],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        out = [json.loads(line) for line in r.stdout.splitlines()]
        hosts = [o for o in out if o["type"] == "host"]
        vms = {o["uuid"]: o for o in out if o["type"] == "vm"}
        assert len(hosts) == 1 and all(o["step"] == step and not o["strict"] for o in out)
        h = hosts[0]["stats"]
        free = int(x.host.compute_free_memory(w.host("solo").ref))
        assert h["memoryFree"][-1] == free
        assert len(h["cpus"]) == 8 and all(0 <= v <= 100 for v in h["cpus"]["0"] if v is not None)
        web = vms[x.VM.get_uuid(refs["web"])]["stats"]
        assert sorted(web["cpus"]) == ["0", "1", "2"]
        assert web["memoryTarget"][-1] == int(x.VM.get_memory_target(refs["web"]))
        assert "0" in vms[x.VM.get_uuid(refs["db"])]["stats"]["vifs"]["rx"]
