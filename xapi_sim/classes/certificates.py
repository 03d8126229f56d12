"""Certificates and TLS: host server certificates, the pool's CA certificates, TLS
verification (docs/certificates-updates.md).

Each handler exists only where the emulated release's datamodel has the message (the
dispatcher answers ``MESSAGE_METHOD_UNKNOWN`` elsewhere). Mirrors xen-api:

- ``host.install_server_certificate``: ``ocaml/xapi/xapi_host.ml`` at 1.249-lcm (8.2 CU1) and
  v23.30.0 (XenServer 8): HA_IS_ENABLED, then ``Gencertlib.Lib.install_server_certificate``'s
  checks (``ocaml/gencert/lib.ml``, ``x509cert.validate_server``), then the host's server
  ``Certificate`` rows are replaced by one for the new certificate, and the listener
  presents it (``Xapi_stunnel_server.reload``) once the call has committed.
- ``host.reset_server_certificate`` (v23.30.0 ``reset_server_certificate``): a new
  self-signed certificate, its row, and the listener presents it.
- ``host.emergency_reset_server_certificate``: the same on the host that receives the call
  (xapi writes the file and its row follows at the next ``Certificates_sync``; here the row
  follows at once).
- ``pool.install_ca_certificate`` / ``uninstall_ca_certificate`` (xapi 1.290 on; v23.30.0
  ``xapi_pool.ml`` ``certificate_install``: ``Gencertlib.Lib.validate_not_expired``, then
  ``Certificates.pool_install``, then a ``Certificate`` row of type ``ca``) and the older
  ``pool.certificate_install`` / ``certificate_uninstall`` / ``certificate_list`` (every
  release; ``ocaml/xapi/certificates.ml`` ``host_install``: CERTIFICATE_NAME_INVALID,
  CERTIFICATE_ALREADY_EXISTS, CERTIFICATE_DOES_NOT_EXIST). Where the release has typed
  Certificate rows the library is those rows; before, it is kept per pool in memory.
- ``pool.enable_tls_verification`` (v23.30.0 ``message_forwarding.ml``): every host's
  ``tls_verification_enabled``, then the pool's.
- ``host.get_server_certificate`` (every release; ``certificates.ml``
  ``get_server_certificate``, forwarded to the host by ``message_forwarding.ml``
  ``do_op_on``): the certificate the host's listener presents, as PEM.
"""

from __future__ import annotations

import datetime
import logging
import threading

from .. import install_certs, x509cert
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from .common import on_host

log = logging.getLogger(__name__)

_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _now(call) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(call.world.clock.time()), datetime.UTC)


def _fail(e: x509cert.CertError) -> Failure:
    return Failure(e.code, *e.params)


def _replace_host_certificate(call, host: str, uuid: str, pem: bytes, fields: dict) -> str:
    """``replace_host_certificate``: the new row, the old rows gone; the listener follows
    after the commit (no socket work under the pool's lock)."""
    db = call.db
    old = [r for r, _ in install_certs.host_certificates(db, host)]
    ref = call.world.new_row(db, "Certificate", uuid=uuid, **fields)
    for r in old:
        db.remove("Certificate", r)
    h = call.world.host(host)
    world = call.world
    fp = fields["fingerprint"]

    def present():
        world.service(install_certs.ServerCerts).put(h.uuid, ref, fp, pem)
        sim = world.simulator
        if sim is not None and h.port:
            sim.tls_for(h, h.address_for_url).invalidate()

    world.txm.on_commit(present)
    return ref


@api("host.install_server_certificate")
def install_server_certificate(call, host, certificate, private_key, certificate_chain):
    db = call.db
    db.get("host", host)
    if db.get("pool", call.pool.ref)["ha_enabled"]:
        raise Failure("HA_IS_ENABLED")
    # 1.249 (8.2 CU1) checks the key match before the validity; 1.290 on, validity first
    validity_first = "type" in db.schema.classes["Certificate"].fields
    try:
        pem = x509cert.validate_server(
            certificate, private_key, certificate_chain, _now(call), validity_first
        )
        fp, nb, na = x509cert.facts(certificate)
    except x509cert.CertError as e:
        raise _fail(e) from None
    fields = install_certs.host_cert_fields(db, host, fp, nb, na)
    _replace_host_certificate(call, host, call.world.ids.uuid(), pem, fields)


def _reset(call, host):
    h = call.world.host(host)
    uuid, pem, fields = install_certs.new_self_signed(call.world, call.db, h)
    _replace_host_certificate(call, host, uuid, pem, fields)


@api("host.reset_server_certificate")
def reset_server_certificate(call, host):
    call.db.get("host", host)
    _reset(call, host)


@api("host.emergency_reset_server_certificate")
def emergency_reset_server_certificate(call):
    _reset(call, call.host.ref)


# -- the pool's CA certificates -----------------------------------------------------------


class CaLibrary:
    """Before typed Certificate rows (8.2 CU1 and earlier): each pool's CA certificates by
    name (``/etc/stunnel/certs`` on every host, kept in step by ``pool_sync``)."""

    def __init__(self, world):
        self._lock = threading.Lock()
        self._by_pool: dict[str, dict[str, str]] = {}

    def names(self, pool_ref: str) -> list[str]:
        with self._lock:
            return sorted(self._by_pool.get(pool_ref, {}))

    def add(self, pool_ref: str, name: str, cert: str) -> None:
        with self._lock:
            self._by_pool.setdefault(pool_ref, {})[name] = cert

    def remove(self, pool_ref: str, name: str) -> None:
        with self._lock:
            self._by_pool.get(pool_ref, {}).pop(name, None)


def _typed(db) -> bool:
    c = db.schema.classes.get("Certificate")
    return c is not None and "type" in c.fields


def _ca_rows(db, name: str | None = None) -> list:
    return [
        (r, row)
        for r, row in db.rows("Certificate")
        if row["type"] == "ca" and (name is None or row["name"] == name)
    ]


def _ca_names(call) -> list[str]:
    if _typed(call.db):
        return sorted({row["name"] for _, row in _ca_rows(call.db)})
    return call.world.service(CaLibrary).names(call.pool.ref)


def _validate_name(name: str) -> None:
    """``Certificates.is_unsafe``: a leading dot, no ``.pem`` suffix, or another character
    than ``[A-Za-z0-9._-]``."""
    if not name or name[0] == "." or not name.endswith(".pem") or set(name) - _SAFE:
        raise Failure("CERTIFICATE_NAME_INVALID", name)


@api("pool.certificate_install", "pool.install_ca_certificate")
def certificate_install(call, name, cert):
    db = call.db
    typed = _typed(db)
    parsed = None
    if typed:
        try:
            parsed = x509cert.validate_ca(cert, _now(call))
        except x509cert.CertError as e:
            raise _fail(e) from None
    _validate_name(name)
    if name in _ca_names(call):
        raise Failure("CERTIFICATE_ALREADY_EXISTS", name)
    if typed:
        assert parsed is not None
        fp, nb, na = x509cert.facts(cert)
        call.world.new_row(
            db,
            "Certificate",
            name=name,
            type="ca",
            host=NULL_REF,
            fingerprint=fp,
            not_before=x509cert.ts_of(nb),
            not_after=x509cert.ts_of(na),
        )
    else:
        lib, pool = call.world.service(CaLibrary), call.pool.ref
        call.world.txm.on_commit(lambda: lib.add(pool, name, cert))


@api("pool.certificate_uninstall", "pool.uninstall_ca_certificate")
def certificate_uninstall(call, name):
    _validate_name(name)
    if name not in _ca_names(call):
        raise Failure("CERTIFICATE_DOES_NOT_EXIST", name)
    if _typed(call.db):
        for r, _ in _ca_rows(call.db, name):
            call.db.remove("Certificate", r)
    else:
        lib, pool = call.world.service(CaLibrary), call.pool.ref
        call.world.txm.on_commit(lambda: lib.remove(pool, name))


@api("pool.certificate_list")
def certificate_list(call):
    return _ca_names(call)


# -- TLS verification ----------------------------------------------------------------------


@api("pool.enable_tls_verification")
def enable_tls_verification(call):
    """Every host verifies its peers from now on, then the pool says so."""
    db = call.db
    for h, _ in list(db.rows("host")):
        db.set("host", h, "tls_verification_enabled", True)
    db.set("pool", call.pool.ref, "tls_verification_enabled", True)


_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


def trim_cert(text: str) -> str:
    """The first certificate block of a PEM file, its lines joined by ``\\n`` with no
    newline after the footer (xen-api 1.9 ``certificates.ml`` ``trim_cert``; 8.x
    ``Gencertlib.Pem``'s ``host_cert`` is the same text); "" when there is none."""
    lines = text.split("\n")
    begin = next((i for i, line in enumerate(lines) if line == _BEGIN), None)
    if begin is None:
        return ""
    end = next((i for i in range(begin, len(lines)) if lines[i] == _END), None)
    return "" if end is None else "\n".join(lines[begin : end + 1])


@api("host.get_server_certificate")
def get_server_certificate(call, host):
    """The certificate ``host`` presents to TLS clients (XenCenter's upgrade precheck
    ``CertificateKeyLengthCheck`` reads its key size). Forwarded to the host: HOST_OFFLINE
    when it is not live. A file that cannot be read or holds no certificate is
    CERTIFICATE_LIBRARY_CORRUPT (``raise_library_corrupt``)."""
    h = on_host(call, host)
    world = call.world
    sim = world.simulator
    if sim is None or not h.port:  # no listener (a world without a server): the row's own
        rec = install_certs.served(world, h)
        if rec is None or rec[1] is None:
            raise Failure("CERTIFICATE_LIBRARY_CORRUPT")
        return trim_cert(rec[1].decode("ascii"))
    src = sim.tls_for(h, h.address_for_url)
    world.txm.checkpoint()  # the file is read with no database lock held
    try:
        src.context()  # a host's certificate is made when its first TLS client comes
        with open(src.path, encoding="ascii") as f:
            pem = trim_cert(f.read())
    except (OSError, ValueError, TypeError) as e:
        log.warning("host.get_server_certificate: cannot read %s: %s", src.path, e)
        raise Failure("CERTIFICATE_LIBRARY_CORRUPT") from None
    if not pem:
        raise Failure("CERTIFICATE_LIBRARY_CORRUPT")
    return pem
