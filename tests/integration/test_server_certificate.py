"""``host.get_server_certificate`` and ``xe host-get-server-certificate``: the PEM of the
certificate each host's listener presents, in xapi's format (``certificates.ml``
``trim_cert``: the certificate block only, no newline after its footer), forwarded to the
host (HOST_OFFLINE when it is down), HANDLE_INVALID for a bad ref -- over the XenAPI package,
as XenCenter's upgrade precheck (``CertificateKeyLengthCheck``) reads it, and the xe CLI."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import sys

import XenAPI
from cert_kit import make_cert, pool_of
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import given
from hypothesis import strategies as st
from session_kit import failure, logged_in

from xapi_sim import scenario, scenario_spec, x509cert
from xapi_sim.classes.certificates import trim_cert
from xapi_sim.dispatch import Dispatcher
from xapi_sim.errors import Failure
from xapi_sim.testing import running_world

XE = shutil.which("xe", path=os.path.dirname(sys.executable)) or shutil.which("xe")


def presented_der(h) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((h.address_for_url, h.port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def xencenter_der(pem: str) -> bytes:
    """What XenCenter's CertificateKeyLengthCheck does with the string: split on "\\n",
    drop the first and the last line, base64-decode the rest."""
    lines = pem.split("\n")
    return base64.b64decode("\n".join(lines[1:-1]))


def check_format(pem: str) -> None:
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert pem.endswith("\n-----END CERTIFICATE-----")  # no newline after the footer
    assert "PRIVATE KEY" not in pem and "\r" not in pem


def test_each_host_of_the_default_world_returns_the_certificate_it_presents():
    with running_world() as w:
        seen = set()
        for d in w.describe()["hosts"]:
            if not d["master"]:
                continue  # its pool's master answers for it (forwarded)
            s = XenAPI.Session(d["http_url"])
            s.xenapi.login_with_password("root", "xenroot")
            try:
                for href in s.xenapi.host.get_all():
                    name = s.xenapi.host.get_name_label(href)
                    pem = s.xenapi.host.get_server_certificate(href)
                    check_format(pem)
                    der = presented_der(w.host(name))
                    assert xencenter_der(pem) == der, name
                    cert = x509.load_pem_x509_certificate(pem.encode())
                    assert cert.public_bytes(serialization.Encoding.DER) == der
                    seen.add(name)
            finally:
                s.xenapi.session.logout()
        assert seen == {d["name_label"] for d in w.describe()["hosts"]}


def test_a_certificate_installed_by_the_api_is_the_one_returned():
    # 8.2 CU1: the host's Certificate row drives what the listener presents
    with logged_in(pool_of("stockholm")) as (w, s):
        href = s.xenapi.host.get_by_name_label("h2")[0]
        cpem, kpem, cert = make_cert()
        s.xenapi.host.install_server_certificate(href, cpem, kpem, "")
        pem = s.xenapi.host.get_server_certificate(href)
        check_format(pem)
        assert pem == cpem.strip()
        assert xencenter_der(pem) == presented_der(w.host("h2"))


def test_offline_host_and_bad_ref():
    with logged_in(pool_of("dundee")) as (w, s):
        h2 = s.xenapi.host.get_by_name_label("h2")[0]
        assert failure(s.xenapi.host.get_server_certificate, "OpaqueRef:nope") == [
            "HANDLE_INVALID",
            "host",
            "OpaqueRef:nope",
        ]
        s.xenapi.sim.host_crash(h2)
        assert failure(s.xenapi.host.get_server_certificate, h2) == ["HOST_OFFLINE", h2]
        # the master still answers for itself
        h1 = s.xenapi.host.get_by_name_label("h1")[0]
        check_format(s.xenapi.host.get_server_certificate(h1))


def test_a_world_without_listeners_answers_from_the_certificate_row():
    """No server (an in-process world): a release with the Certificate class answers with
    the row's certificate; one without has no certificate to give."""
    for version, ok in (("stockholm", True), ("dundee", False)):
        world = scenario.build(scenario_spec.loads(pool_of(version)), seed=4)
        d = Dispatcher(world)
        m = world.host_by_name("h1")
        s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
        href = m.ref
        if ok:
            pem = d.dispatch(m, "host.get_server_certificate", [s, href])
            check_format(pem)
            rows = d.dispatch(m, "Certificate.get_all_records", [s]).values()
            (row,) = [r for r in rows if r["host"] == href]
            cert = x509.load_pem_x509_certificate(pem.encode())
            assert row["fingerprint"] == x509cert.pp_hash(cert.fingerprint(hashes.SHA256()))
        else:
            try:
                d.dispatch(m, "host.get_server_certificate", [s, href])
            except Failure as e:
                assert e.description == ["CERTIFICATE_LIBRARY_CORRUPT"]
            else:
                raise AssertionError("a certificate from nowhere")


def test_xe_host_get_server_certificate(tmp_path):
    with running_world() as w:
        xs4 = w.host("xs4")  # a standalone host: no selector needed
        argv = [XE, "-s", xs4.address_for_url, "-p", str(xs4.port), "-u", "root"]
        argv += ["-pw", "xenroot", "host-get-server-certificate"]
        env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
        env["HOME"] = str(tmp_path)
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.endswith("-----END CERTIFICATE-----\n")
        assert xencenter_der(r.stdout[:-1]) == presented_der(xs4)


_BLOCK = "-----BEGIN CERTIFICATE-----\nQUJD\nREVG\n-----END CERTIFICATE-----"


@given(
    before=st.lists(st.sampled_from(["junk", "", "-----BEGIN PRIVATE KEY-----", "a b"])),
    after=st.lists(st.sampled_from(["", "-----END PRIVATE KEY-----", _BLOCK, "x"])),
)
def test_trim_cert_keeps_the_first_certificate_block_only(before, after):
    text = "\n".join([*before, _BLOCK, *after])
    assert trim_cert(text) == _BLOCK
    assert trim_cert("\n".join(before)) == ""
    assert trim_cert("-----BEGIN CERTIFICATE-----\nQUJD\n") == ""  # no footer
