"""Shared fixtures: running worlds, XenAPI sessions and raw-protocol helpers.

Read-only integration tests share one world per module (``world``); tests that change state
take a fresh one (``fresh_world``). ``wire`` gives raw HTTP/XML-RPC/JSON-RPC helpers for
what the ``XenAPI`` package cannot send or does not show (envelopes, headers, bad bodies).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
import xmlrpc.client

import pytest
import XenAPI

from xapi_sim.testing import PASSWORD, USER, running_world


@pytest.fixture(scope="module")
def world():
    """One default world shared by a whole test module (read-only tests)."""
    with running_world() as w:
        yield w


@pytest.fixture
def fresh_world():
    """A default world of one's own (tests that change state)."""
    with running_world() as w:
        yield w


def xenapi_session(url, user=USER, password=PASSWORD, version="2.5", originator="pytest"):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password(user, password, version, originator)
    return s


@pytest.fixture(scope="session")
def login():
    """``login(url, user=..., password=...)`` -> a logged-in ``XenAPI.Session``."""
    return xenapi_session


@pytest.fixture(scope="module")
def session(world):
    """A XenAPI session on the first pool's master of the module's world."""
    s = xenapi_session(world.master_url())
    yield s
    try:
        s.xenapi.session.logout()
    except Exception:
        pass


@pytest.fixture(scope="module")
def xapi(session):
    return session.xenapi


class Reply:
    """A raw HTTP reply: status, lower-cased header dict, the raw header names, body."""

    def __init__(self, status, headers, names, body):
        self.status = status
        self.headers = headers
        self.header_names = names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def xml(self):
        """The single decoded ``<param>`` of an XML-RPC methodResponse."""
        params, _ = xmlrpc.client.loads(self.body)
        return params[0]


class Wire:
    """Raw helpers: build requests by hand, send them over http.client, decode replies."""

    @staticmethod
    def hostport(url):
        u = urllib.parse.urlsplit(url)
        return u.hostname, u.port

    def connect(self, url, timeout=10):
        host, port = self.hostport(url)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def send(self, conn, body, path="/", headers=None, method="POST"):
        h = {"Content-Type": "text/xml"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        names = [k for k, _ in r.getheaders()]
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, names, data)

    def post(self, url, body, path="/", headers=None, method="POST"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn = self.connect(url)
        try:
            return self.send(conn, body, path, headers, method)
        finally:
            conn.close()

    # -- XML-RPC -------------------------------------------------------------------------
    @staticmethod
    def xml_body(method, *params):
        return xmlrpc.client.dumps(tuple(params), method, allow_none=True).encode("utf-8")

    @staticmethod
    def xml_raw_body(method, *raw_values):
        """A methodCall whose params are given as raw ``<value>...</value>`` strings."""
        ps = "".join(f"<param>{v}</param>" for v in raw_values)
        return (
            f'<?xml version="1.0"?><methodCall><methodName>{method}</methodName>'
            f"<params>{ps}</params></methodCall>"
        ).encode()

    def xml_reply(self, url, method, *params, path="/"):
        return self.post(url, self.xml_body(method, *params), path)

    def xml(self, url, method, *params, path="/"):
        """The decoded XML-RPC response value (the Status struct, or a bare value)."""
        r = self.xml_reply(url, method, *params, path=path)
        assert r.status == 200, r.body
        return r.xml()

    def xml_raw(self, url, method, *raw_values, path="/"):
        r = self.post(url, self.xml_raw_body(method, *raw_values), path)
        assert r.status == 200, r.body
        return r.xml()

    def xml_ok(self, url, method, *params):
        out = self.xml(url, method, *params)
        assert out["Status"] == "Success", out
        return out["Value"]

    def xml_err(self, url, method, *params):
        out = self.xml(url, method, *params)
        assert out["Status"] == "Failure", out
        return out["ErrorDescription"]

    def login(self, url, user=USER, password=PASSWORD):
        return self.xml_ok(url, "session.login_with_password", user, password, "2.5", "raw")

    # -- JSON-RPC ------------------------------------------------------------------------
    @staticmethod
    def json_body(method, params=None, version=2, rid=1, omit=()):
        req = {"method": method, "params": [] if params is None else params, "id": rid}
        if version == 2:
            req["jsonrpc"] = "2.0"
        for k in omit:
            req.pop(k, None)
        return json.dumps(req).encode("utf-8")

    def json_reply(self, url, method, params=None, version=2, rid=1, path="/jsonrpc"):
        return self.post(
            url,
            self.json_body(method, params, version, rid),
            path,
            {"Content-Type": "application/json"},
        )

    def json(self, url, method, params=None, version=2, rid=1):
        r = self.json_reply(url, method, params, version, rid)
        assert r.status == 200, r.body
        return r.json()

    # -- raw sockets (exact bytes on the wire) --------------------------------------------
    def exchange(self, url, data: bytes, timeout=10) -> bytes:
        """Send ``data`` on a fresh socket and read until the server closes or goes quiet."""
        host, port = self.hostport(url)
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(data)
            chunks = []
            s.settimeout(2)
            while True:
                try:
                    b = s.recv(65536)
                except TimeoutError:
                    break
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks)


@pytest.fixture(scope="session")
def wire():
    return Wire()


def xml_request_bytes(host, body: bytes, path="/", extra=b"", version=b"HTTP/1.1"):
    """A complete HTTP POST request as bytes."""
    return (
        b"POST "
        + path.encode()
        + b" "
        + version
        + b"\r\nHost: "
        + host.encode()
        + b"\r\nContent-Type: text/xml\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


@pytest.fixture(scope="session")
def request_bytes():
    return xml_request_bytes
