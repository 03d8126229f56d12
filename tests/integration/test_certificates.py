"""Certificates and TLS per release (docs/certificates-updates.md): Certificate rows made at
install, host.install_server_certificate's checks with xapi's errors, the served
certificate following install/reset (read by an ``ssl`` client), CA certificates, TLS
verification -- over the XenAPI package."""

from __future__ import annotations

import socket
import ssl

import pytest
import XenAPI
from cert_kit import make_cert, pool_of
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from session_kit import failure, logged_in

from xapi_sim import x509cert
from xapi_sim.testing import running_world


@pytest.fixture(scope="module", params=["stockholm", "nile", "xcp-ng-8.3"])
def world(request):
    with logged_in(pool_of(request.param)) as (w, s):
        yield request.param, w, s


def served_fingerprint(w, name: str) -> str:
    h = w.host(name)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((h.address_for_url, h.port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509cert.pp_hash(x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()))


def host_certs(s, href):
    return [r for r in s.xenapi.Certificate.get_all_records().values() if r["host"] == href]


def test_install_time_rows_match_served_certificate(world):
    rel, w, s = world
    for name in ("h1", "h2"):
        href = s.xenapi.host.get_by_name_label(name)[0]
        (row,) = host_certs(s, href)
        assert row["fingerprint"] == served_fingerprint(w, name)
        if rel == "stockholm":  # 8.2 CU1: the basic fields only
            assert "type" not in row and "name" not in row
        else:
            assert row["type"] == "host" and row["name"] == ""
        assert s.xenapi.host.get_certificates(href) == [
            r for r, v in s.xenapi.Certificate.get_all_records().items() if v["host"] == href
        ]


def test_install_server_certificate_is_served_then_reset(world):
    rel, w, s = world
    href = s.xenapi.host.get_by_name_label("h2")[0]
    before = served_fingerprint(w, "h2")
    cpem, kpem, cert = make_cert()
    s.xenapi.host.install_server_certificate(href, cpem, kpem, "")
    fp = x509cert.pp_hash(cert.fingerprint(hashes.SHA256()))
    (row,) = host_certs(s, href)
    assert row["fingerprint"] == fp != before
    assert served_fingerprint(w, "h2") == fp  # the listener presents it now
    if rel == "stockholm":
        # 8.2 CU1 has no host.reset_server_certificate
        assert failure(s.xenapi.host.reset_server_certificate, href)[0] == (
            "MESSAGE_METHOD_UNKNOWN"
        )
        return
    s.xenapi.host.reset_server_certificate(href)
    (row,) = host_certs(s, href)
    assert row["fingerprint"] not in (fp, before)
    assert served_fingerprint(w, "h2") == row["fingerprint"]


def test_install_server_certificate_errors(world):
    rel, w, s = world
    href = s.xenapi.host.get_by_name_label("h1")[0]
    before = host_certs(s, href)
    cpem, kpem, _ = make_cert()
    inst = s.xenapi.host.install_server_certificate
    assert failure(inst, href, cpem, "not a key", "") == ["SERVER_CERTIFICATE_KEY_INVALID"]
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _, small_pem, _ = make_cert(small)
    assert failure(inst, href, cpem, small_pem, "") == [
        "SERVER_CERTIFICATE_KEY_RSA_LENGTH_NOT_SUPPORTED",
        "1024",
    ]
    ec_cert, ec_key, _ = make_cert(ec.generate_private_key(ec.SECP256R1()))
    algo = "1.2.840.10045.2.1" if rel == "stockholm" else "P256"
    assert failure(inst, href, ec_cert, ec_key, "") == [
        "SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED",
        algo,
    ]
    assert failure(inst, href, "junk", kpem, "") == ["SERVER_CERTIFICATE_INVALID"]
    other_pem, _, _ = make_cert()
    assert failure(inst, href, other_pem, kpem, "") == ["SERVER_CERTIFICATE_KEY_MISMATCH"]
    old_pem, old_key, old = make_cert(days=(-30, -1))
    code, now, not_after = failure(inst, href, old_pem, old_key, "")
    assert code == "SERVER_CERTIFICATE_EXPIRED"
    assert not_after == old.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert now.endswith("Z") and now > not_after
    # the release's order: an expired certificate of another key
    code = failure(inst, href, old_pem, kpem, "")[0]
    first = (
        "SERVER_CERTIFICATE_KEY_MISMATCH" if rel == "stockholm" else "SERVER_CERTIFICATE_EXPIRED"
    )
    assert code == first
    sha1_pem, sha1_key, _ = make_cert(algo=hashes.SHA384())
    assert failure(inst, href, sha1_pem, sha1_key, "") == [
        "SERVER_CERTIFICATE_SIGNATURE_NOT_SUPPORTED"
    ]
    assert failure(inst, href, cpem, kpem, "garbage") == ["SERVER_CERTIFICATE_CHAIN_INVALID"]
    assert failure(inst, "OpaqueRef:nope", cpem, kpem, "")[0] == "HANDLE_INVALID"
    assert host_certs(s, href) == before  # a failed call changes nothing


def test_ca_certificates(world):
    rel, w, s = world
    ca_pem, _, ca = make_cert(cn="Example CA")
    inst = s.xenapi.pool.install_ca_certificate if rel != "stockholm" else None
    old = s.xenapi.pool.certificate_install
    if inst is None:
        assert failure(s.xenapi.pool.install_ca_certificate, "x.pem", ca_pem)[0] == (
            "MESSAGE_METHOD_UNKNOWN"
        )
        inst = old
    assert failure(inst, "bad name", ca_pem) == ["CERTIFICATE_NAME_INVALID", "bad name"]
    assert failure(inst, ".hidden.pem", ca_pem)[0] == "CERTIFICATE_NAME_INVALID"
    inst("ca1.pem", ca_pem)
    assert s.xenapi.pool.certificate_list() == ["ca1.pem"]
    assert failure(inst, "ca1.pem", ca_pem) == ["CERTIFICATE_ALREADY_EXISTS", "ca1.pem"]
    if rel != "stockholm":
        (row,) = [r for r in s.xenapi.Certificate.get_all_records().values() if r["type"] == "ca"]
        assert row["name"] == "ca1.pem" and row["host"] == "OpaqueRef:NULL"
        assert row["fingerprint"] == x509cert.pp_hash(ca.fingerprint(hashes.SHA256()))
        assert failure(inst, "ca2.pem", "junk") == ["CA_CERTIFICATE_INVALID"]
        old_pem, _, _ = make_cert(days=(-9, -2))
        assert failure(inst, "ca2.pem", old_pem)[0] == "CA_CERTIFICATE_EXPIRED"
    assert failure(s.xenapi.pool.certificate_uninstall, "nope.pem") == [
        "CERTIFICATE_DOES_NOT_EXIST",
        "nope.pem",
    ]
    s.xenapi.pool.certificate_uninstall("ca1.pem")
    assert s.xenapi.pool.certificate_list() == []


def test_enable_tls_verification(world):
    rel, w, s = world
    pool = s.xenapi.pool.get_all()[0]
    if rel == "stockholm":
        assert failure(s.xenapi.pool.enable_tls_verification)[0] == "MESSAGE_METHOD_UNKNOWN"
        return
    db = w.world.pools[0].db
    with db.lock:  # as a pool upgraded from 8.2 leaves it
        for h, _ in list(db.rows("host")):
            db.set("host", h, "tls_verification_enabled", False)
        db.set("pool", pool, "tls_verification_enabled", False)
    s.xenapi.pool.enable_tls_verification()
    assert s.xenapi.pool.get_tls_verification_enabled(pool) is True
    for h in s.xenapi.host.get_all():
        assert s.xenapi.host.get_tls_verification_enabled(h) is True


def test_dundee_has_no_certificate_class():
    with running_world(pool_of("dundee")) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        assert failure(s.xenapi.Certificate.get_all)[0] == "MESSAGE_METHOD_UNKNOWN"
        href = s.xenapi.host.get_all()[0]
        assert failure(s.xenapi.host.install_server_certificate, href, "a", "b", "")[0] == (
            "MESSAGE_METHOD_UNKNOWN"
        )
        # the old CA library exists since 6.x
        ca_pem, _, _ = make_cert(cn="CA")
        s.xenapi.pool.certificate_install("old.pem", ca_pem)
        assert s.xenapi.pool.certificate_list() == ["old.pem"]


def test_concurrent_installs_leave_one_certificate_served():
    """Many clients install and reset at once: one row per host, and it is the one
    served."""
    import threading

    with running_world(pool_of("nile")) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        href = s.xenapi.host.get_by_name_label("h1")[0]
        certs = [make_cert() for _ in range(4)]
        errors = []

        def work(i):
            c = XenAPI.Session(w.master_url())
            c.xenapi.login_with_password("root", "xenroot")
            try:
                for _ in range(3):
                    if i % 2:
                        c.xenapi.host.reset_server_certificate(href)
                    else:
                        cpem, kpem, _ = certs[i]
                        c.xenapi.host.install_server_certificate(href, cpem, kpem, "")
                    served_fingerprint(w, "h1")
            except Exception as e:  # noqa: BLE001
                errors.append(e)
            finally:
                c.xenapi.session.logout()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        (row,) = host_certs(s, href)
        assert served_fingerprint(w, "h1") == row["fingerprint"]


def test_upgraded_host_gets_its_certificate_at_start():
    """A 7.1 host installed with 8.2 CU1 (sim.host_install) has a Certificate row after its
    xapi start, and serves that certificate."""
    with running_world(pool_of("ely")) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        before = served_fingerprint(w, "h1")
        h1 = s.xenapi.host.get_by_name_label("h1")[0]
        h2 = s.xenapi.host.get_by_name_label("h2")[0]
        for h in (h1, h2):  # the master first, as a rolling pool upgrade does
            s.xenapi.host.disable(h)
            s.xenapi_request("sim.host_install", (h, "stockholm"))
            s = XenAPI.Session(w.master_url())
            s.xenapi.login_with_password("root", "xenroot")
        (row,) = host_certs(s, h1)
        assert row["fingerprint"] == served_fingerprint(w, "h1") != before
        assert len(host_certs(s, h2)) == 1
