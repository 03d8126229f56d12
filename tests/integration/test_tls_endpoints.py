"""TLS on every endpoint (issue 12 item 12): each simulated host speaks HTTP and HTTPS on its
one port (told apart by the first byte), presents its own self-signed certificate naming
its address, and ``xe`` -- which, like the real client, uses TLS for any server but
127.0.0.1 -- works against every host of the default world without ``--nossl``. A stalled
handshake blocks nobody; large replies reach slow TLS readers whole; ``--state-dir`` keeps
the certificates across restarts.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import xmlrpc.client

import pytest
import XenAPI
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from xapi_sim.generate import scenario_toml
from xapi_sim.testing import running_world
from xapi_sim.wire import connection
from xapi_sim.wire import tls as tls_mod

XE = shutil.which("xe", path=os.path.dirname(sys.executable)) or shutil.which("xe")
SUPPORTER = (  # Dundee's words (the default world emulates 7.0; docs/releases.md)
    "You cannot make regular API calls directly on a slave. Please pass API "
    "calls via the master host.\nMaster IP address: 127.0.0.1\n"
)


def unverified():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_cert(host, port) -> x509.Certificate:
    with socket.create_connection((host, port), timeout=10) as raw:
        with unverified().wrap_socket(raw, server_hostname=host) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def hostport(url):
    rest = url.split("//", 1)[1].rstrip("/")
    host, port = rest.rsplit(":", 1)
    return host, int(port)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


def xe_env(home):
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env["HOME"] = str(home)
    return env


# -- both schemes, every host ----------------------------------------------------------------


def test_every_host_speaks_http_and_https_on_one_port(world):
    desc = world.describe()["hosts"]
    assert len(desc) == 5
    master_addr = world.host("xs1").address
    for h in desc:
        assert h["http_url"].startswith("http://") and h["https_url"].startswith("https://")
        assert hostport(h["http_url"]) == hostport(h["https_url"])
        assert h["url"] == h["http_url"]  # URLs handed out stay http:// by default
        for url in (h["http_url"], h["https_url"]):
            s = XenAPI.Session(url, ignore_ssl=True)
            if h["master"]:
                s.xenapi.login_with_password("root", "xenroot", "2.5", "tls-test")
                ref = s.xenapi.host.get_by_uuid(h["uuid"])
                assert s.xenapi.host.get_name_label(ref) == h["name_label"]
                s.xenapi.session.logout()
            else:
                with pytest.raises(XenAPI.Failure) as e:
                    s.xenapi.login_with_password("root", "xenroot")
                assert e.value.details == ["HOST_IS_SLAVE", master_addr]
            s._ServerProxy__close()  # XenAPI: s.close() is an RPC


def test_each_host_presents_a_certificate_naming_its_address(world):
    seen = set()
    for h in world.describe()["hosts"]:
        host, port = hostport(h["https_url"])
        cert = peer_cert(host, port)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(host)]
        assert cert.issuer == cert.subject  # self-signed
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        seen.add(cert.fingerprint(cert.signature_hash_algorithm))
        assert peer_cert(host, port) == cert  # the same one every time
    assert len(seen) == 5


def test_json_rpc_keep_alive_and_pipelining_over_tls(world, wire):
    host, port = hostport(world.describe()["hosts"][0]["https_url"])
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=unverified())
    try:
        conn.request(
            "POST",
            "/jsonrpc",
            wire.json_body("session.login_with_password", ["root", "xenroot", "2.5", "tls"]),
            {"Content-Type": "application/json"},
        )
        sref = json.loads(conn.getresponse().read())["result"]
        sock = conn.sock
        for _ in range(5):
            conn.request(
                "POST",
                "/jsonrpc",
                wire.json_body("pool.get_all", [sref]),
                {"Content-Type": "application/json"},
            )
            r = conn.getresponse()
            assert r.getheader("connection") == "keep-alive"
            assert json.loads(r.read())["result"]
        assert conn.sock is sock
    finally:
        conn.close()
    # three requests in one TLS write: three answers, in order
    bodies = [wire.xml_body(m, sref) for m in ("pool.get_all", "host.get_all", "VM.get_all")]
    reqs = b"".join(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(b) + b for b in bodies
    )
    with socket.create_connection((host, port), timeout=10) as raw:
        with unverified().wrap_socket(raw, server_hostname=host) as s:
            s.sendall(reqs)
            data = b""
            while data.count(b"</methodResponse>") < 3:
                chunk = s.recv(65536)
                assert chunk
                data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3


def test_large_replies_reach_slow_tls_and_plain_readers_whole(monkeypatch):
    """Replies larger than the socket buffers, to readers with a small window: what the
    worker cannot send at once the loop writes as the peer reads (TLS retries the same
    record after a would-block)."""
    writes = []
    original = connection.Conn._write

    def spy(conn):
        writes.append(conn.tls)
        return original(conn)

    monkeypatch.setattr(connection.Conn, "_write", spy)
    with running_world(scenario_toml(2, 8, 1500)) as w:
        url = w.master_url()
        host, port = hostport(url)
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot")
        body = xmlrpc.client.dumps((s.handle,), "VM.get_all_records").encode()
        req = (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body)
        ) + body
        sizes = []
        for use_tls in (False, True):
            raw = socket.create_connection((host, port), timeout=20)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock = unverified().wrap_socket(raw, server_hostname=host) if use_tls else raw
            sock.sendall(req)
            time.sleep(0.3)  # the server fills the buffers and waits
            data = b""
            while True:
                chunk = sock.recv(16384)
                if not chunk:
                    break
                data += chunk
            sock.close()
            head, _, payload = data.partition(b"\r\n\r\n")
            n = int(
                next(
                    line.split(b": ")[1]
                    for line in head.split(b"\r\n")
                    if line.startswith(b"content-length")
                )
            )
            assert len(payload) == n
            assert len(xmlrpc.client.loads(payload)[0][0]["Value"]) > 1500
            sizes.append(n)
        assert sizes[0] == sizes[1] > 6 << 20  # more than the kernel buffers
        assert False in writes and True in writes  # both went through the loop
        s.xenapi.session.logout()


def test_a_stalled_handshake_blocks_nobody_and_is_closed(fresh_world, wire):
    fresh_world.world.request_timeout = 1.0
    url = fresh_world.master_url()
    host, port = hostport(url)
    stalled = socket.create_connection((host, port), timeout=5)
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello
    t0 = time.monotonic()
    for scheme in ("http", "https"):
        s = XenAPI.Session(f"{scheme}://{host}:{port}/", ignore_ssl=True)
        s.xenapi.login_with_password("root", "xenroot")
        s.xenapi.pool.get_all()
        s.xenapi.session.logout()
        s._ServerProxy__close()  # XenAPI: s.close() is an RPC
    assert time.monotonic() - t0 < 2
    stalled.settimeout(4)
    t0 = time.monotonic()
    assert stalled.recv(100) == b""  # closed at the request deadline
    assert time.monotonic() - t0 < 3
    stalled.close()
    # garbage after a TLS record header: the handshake fails, the connection is closed
    with socket.create_connection((host, port), timeout=5) as g:
        g.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 100)
        g.settimeout(4)
        try:
            while g.recv(4096):
                pass
        except ConnectionResetError:
            pass


def test_many_tls_clients_at_once(world):
    url = world.describe()["hosts"][0]["https_url"]

    def client(i):
        s = XenAPI.Session(url, ignore_ssl=True)
        s.xenapi.login_with_password("root", "xenroot", "2.5", f"tls-{i}")
        try:
            return len(s.xenapi.VM.get_all_records())
        finally:
            s.xenapi.session.logout()
            s._ServerProxy__close()  # XenAPI: s.close() is an RPC

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        counts = list(ex.map(client, range(64)))
    assert len(set(counts)) == 1 and counts[0] > 0


# -- xe, as the real client: TLS to anything but 127.0.0.1 ------------------------------------


@pytest.mark.skipif(XE is None, reason="the xe console script is not installed")
def test_xe_against_every_host_of_the_default_world_without_nossl(world, home):
    for h in world.describe()["hosts"]:
        host, port = hostport(h["http_url"])
        r = subprocess.run(
            [
                XE,
                "-s",
                host,
                "-p",
                str(port),
                "-u",
                "root",
                "-pw",
                "xenroot",
                "host-list",
                "params=name-label",
                "--minimal",
            ],
            capture_output=True,
            text=True,
            env=xe_env(home),
            timeout=30,
        )
        if h["pool"] == "pool-a" and not h["master"]:
            # a member answers as a real supporter does: over TLS, naming the master
            assert (r.returncode, r.stdout, r.stderr) == (1, "", SUPPORTER), h["name_label"]
        else:
            assert r.returncode == 0, (h["name_label"], r.stderr)
            assert h["name_label"] in r.stdout.strip().split(",") and r.stderr == ""
    # "localhost" is not 127.0.0.1 to xe: TLS, to xs1
    xs1 = world.host("xs1")
    r = subprocess.run(
        [
            XE,
            "-s",
            "localhost",
            "-p",
            str(xs1.port),
            "-u",
            "root",
            "-pw",
            "xenroot",
            "pool-list",
            "params=name-label",
            "--minimal",
        ],
        capture_output=True,
        text=True,
        env=xe_env(home),
        timeout=30,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "pool-a\n", "")


# -- certificates on disk ---------------------------------------------------------------------


def test_cert_store_reuses_a_file_naming_the_address_and_remakes_otherwise(tmp_path):
    store = tls_mod.CertStore(str(tmp_path))
    p = store.ensure("u1", "127.0.0.2")
    first = open(p, "rb").read()
    assert oct(os.stat(p).st_mode & 0o777) == "0o600"
    assert store.ensure("u1", "127.0.0.2") == p and open(p, "rb").read() == first
    store.ensure("u1", "127.0.0.3")  # the host moved
    moved = open(p, "rb").read()
    assert moved != first
    cert = x509.load_pem_x509_certificate(moved)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.3")]
    store.ensure("u2", "xs2.example")  # a name: a DNS SAN
    cert = x509.load_pem_x509_certificate(open(store.path("u2"), "rb").read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["xs2.example"]
    tmp = tls_mod.CertStore()
    d = tmp.directory
    tmp.ensure("u", "127.0.0.1")
    tmp.cleanup()
    assert not os.path.exists(d)
    store.cleanup()  # not ours: kept
    assert os.path.exists(p)


def test_tls_source_makes_the_context_once_under_concurrency(tmp_path):
    src = tls_mod.TlsSource(tls_mod.CertStore(str(tmp_path)), "u", "127.0.0.5")
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
        ctxs = list(ex.map(lambda _: src.context(), range(64)))
    assert len({id(c) for c in ctxs}) == 1 and src.ready is ctxs[0]
    assert os.listdir(tmp_path) == ["u.pem"]


class Serve:
    def __init__(self, tmp_path, *args):
        self.ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xapi_sim",
                "serve",
                "--port",
                "0",
                "--seed",
                "3",
                "--ready-file",
                str(self.ready),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self):
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return {h["name_label"]: h for h in json.loads(self.ready.read_text())["hosts"]}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=15)
        assert self.proc.returncode == 0, err
        return out


def test_serve_keeps_certificates_in_the_state_dir(tmp_path, home):
    state = tmp_path / "state"
    a = Serve(tmp_path, "--state-dir", str(state))
    try:
        hosts = a.wait()
        xs2 = hosts["xs2"]
        host, port = hostport(xs2["https_url"])
        cert = peer_cert(host, port)
        path = state / "certs" / f"{xs2['uuid']}.pem"
        assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
        assert x509.load_pem_x509_certificate(path.read_bytes()) == cert
        if XE is not None:  # the README's quick-start line, against a member
            r = subprocess.run(
                [XE, "-s", host, "-p", str(port), "-u", "root", "-pw", "xenroot", "host-list"],
                capture_output=True,
                text=True,
                env=xe_env(home),
                timeout=30,
            )
            assert (r.returncode, r.stderr) == (1, SUPPORTER)
    finally:
        out = a.stop()
    # the startup table lists both schemes per host
    line = next(ln for ln in out.splitlines() if ln.startswith("xs2 "))
    assert xs2["http_url"] in line and xs2["https_url"] in line
    assert f"in {state / 'certs'}" in out
    b = Serve(tmp_path, "--state-dir", str(state))
    try:
        hosts = b.wait()
        host, port = hostport(hosts["xs2"]["https_url"])
        assert peer_cert(host, port) == cert  # the same certificate after a restart
    finally:
        b.stop()


def test_serve_without_state_dir_removes_its_temporary_certificates(tmp_path):
    a = Serve(tmp_path)
    try:
        hosts = a.wait()
        host, port = hostport(hosts["xs1"]["https_url"])
        peer_cert(host, port)
    finally:
        out = a.stop()
    d = next(ln for ln in out.splitlines() if ln.startswith("TLS:")).rsplit(" in ", 1)[1]
    assert not os.path.exists(d)


def test_a_bad_tls_cert_is_refused_at_start(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "xapi_sim",
            "serve",
            "--port",
            "0",
            "--tls-cert",
            str(bad),
            "--tls-key",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--tls-cert" in p.stderr
