"""XenCenter's "Server Status Report": ``host.get_system_status_capabilities`` and ``GET
/system-status`` (``classes/system_status.py``, ``handlers/system_status.py``)."""

from __future__ import annotations

import base64
import bz2
import hashlib
import http.client
import io
import tarfile
import threading
import zipfile
from xml.dom import minidom

import pytest
from session_kit import failure, logged_in
from xe_kit import xe_runner

from xapi_sim.classes import system_status as ss


@pytest.fixture(scope="module")
def env():
    with logged_in() as (rw, s):
        yield rw, s


def get(host, target, headers=None):
    """A GET as XenCenter's ``HTTP.Get`` sends it: (status, headers, body, status line)."""
    c = http.client.HTTPConnection(host.address_for_url, host.port, timeout=30)
    try:
        c.request("GET", target, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(), r.version
    finally:
        c.close()


def parse_caps(xml: str) -> dict:
    """``BugToolPageSelectCapabilities.ParseXmlToList``: every ``capability`` element's
    attributes by name."""
    doc = minidom.parseString(xml)
    return {
        el.getAttribute("key"): dict(el.attributes.items())
        for el in doc.getElementsByTagName("capability")
    }


def test_capabilities_as_xencenter_reads_them(env):
    rw, s = env
    host = s.xenapi.host.get_by_name_label("xs2")[0]
    xml = s.xenapi.host.get_system_status_capabilities(host)
    assert xml.startswith('<?xml version="1.0" ?>\n<system-status-capabilities>\n\t<capability ')
    assert xml.endswith("</system-status-capabilities>\n\n")
    caps = parse_caps(xml)
    # Dundee's table (status-report at 2016-07) plus xapi's plugins; hidden keys absent
    assert {"xenserver-databases", "fcoe", "CVSM", "vncterm", "xapi", "xenopsd"} <= set(caps)
    assert not {"hdparm-t", "xenrt", "persistent-stats", "vtpm"} & set(caps)
    blobs = caps["blobs"]
    assert blobs == {
        "key": "blobs",
        "pii": "no",
        "min-size": "-1",
        "max-size": str(5 * 1024 * 1024),
        "min-time": "-1",
        "max-time": "-1",
        "content-type": "text/plain",
        "default-checked": "yes",
    }
    assert caps["vncterm"]["default-checked"] == "no"
    # Python 2's minidom: attributes sorted by name
    line = next(ln for ln in xml.split("\n") if 'key="blobs"' in ln)
    assert line.strip().startswith('<capability content-type="text/plain" default-checked="yes"')
    # update_capabilities: sizes by the host's devices
    pifs = sum(
        1
        for p in s.xenapi.host.get_PIFs(host)
        if s.xenapi.PIF.get_physical(p) and s.xenapi.PIF.get_device(p).startswith("eth")
    )
    assert pifs > 0
    net = caps["network-config"]
    assert net["min-size"] == net["max-size"] == str(100 * 1024 * pifs + 10 * 1024 * 1024)
    assert caps["fcoe"]["max-time"] == str(10 * pifs)


def test_capabilities_forwarded_host_offline(env):
    rw, s = env
    xs3 = s.xenapi.host.get_by_name_label("xs3")[0]
    bad = failure(s.xenapi.host.get_system_status_capabilities, "OpaqueRef:nope")
    assert bad[0] == "HANDLE_INVALID"
    s.xenapi.sim.host_crash(xs3)
    assert failure(s.xenapi.host.get_system_status_capabilities, xs3) == ["HOST_OFFLINE", xs3]


def test_release_tables_differ():
    t = ss.TABLES
    assert "vtpm" in {c["key"] for c in t["nile"]["caps"]}
    assert "vtpm" not in {c["key"] for c in t["dundee"]["caps"]}
    assert "fcoe" not in {c["key"] for c in t["cream"]["caps"]}
    assert "observer" in {p["key"] for p in t["xcp-ng-8.3"]["plugins"]}


def _task(s, name="get_system_status_task"):
    return s.xenapi.task.create(name, "xs1")


def test_tar_download_as_xencenter(env):
    rw, s = env
    m = rw.world.pools[0].master
    task = _task(s)
    entries = "xenserver-databases,xenserver-logs,nonsense"
    target = f"/system-status?task_id={task}&session_id={s._session}&entries={entries}&output=tar"
    status, headers, body, version = get(m, target)
    assert status == 200 and version == 10
    assert headers["content-type"] == "application/data"
    assert headers["content-disposition"] == 'attachment; filename="system_status.tgz"'
    assert "content-length" not in headers and headers["connection"] == "close"
    assert len(body) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tf:
        names = tf.getnames()
        subdir = names[0].split("/")[0]
        assert subdir.startswith("bug-report-") and len(subdir) == len("bug-report-") + 14
        assert names == [
            f"{subdir}/xapi-db.xml",
            f"{subdir}/xapi-db-dumped.xml",
            f"{subdir}/inventory.xml",
        ]
        db = tf.extractfile(names[0]).read()
        inv = minidom.parseString(tf.extractfile(names[2]).read())
        assert tf.getmember(names[0]).uname == "root"
    assert b"<database>" in db and b'<table name="host"' in db
    entries_ = inv.getElementsByTagName("inventory-entry")
    assert [(e.getAttribute("capability"), e.getAttribute("filename")) for e in entries_] == [
        ("xenserver-databases", f"{subdir}/xapi-db.xml"),
        ("xenserver-databases", f"{subdir}/xapi-db-dumped.xml"),
    ]
    assert entries_[0].getAttribute("md5sum") == hashlib.md5(db).hexdigest()
    summary = inv.getElementsByTagName("system-summary")[0]
    assert summary.getAttribute("hostname") == s.xenapi.host.get_hostname(
        s.xenapi.host.get_by_name_label("xs1")[0]
    )
    assert s.xenapi.task.get_status(task) == "success"
    assert s.xenapi.task.get_progress(task) == 1.0


def test_secrets_filtered():
    text = (
        '<table name="secret"><row ref="OpaqueRef:a" uuid="u" value="hunter2"/></table>'
        '<table name="x"><row value="kept"/></table>'
    )
    out = ss.filter_db_pii(text)
    assert 'value="REMOVED"' in out and 'value="kept"' in out and "hunter2" not in out


def test_bz2_and_zip_with_basic_auth(env):
    rw, s = env
    m = rw.world.pools[0].master
    auth = {"Authorization": "Basic " + base64.b64encode(b"root:xenroot").decode()}
    status, headers, body, _ = get(
        m, "/system-status?entries=xenserver-databases&output=tar.bz2", auth
    )
    assert status == 200 and int(headers["content-length"]) == len(body)
    with tarfile.open(fileobj=io.BytesIO(bz2.decompress(body))) as tf:
        assert tf.getnames()[-1].endswith("/inventory.xml")
    status, headers, body, _ = get(m, "/system-status?entries=xenserver-databases&output=zip", auth)
    assert status == 200
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert names[0].endswith("/xapi-db.xml") and names[-1].endswith("/inventory.xml")


def test_errors(env):
    rw, s = env
    m = rw.world.pools[0].master
    status, headers, _, _ = get(m, "/system-status?output=tar")
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="get_system_status"'
    task = _task(s)
    status, _, body, _ = get(m, f"/system-status?session_id={s._session}&task_id={task}&output=rar")
    assert status == 500 and b"SYSTEM_STATUS_RETRIEVAL_FAILED" in body
    info = s.xenapi.task.get_error_info(task)
    assert info[0] == "SYSTEM_STATUS_RETRIEVAL_FAILED"
    assert info[1].startswith("xen-bugtool failed: INTERNAL_ERROR: [ Subprocess exited")
    assert "Invalid output format 'rar'" in info[1]
    task = _task(s)
    status, _, _, _ = get(m, f"/system-status?session_id={s._session}&task_id={task}")
    assert status == 500
    assert "Invalid output format ''" in s.xenapi.task.get_error_info(task)[1]


def test_many_concurrent_downloads(env):
    rw, s = env
    m = rw.world.pools[0].master
    target = f"/system-status?session_id={s._session}&entries=xenserver-databases&output=tar"
    results: list[int] = []

    def one():
        status, _, body, _ = get(m, target)
        with tarfile.open(fileobj=io.BytesIO(body)) as tf:
            results.append(status if len(tf.getnames()) == 3 else -1)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 8


def test_xe_system_status(tmp_path):
    with logged_in() as (w, s):
        xe = xe_runner(w.host("xs1"), tmp_path)

        r = xe("host-get-system-status-capabilities", "host=xs2")
        assert r.returncode == 0, r.stderr
        assert "<system-status-capabilities>" in r.stdout
        out = tmp_path / "report.tar"
        r = xe(
            "host-get-system-status",
            "host=xs2",
            f"filename={out}",
            "entries=xenserver-databases",
            "output=tar",
        )
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        with tarfile.open(out) as t:
            names = t.getnames()
        assert any(n.endswith("/xapi-db.xml") for n in names)
        assert any(n.endswith("/inventory.xml") for n in names)
        r = xe("host-get-system-status", "host=xs2", f"filename={out}2", "output=rar")
        assert r.returncode == 1
        assert "Invalid output format. Must be 'tar', 'zip' or 'tar.bz2'" in r.stderr + r.stdout
        assert "Error: Invalid output format" in r.stderr  # a Cli_failure, not INTERNAL_ERROR
