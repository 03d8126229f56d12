"""HTTP transport (spec §1, §15.10, §15.16): headers, keep-alive, concurrency, and hostile or
broken bodies -- unparseable XML/JSON (HTTP 500 + ``connection: close``), XML bombs, external
entities and DTDs (refused; the server stays up and the state is unchanged), too-large
bodies (413), deep nesting, invalid UTF-8.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import socket
import threading
import time

import pytest
import XenAPI


@pytest.fixture(scope="module")
def url(world):
    return world.master_url()


@pytest.fixture(scope="module")
def sref(session):
    return session.handle


@pytest.fixture(scope="module")
def pool(xapi):
    return xapi.pool.get_all()[0]


def alive(wire, url, sref):
    out = wire.xml(url, "pool.get_all", sref)
    return out["Status"] == "Success"


def assert_refused_500(reply):
    assert reply.status == 500, reply.body
    assert reply.headers["connection"] == "close"
    assert reply.headers["content-type"] == "text/html"


# -- headers -------------------------------------------------------------------------------


def test_response_headers_are_lower_case_and_exact(world, wire, request_bytes, sref):
    host, _ = wire.hostport(world.master_url())
    body = wire.xml_body("pool.get_all", sref)
    data = wire.exchange(
        world.master_url(), request_bytes(host, body, extra=b"Connection: close\r\n")
    )
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert all(k == k.lower() for k in headers)
    assert headers[b"content-type"] == b"text/xml"
    assert int(headers[b"content-length"]) == len(payload)
    assert headers[b"connection"] == b"close"
    assert headers[b"cache-control"] == b"no-cache, no-store"
    assert headers[b"access-control-allow-origin"] == b"*"
    assert headers[b"access-control-allow-headers"] == b"X-Requested-With"
    assert b"content-encoding" not in headers


def test_options_preflight(world, wire):
    for path in ("/", "/json", "/jsonrpc"):
        r = wire.post(world.master_url(), b"", path=path, method="OPTIONS")
        assert r.status == 200
        assert r.headers["access-control-allow-origin"] == "*"


def test_get_on_the_rpc_path_is_not_an_rpc(world, wire):
    r = wire.post(world.master_url(), b"", method="GET")
    assert r.status == 404


# -- keep-alive and concurrency ------------------------------------------------------------


def test_keep_alive_serves_several_calls_on_one_connection(world, wire, sref):
    conn = wire.connect(world.master_url())
    try:
        r = wire.send(conn, wire.xml_body("pool.get_all", sref))
        sock = conn.sock
        assert r.headers["connection"] == "keep-alive"
        for i in range(10):
            method = ["host.get_all", "VM.get_all", "session.get_uuid"][i % 3]
            params = (sref, sref) if method == "session.get_uuid" else (sref,)
            r = wire.send(conn, wire.xml_body(method, *params))
            assert r.status == 200 and r.xml()["Status"] == "Success"
            assert r.headers["connection"] == "keep-alive"
        # JSON-RPC on the same connection too
        r = wire.send(
            conn,
            wire.json_body("pool.get_all", [sref]),
            path="/jsonrpc",
            headers={"Content-Type": "application/json"},
        )
        assert r.json()["result"]
        assert conn.sock is sock, "the server closed a keep-alive connection"
    finally:
        conn.close()


def test_xenapi_reuses_its_connection(world, login):
    s = login(world.master_url())
    for _ in range(5):
        s.xenapi.VM.get_all()
    conn = s._ServerProxy__transport._connection[1]
    sock = conn.sock
    s.xenapi.host.get_all()
    assert conn.sock is sock
    s.xenapi.session.logout()


def test_expect_100_continue(world, wire, sref):
    """.NET clients (XenCenter) may send ``Expect: 100-continue`` before the body."""
    host, port = wire.hostport(world.master_url())
    body = wire.xml_body("pool.get_all", sref)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        reply = b""
        while b"</methodResponse>" not in reply:
            chunk = s.recv(65536)
            assert chunk
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK") and b"Success" in reply


def test_connection_close_is_honoured(world, wire, request_bytes, sref):
    host, _ = wire.hostport(world.master_url())
    body = wire.xml_body("pool.get_all", sref)
    one = request_bytes(host, body, extra=b"Connection: close\r\n")
    # a second request after "close" must not be answered
    data = wire.exchange(world.master_url(), one + request_bytes(host, body))
    assert data.count(b"HTTP/1.1 200 OK") == 1


def test_http_1_0_closes_unless_keep_alive(world, wire, request_bytes, sref):
    host, _ = wire.hostport(world.master_url())
    body = wire.xml_body("pool.get_all", sref)
    data = wire.exchange(world.master_url(), request_bytes(host, body, version=b"HTTP/1.0") * 2)
    assert data.count(b"200 OK") == 1
    data = wire.exchange(
        world.master_url(),
        request_bytes(host, body, version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n")
        + request_bytes(host, body, version=b"HTTP/1.0") * 2,
    )
    assert data.count(b"200 OK") == 2


def test_pipelined_requests_are_answered_in_order(world, wire, request_bytes, sref):
    host, _ = wire.hostport(world.master_url())
    reqs = b"".join(
        request_bytes(host, wire.xml_body(m, sref))
        for m in ("pool.get_all", "host.get_all", "VM.get_all")
    )
    reqs += request_bytes(host, wire.xml_body("pool.get_all", sref), extra=b"Connection: close\r\n")
    data = wire.exchange(world.master_url(), reqs)
    assert data.count(b"HTTP/1.1 200 OK") == 4


def test_many_concurrent_connections(world, wire):
    url = world.master_url()

    def client(i):
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot", "2.5", f"client-{i}")
        try:
            n = len(s.xenapi.VM.get_all_records())
            assert s.xenapi.session.get_originator(s.handle) == f"client-{i}"
            return n
        finally:
            s.xenapi.session.logout()

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as ex:
        counts = list(ex.map(client, range(64)))
    assert len(set(counts)) == 1 and counts[0] > 0


def test_many_idle_connections_do_not_block_others(world, wire, sref):
    host, port = wire.hostport(world.master_url())
    idle = [socket.create_connection((host, port), timeout=5) for _ in range(100)]
    try:
        t0 = time.monotonic()
        assert alive(wire, world.master_url(), sref)
        assert time.monotonic() - t0 < 2
    finally:
        for s in idle:
            s.close()


def test_a_long_poll_does_not_block_other_calls(world, wire, sref):
    """XenCenter keeps event.from open while heartbeating on another connection."""
    url = world.master_url()
    token = wire.xml_ok(url, "event.from", sref, ["pool"], "", 0.1)["token"]
    done = threading.Event()

    def poll():
        wire.xml(url, "event.from", sref, ["pool"], token, 1.5)
        done.set()

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    for _ in range(5):
        assert alive(wire, url, sref)
    assert time.monotonic() - t0 < 1
    assert not done.is_set()
    t.join(10)


# -- broken and hostile bodies -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"this is not xml",
        b"<methodCall><methodName>pool.get_all</methodName>",  # truncated
        b"<methodCall><methodName>pool.get_all</methodName></methodCall>",  # no <params>
        b"<notACall/>",
        b"<methodCall><methodName>x</methodName><params><param><value><int>zz</int>"
        b"</value></param></params></methodCall>",
        b"<methodCall><methodName>x</methodName><params><param><value><foo>1</foo>"
        b"</value></param></params></methodCall>",
        b"",
    ],
)
def test_unparseable_xml_is_http_500_and_close(world, wire, sref, body):
    r = wire.post(world.master_url(), body)
    assert_refused_500(r)
    assert b"Parse_error" in r.body
    assert alive(wire, world.master_url(), sref)


def test_500_closes_the_connection(world, wire, request_bytes, sref):
    host, _ = wire.hostport(world.master_url())
    data = wire.exchange(
        world.master_url(),
        request_bytes(host, b"garbage") + request_bytes(host, wire.xml_body("pool.get_all", sref)),
    )
    assert data.startswith(b"HTTP/1.1 500 ")
    assert data.count(b"HTTP/1.1 ") == 1


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<methodCall><methodName>pool.set_name_description</methodName><params>
<param><value>SESSION</value></param><param><value>POOL</value></param>
<param><value>&lol9;</value></param></params></methodCall>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<methodCall><methodName>pool.set_name_description</methodName><params>
<param><value>SESSION</value></param><param><value>POOL</value></param>
<param><value>&xxe;</value></param></params></methodCall>"""

DTD_ONLY = b"""<?xml version="1.0"?>
<!DOCTYPE methodCall SYSTEM "http://127.0.0.1:9/x.dtd">
<methodCall><methodName>pool.set_name_description</methodName><params>
<param><value>SESSION</value></param><param><value>POOL</value></param>
<param><value>changed</value></param></params></methodCall>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [ <!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p; ]>
<methodCall><methodName>pool.set_name_description</methodName><params>
<param><value>SESSION</value></param><param><value>POOL</value></param>
<param><value>changed</value></param></params></methodCall>"""


@pytest.mark.parametrize(
    "body",
    [BOMB, XXE, DTD_ONLY, PARAMETER_ENTITY],
    ids=["bomb", "external-entity", "dtd", "parameter-entity"],
)
def test_entities_and_dtds_are_refused(world, wire, xapi, sref, pool, body):
    before = xapi.pool.get_name_description(pool)
    body = body.replace(b"SESSION", sref.encode()).replace(b"POOL", pool.encode())
    t0 = time.monotonic()
    r = wire.post(world.master_url(), body)
    assert time.monotonic() - t0 < 2
    assert_refused_500(r)
    assert b"root:" not in r.body
    assert xapi.pool.get_name_description(pool) == before
    assert alive(wire, world.master_url(), sref)


def test_too_large_body_is_413_without_reading_it(world, wire, request_bytes, sref):
    host, _ = wire.hostport(world.master_url())
    head = (
        b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: text/xml\r\n"
        b"Content-Length: " + str(64 << 20).encode() + b"\r\n\r\n<methodCall>"
    )
    t0 = time.monotonic()
    data = wire.exchange(world.master_url(), head)
    assert time.monotonic() - t0 < 3
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in data.lower()
    assert alive(wire, world.master_url(), sref)


def test_too_large_chunked_body_is_413(world, wire, sref):
    host, port = wire.hostport(world.master_url())
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * (1 << 20)
        reply = b""
        try:
            for _ in range(40):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass  # the server stopped reading: fine
        s.settimeout(5)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                reply += b
        except (TimeoutError, ConnectionResetError):
            pass
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert alive(wire, world.master_url(), sref)


def test_chunked_request_body_is_accepted(world, wire, sref):
    host, port = wire.hostport(world.master_url())
    body = wire.xml_body("pool.get_all", sref)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "text/xml")
    conn.endheaders()
    for i in range(0, len(body), 50):
        part = body[i : i + 50]
        conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    assert r.status == 200 and b"Success" in r.read()
    conn.close()


def test_deeply_nested_xml_is_refused(world, wire, sref):
    depth = 100_000
    body = (
        b"<methodCall><methodName>pool.get_all</methodName><params><param>"
        + b"<value><array><data>" * depth
        + b"</data></array></value>" * depth
        + b"</param></params></methodCall>"
    )
    t0 = time.monotonic()
    r = wire.post(world.master_url(), body)
    assert time.monotonic() - t0 < 5
    assert_refused_500(r)
    assert alive(wire, world.master_url(), sref)


def test_deeply_nested_json_is_refused(world, wire, sref):
    for depth in (200, 200_000):
        body = (
            b'{"jsonrpc":"2.0","id":1,"method":"pool.get_all","params":'
            + b"[" * depth
            + b"]" * depth
            + b"}"
        )
        r = wire.post(
            world.master_url(), body, path="/jsonrpc", headers={"Content-Type": "application/json"}
        )
        assert_refused_500(r)
    assert alive(wire, world.master_url(), sref)


def test_invalid_utf8_in_an_xml_body_is_refused(world, wire, xapi, sref, pool):
    before = xapi.pool.get_name_description(pool)
    body = wire.xml_body("pool.set_name_description", sref, pool, "XX").replace(
        b"XX", b"\xff\xfe\xc3"
    )
    r = wire.post(world.master_url(), body)
    assert_refused_500(r)
    assert xapi.pool.get_name_description(pool) == before
    assert alive(wire, world.master_url(), sref)


def test_a_slow_or_silent_client_does_not_hang_the_server(world, wire, sref):
    host, port = wire.hostport(world.master_url())
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<meth")
        assert alive(wire, world.master_url(), sref)


def test_client_vanishing_mid_request(world, wire, sref):
    host, port = wire.hostport(world.master_url())
    for _ in range(20):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<m")
        s.close()
    assert alive(wire, world.master_url(), sref)
