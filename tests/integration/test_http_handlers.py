"""The rules every non-RPC HTTP handler shares (``wire/routes.py``), streaming in both
directions, and raw disks (``/import_raw_vdi``, ``/export_raw_vdi``; ``vdi_store.py``)."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import time

import pytest
from disk_kit import local_sr, new_vdi, request
from session_kit import logged_in

from xapi_sim import vhd
from xapi_sim.vdi_store import VdiStore
from xapi_sim.wire import routes

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def env():
    with logged_in() as (rw, s):
        yield rw, s


def master(rw):
    return rw.world.pools[0].master


# -- the shared rules -------------------------------------------------------------------------


def test_credentials_session_cookie_basic_and_401(env):
    rw, s = env
    m = master(rw)
    vdi = new_vdi(s, local_sr(s, "xs1"))
    target = f"/export_raw_vdi?vdi={vdi}"
    status, headers, _ = request(m, "GET", target)
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="VDI.export_raw"'
    assert request(m, "GET", target + "&session_id=OpaqueRef:nope")[0] == 401
    assert request(m, "GET", target, headers={"Cookie": f"session_id={s._session}"})[0] == 200
    auth = "Basic " + base64.b64encode(b"root:xenroot").decode()
    assert request(m, "GET", target, headers={"Authorization": auth})[0] == 200
    bad = "Basic " + base64.b64encode(b"root:wrong").decode()
    assert request(m, "GET", target, headers={"Authorization": bad})[0] == 401
    status, _, body = request(m, "GET", target, headers={"Authorization": "Bearer x"})
    assert status == 500 and b"Unknown authorization header" in body
    assert request(m, "GET", f"/export_raw_vdi?vdi=nope&session_id={s._session}")[0] == 500


def test_task_id_gets_progress_and_success_and_own_tasks_go(env):
    rw, s = env
    m = master(rw)
    vdi = new_vdi(s, local_sr(s, "xs1"))
    task = s.xenapi.task.create("upload", "")
    before = set(s.xenapi.task.get_all())
    status, headers, _ = request(
        m, "PUT", f"/import_raw_vdi?session_id={s._session}&vdi={vdi}&task_id={task}", b"x" * 1000
    )
    assert status == 200 and headers["task-id"] == task
    assert s.xenapi.task.get_status(task) == "success"
    assert s.xenapi.task.get_progress(task) == 1.0
    # without a task_id, the handler's own task is gone afterwards -- once the handler has
    # ended: its 200 goes out before the body is read (as xapi's), so the client may be
    # back before the handler's last step
    request(m, "PUT", f"/import_raw_vdi?session_id={s._session}&vdi={vdi}", b"y")
    deadline = time.monotonic() + 5
    while set(s.xenapi.task.get_all()) != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(s.xenapi.task.get_all()) == before
    # a failure fails the forwarded task with the error
    task = s.xenapi.task.create("bad", "")
    status, _, _ = request(
        m, "GET", f"/export_raw_vdi?session_id={s._session}&vdi={vdi}&format=qcow&task_id={task}"
    )
    assert status == 404
    assert s.xenapi.task.get_status(task) == "failure"
    assert s.xenapi.task.get_error_info(task) == ["INTERNAL_ERROR", "Unknown format qcow"]


def test_redirect_to_the_host_that_sees_the_sr(env):
    rw, s = env
    m = master(rw)
    xs2 = rw.world.host_by_name("xs2")
    vdi = new_vdi(s, local_sr(s, "xs2"))
    q = f"session_id={s._session}&vdi={vdi}"
    status, headers, _ = request(m, "PUT", f"/import_raw_vdi?{q}", b"z" * 10)
    assert status == 302
    assert headers["location"] == f"http://{xs2.address_for_url}:{xs2.port}/import_raw_vdi?{q}"
    status, headers, _ = request(m, "GET", f"/export_raw_vdi?{q}", tls=True)
    assert status == 302 and headers["location"].startswith(f"https://{xs2.address_for_url}:")
    assert request(xs2, "PUT", f"/import_raw_vdi?{q}", b"z" * 10)[0] == 200
    assert request(xs2, "GET", f"/export_raw_vdi?{q}")[2][:10] == b"z" * 10


def test_chunked_import_is_refused_as_dundee_does(env):
    rw, s = env
    m = master(rw)
    vdi = new_vdi(s, local_sr(s, "xs1"))
    task = s.xenapi.task.create("chunked", "")
    c = http.client.HTTPConnection(m.address_for_url, m.port, timeout=30)
    c.putrequest("PUT", f"/import_raw_vdi?session_id={s._session}&vdi={vdi}&task_id={task}")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    c.send(b"3\r\nabc\r\n0\r\n\r\n")
    r = c.getresponse()
    assert r.status == 403
    c.close()
    assert s.xenapi.task.get_status(task) == "failure"


# -- streaming ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_route():
    """A test handler that streams its body back: sha of chunked and huge bodies."""
    import hashlib

    def echo(req):
        req.authenticate("echo")
        h, n = hashlib.sha1(), 0
        while True:
            data = req.body.read(64 * 1024)
            if not data:
                break
            h.update(data)
            n += len(data)
        req.close = req.q("close") == "1"
        req.reply("200 OK", "text/plain", f"{n} {h.hexdigest()}".encode())

    routes.put("/test_echo", stream=True)(echo)
    try:
        yield
    finally:
        del routes.ROUTES[("PUT", "/test_echo")]


def _raw(host, data: bytes, tls=False) -> bytes:
    sock = socket.create_connection((host.address_for_url, host.port), timeout=30)
    if tls:
        sock = ssl._create_unverified_context().wrap_socket(sock)
    try:
        sock.sendall(data)
        out = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                return out
            out += piece
    finally:
        sock.close()


@pytest.mark.parametrize("tls", [False, True])
def test_streaming_bodies_chunked_large_and_keep_alive(env, echo_route, tls):
    import hashlib

    rw, s = env
    m = master(rw)
    q = f"/test_echo?session_id={s._session}"
    chunked = (
        f"PUT {q} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    ).encode()
    plain = f"PUT {q}&close=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".encode()
    out = _raw(m, chunked + plain, tls)  # two requests on one connection: keep-alive
    sha = hashlib.sha1(b"hello world").hexdigest()
    assert out.count(b"HTTP/1.1 200 OK") == 2 and f"11 {sha}".encode() in out
    assert b"connection: keep-alive" in out
    # a body far above MAX_BODY streams through (no 413 for a streaming handler)
    from xapi_sim.wire import http as wire_http

    size = wire_http.MAX_BODY + 3 * MiB
    status, _, body = request(m, "PUT", q, body=_Zeros(size), headers={"Content-Length": size})
    assert status == 200 and body.split()[0] == str(size).encode()


class _Zeros:
    """A large body sent without holding it (http.client reads it in blocks)."""

    def __init__(self, n):
        self.left = n

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def test_buffered_handlers_still_refuse_huge_bodies(env):
    rw, s = env
    m = master(rw)
    out = _raw(m, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413")


def test_stalled_streaming_body_times_out(env, echo_route):
    rw, s = env
    m = master(rw)
    srv = rw.sim.servers[m.ref]  # the master's listener
    old = srv.idle_timeout
    srv.idle_timeout = 0.5
    try:
        sock = socket.create_connection((m.address_for_url, m.port), timeout=10)
        head = f"PUT /test_echo?session_id={s._session} HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(head.encode() + b"ab")
        t0 = time.monotonic()
        assert sock.recv(100) == b""  # the worker gave up on the stalled body and closed
        assert time.monotonic() - t0 < 5
        sock.close()
    finally:
        srv.idle_timeout = old


# -- raw disks ---------------------------------------------------------------------------------


def test_raw_and_vhd_round_trip_utilisation_and_vdi_operations(env):
    rw, s = env
    m = master(rw)
    sid = s._session
    sr = local_sr(s, "xs1")
    vdi = new_vdi(s, sr, 8 * MiB)
    data = os.urandom(3 * MiB) + bytes(MiB) + b"tail"
    u0 = int(s.xenapi.VDI.get_physical_utilisation(vdi))
    assert request(m, "PUT", f"/import_raw_vdi?session_id={sid}&vdi={vdi}", data)[0] == 200
    status, headers, raw = request(m, "GET", f"/export_raw_vdi?session_id={sid}&vdi={vdi}")
    assert status == 200 and len(raw) == 8 * MiB and raw[: len(data)] == data
    assert headers["content-type"] == "application/octet-stream"
    uuid = s.xenapi.VDI.get_uuid(vdi)
    status, headers, image = request(
        m, "GET", f"/export_raw_vdi?session_id={sid}&vdi={uuid}&format=VHD"
    )
    assert headers["content-disposition"] == f'attachment; filename="{uuid}.vhd"'
    assert headers["content-type"] == "application/vhd" and image[:8] == b"conectix"
    assert len(image) < 8 * MiB  # only the data blocks
    other = new_vdi(s, sr, 8 * MiB)
    assert request(m, "PUT", f"/import_raw_vdi?session_id={sid}&vdi={other}&format=vhd", image)[0]
    assert request(m, "GET", f"/export_raw_vdi?session_id={sid}&vdi={other}")[2] == raw
    # a thick LVM VDI keeps its LV size; the SR accounts for it either way
    assert int(s.xenapi.VDI.get_physical_utilisation(vdi)) == u0
    # resize keeps the data; clone and copy copy it; destroy frees it
    s.xenapi.VDI.resize(vdi, str(16 * MiB))
    status, _, raw16 = request(m, "GET", f"/export_raw_vdi?session_id={sid}&vdi={vdi}")
    assert len(raw16) == 16 * MiB and raw16[: len(data)] == data
    clone = s.xenapi.VDI.clone(vdi, {})
    copy = s.xenapi.VDI.copy(vdi, sr, "OpaqueRef:NULL", "OpaqueRef:NULL")
    for v in (clone, copy):
        assert request(m, "GET", f"/export_raw_vdi?session_id={sid}&vdi={v}")[2][:9] == data[:9]
    store = VdiStore.of(rw.world)
    assert store.exists(clone)
    s.xenapi.VDI.destroy(clone)
    assert not store.exists(clone)
    # too much data for the disk fails the task; a bad VHD too
    small = new_vdi(s, sr, 2 * MiB)
    task = s.xenapi.task.create("t", "")
    request(m, "PUT", f"/import_raw_vdi?session_id={sid}&vdi={small}&task_id={task}", data)
    assert s.xenapi.task.get_error_info(task)[0] == "VDI_IO_ERROR"
    task = s.xenapi.task.create("t", "")
    q = f"session_id={sid}&vdi={small}&task_id={task}&format=vhd"
    request(m, "PUT", f"/import_raw_vdi?{q}", b"not a vhd" * 100)
    assert s.xenapi.task.get_error_info(task)[0] == "INTERNAL_ERROR"


def test_thin_sr_utilisation_follows_what_was_written(env):
    rw, s = env
    m = master(rw)
    sr = s.xenapi.SR.create(
        m.ref, {"device": "/dev/sdb"}, str(100 * 1024 * MiB), "thin", "", "ext", "user", False, {}
    )
    vdi = new_vdi(s, sr, 64 * MiB)
    before = int(s.xenapi.VDI.get_physical_utilisation(vdi))
    sr_before = int(s.xenapi.SR.get_physical_utilisation(sr))
    body = bytes(10 * MiB) + b"\x01" * (4 * MiB)
    assert request(m, "PUT", f"/import_raw_vdi?session_id={s._session}&vdi={vdi}", body)[0]
    after = int(s.xenapi.VDI.get_physical_utilisation(vdi))
    assert after == before + 2 * (vhd.BLOCK + 512)  # two 2 MiB blocks hold data
    assert int(s.xenapi.SR.get_physical_utilisation(sr)) == sr_before + after - before
