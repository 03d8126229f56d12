"""Serving the page's files at /sim/ (xapi_sim/web) and the control calls it relies on; plain
HTTP clients, no browser."""

from __future__ import annotations

import concurrent.futures
import http.client
import urllib.parse
import xmlrpc.client

import pytest
import XenAPI

from xapi_sim import web
from xapi_sim.testing import running_world


@pytest.fixture(scope="module")
def rw():
    with running_world() as w:
        yield w


def get(url, path, headers=None):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_every_file_with_its_type_and_cache_headers(rw):
    assert {"index.html", "app.js", "style.css", "model.js"} <= set(web.FILES)
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
    for name in web.FILES:
        for host in ("xs1", "xs2", "xs5"):  # every endpoint, members and standalone too
            status, headers, body = get(rw.url(host), "/sim/" + name)
            assert status == 200
            assert headers["content-type"].startswith(types["." + name.rsplit(".", 1)[1]])
            assert headers["cache-control"] == "no-cache"
            assert headers["x-content-type-options"] == "nosniff"
            assert body == web.FILES[name][1]
            etag = headers["etag"]
            status, headers, body = get(rw.url(host), "/sim/" + name, {"if-none-match": etag})
            assert (status, body) == (304, b"")
    status, headers, body = get(rw.url("xs1"), "/sim/")
    assert status == 200 and b'<script type="module" src="app.js">' in body


def test_redirect_and_no_traversal(rw):
    status, headers, _ = get(rw.url("xs1"), "/sim")
    assert status == 301 and headers["location"] == "/sim/"
    for path in (
        "/sim/../setup.cfg",
        "/sim/%2e%2e/__init__.py",
        "/sim/__init__.py",
        "/sim/..%2f..%2fsetup.cfg",
        "/sim//etc/passwd",
        "/sim/web/app.js",
        "/simx",
    ):
        status, _, body = get(rw.url("xs1"), path)
        assert status == 404, path
        assert b"import" not in body
    status, _, _ = get(rw.url("xs1"), "/sim/app.js?x=1")  # a query is ignored
    assert status == 200


def test_many_clients_at_once(rw):
    """The files are read-only after import: many concurrent readers get the same bytes."""

    def one(i):
        name = sorted(web.FILES)[i % len(web.FILES)]
        status, _, body = get(rw.url(("xs1", "xs2", "xs3")[i % 3]), "/sim/" + name)
        return status == 200 and body == web.FILES[name][1]

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        assert all(ex.map(one, range(96)))


def test_sim_world_lists_every_pool_and_endpoint(rw):
    s = XenAPI.Session(rw.url("xs1"))
    s.xenapi.login_with_password(rw.user, rw.password)
    try:
        w = s.xenapi_request("sim.world", ())
        names = [[h["name_label"] for h in p["hosts"]] for p in w["pools"]]
        assert names == [["xs1", "xs2", "xs3"], ["xs4"], ["xs5"]]
        for p in w["pools"]:
            master = next(h for h in p["hosts"] if h["master"])
            assert master["ref"] == p["master"]
            for h in p["hosts"]:
                assert h["url"] == f"http://{rw.host(h['name_label']).address_for_url}:" + (
                    f"{rw.host(h['name_label']).port}/"
                )
                assert h["state"] == "up"
        assert w["pools"][0]["name_label"] == "pool-a"
        assert w["pools"][0]["rolling_upgrade"] is False
        f = s.xenapi_request("sim.cpu_features", ())
        assert {"index": "0", "name": "1d"} in f["words"] or {"index": 0, "name": "1d"} in f[
            "words"
        ]
        aes = next(x for x in f["features"] if x["name"] == "aesni")
        assert (int(aes["word"]), int(aes["bit"])) == (1, 25)
        assert any(m["name"] == "EPYC" and m["vendor"] == "AuthenticAMD" for m in f["models"])
        # a session of another pool works too (the control API takes any pool's session)
        s5 = XenAPI.Session(rw.url("xs5"))
        s5.xenapi.login_with_password(rw.user, rw.password)
        assert s5.xenapi_request("sim.world", ()) == w
        s5.xenapi.session.logout()
    finally:
        s.xenapi.session.logout()


def test_sim_world_needs_a_session(rw):
    proxy = xmlrpc.client.ServerProxy(rw.url("xs1"))
    r = proxy.sim.world("OpaqueRef:nope")
    assert r["ErrorDescription"] == ["SESSION_INVALID", "OpaqueRef:nope"]
    r = proxy.sim.cpu_features()
    assert r["ErrorDescription"][0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
