"""TLS for every simulated host: a self-signed certificate per host, made on first need.

A real XenServer host serves HTTPS with a self-signed certificate it generates at first
boot (``/etc/xensource/xapi-ssl.pem``: certificate and key in one PEM file, the host's
address as its name). Here each host gets the same: an ECDSA P-256 key (made in about a
millisecond, unlike RSA) and a certificate whose subject alternative name is the host's
address -- an IP SAN for an IP, a DNS SAN otherwise -- valid for ten years.

``CertStore`` keeps them in a directory, one ``<host uuid>.pem`` each (mode 0600, written
atomically), whose first line -- outside the PEM blocks, ignored by TLS libraries -- names
the address the certificate was made for. A file naming the host's current address is
reused at the next start, without parsing the certificate; otherwise a new one is made.
Without a directory a temporary one is used and removed on ``cleanup()``.

Nothing is made before a host's first TLS client: ``TlsSource.ready`` is None until
``context()`` (blocking: called on a worker, never the event loop) has loaded or made the
host's certificate. So a server that only ever sees plain HTTP does not even import the
``cryptography`` package. ``FixedTls`` is one context for every host
(``--tls-cert``/``--tls-key``).

From 8.2 CU1 on the API says which certificate a host presents (its ``Certificate`` row,
``install_certs.py``): a ``TlsSource`` given a ``provider`` asks it for the current
certificate's fingerprint and PEM, keeps that PEM as ``<host uuid>.<fingerprint>.pem`` (so a
restart with ``--state-dir`` finds an installed certificate again) and serves it;
``invalidate()`` (after ``host.install_server_certificate`` / ``reset_server_certificate``
commit) makes the next TLS client load the new one. Connections already open keep theirs.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

VALID_DAYS = 3650


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def san_for(address: str):
    """The subject alternative name entry for a host address (IP or DNS name)."""
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address)


def make_pem(address: str, common_name: str | None = None) -> bytes:
    """A self-signed certificate for ``address`` followed by its private key, as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or address)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([san_for(address)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _label(host_uuid: str, address: str) -> bytes:
    return f"xapi-sim certificate of host {host_uuid} for {address}\n".encode()


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".cert-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # the temporary file never existed; the original error is re-raised
        raise


class CertStore:
    """Per-host certificate files in ``directory`` (a temporary one when None)."""

    def __init__(self, directory: str | None = None):
        self._dir = directory
        self._temporary = directory is None
        self._lock = threading.Lock()

    @property
    def directory(self) -> str:
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="xapi-sim-certs-")
            return self._dir

    def path(self, host_uuid: str) -> str:
        return os.path.join(self.directory, f"{host_uuid}.pem")

    def ensure(self, host_uuid: str, address: str) -> str:
        """The path of a certificate file for the host naming ``address`` (made if the file
        is missing, unreadable or names another address)."""
        path = self.path(host_uuid)
        label = _label(host_uuid, address)
        try:
            with open(path, "rb") as fh:
                if fh.readline() == label:
                    return path
        except OSError:
            pass  # no usable kept certificate: a new one is made below
        _write_atomic(path, label + make_pem(address))
        return path

    def fingerprint_path(self, host_uuid: str, fingerprint: str) -> str:
        return os.path.join(
            self.directory, f"{host_uuid}.{fingerprint.replace(':', '').lower()}.pem"
        )

    def keep(self, host_uuid: str, fingerprint: str, pem: bytes) -> str:
        """Write ``pem`` as the host's certificate of ``fingerprint`` (atomically, 0600)."""
        path = self.fingerprint_path(host_uuid, fingerprint)
        _write_atomic(path, pem)
        return path

    def kept(self, host_uuid: str, fingerprint: str) -> str | None:
        path = self.fingerprint_path(host_uuid, fingerprint)
        return path if os.path.exists(path) else None

    def cleanup(self):
        """Remove the directory if it is a temporary one of ours."""
        with self._lock:
            d, self._dir = (self._dir, None) if self._temporary else (None, self._dir)
        if d:
            shutil.rmtree(d, ignore_errors=True)


Provider = Callable[[], "tuple[str, bytes | None] | None"]


class TlsSource:
    """One host's server context, made on first ``context()`` (thread-safe, once) and again
    after ``invalidate()``."""

    def __init__(
        self, store: CertStore, host_uuid: str, address: str, provider: Provider | None = None
    ):
        self.store = store
        self.host_uuid = host_uuid
        self.address = address
        self.provider = provider
        self.ready: ssl.SSLContext | None = None
        self.fingerprint: str | None = None  # of the certificate served (provider's)
        self._path: str | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return self._path or self.store.path(self.host_uuid)

    def invalidate(self) -> None:
        """The API changed the host's certificate: the next TLS client loads it."""
        with self._lock:
            self.ready = None

    def _choose(self) -> str:
        rec = self.provider() if self.provider is not None else None
        if rec is not None:
            fp, pem = rec
            path = self.store.keep(self.host_uuid, fp, pem) if pem else None
            path = path or self.store.kept(self.host_uuid, fp)
            if path is not None:
                self.fingerprint = fp
                return path
            log.warning(
                "host %s: certificate %s is not kept; serving a self-signed one",
                self.host_uuid,
                fp,
            )
        self.fingerprint = None
        return self.store.ensure(self.host_uuid, self.address)

    def context(self) -> ssl.SSLContext:
        ready = self.ready
        if ready is not None:
            return ready
        with self._lock:
            if self.ready is None:
                self._path = self._choose()
                self.ready = server_context(self._path)
            return self.ready


class FixedTls:
    """The same context for every host (``--tls-cert``/``--tls-key``)."""

    def __init__(self, context: ssl.SSLContext, path: str | None = None):
        self.ready = context
        self.path = path

    def invalidate(self) -> None:
        """One certificate for every host, whatever the API installs."""

    def context(self) -> ssl.SSLContext:
        return self.ready
