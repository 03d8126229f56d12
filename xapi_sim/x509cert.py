"""X.509 facts for the Certificate class and host.install_server_certificate (pure).

- ``pp_hash``: a digest as xapi prints fingerprints, uppercase hex octets joined by ``:``
  (xen-api ``ocaml/xapi/certificates.ml`` ``pp_hash``).
- ``self_signed``: a host's self-signed server certificate, a pure function of a seed, a
  name and its validity: the key is derived from the seed (EC P-256) and the signature is
  deterministic (RFC 6979), so the certificate a ``Certificate`` row describes can be made
  again from the row after a restart. xapi's own (``ocaml/gencert/selfcert.ml`` ``host``)
  is RSA 2048 with the management IP as a SAN; ours names the host's hostname (the address
  is given at listen time, after install) and uses EC because it is made in a millisecond.
- ``validate_server``: ``Gencertlib.Lib.install_server_certificate``'s checks with their
  errors and parameters, in the order of the release (``ocaml/gencert/lib.ml``: at
  1.249-lcm the key match comes before the validity check; from 1.290 on, validity first).
- ``validate_ca``: ``Gencertlib.Lib.validate_not_expired`` for ``pool.install_ca_certificate``
  (xapi 1.290 on; CA_CERTIFICATE_INVALID / _NOT_VALID_YET / _EXPIRED).

``cryptography`` is imported inside the functions: a world that never touches certificates
does not load it (as ``wire/tls.py``).
"""

from __future__ import annotations

import datetime
import hashlib

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# SECP256R1's group order: a derived private scalar is taken modulo it
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class CertError(Exception):
    """A refusal: ``code`` and ``params`` as xapi raises them."""

    def __init__(self, code: str, *params: str):
        super().__init__(code, *params)
        self.code = code
        self.params = list(params)


def pp_hash(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def rfc3339(t: datetime.datetime) -> str:
    """``Ptime.to_rfc3339 ~tz_offset_s:0``: seconds precision, ``Z``."""
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_certs(pem: str | bytes) -> list:
    from cryptography import x509

    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificates(data)


def facts(cert_pem: str | bytes) -> tuple[str, datetime.datetime, datetime.datetime]:
    """(SHA-256 fingerprint as xapi prints it, not_before, not_after) of the first
    certificate of ``cert_pem``."""
    from cryptography.hazmat.primitives import hashes

    cert = _load_certs(cert_pem)[0]
    return (
        pp_hash(cert.fingerprint(hashes.SHA256())),
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
    )


def self_signed(
    seed: str, name: str, not_before: datetime.datetime, not_after: datetime.datetime
) -> bytes:
    """The certificate (then its PKCS#8 key) made from ``seed``: the same arguments give the
    same bytes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    digest = hashlib.sha256(b"xapi-sim host certificate\0" + seed.encode()).digest()
    key = ec.derive_private_key(
        int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1()
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(digest[:16], "big") >> 1 or 1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# key type names of ``X509.Key_type.to_string`` (ocaml-x509), by curve
_CURVES = {"secp224r1": "P224", "secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}
# the algorithm OIDs ocaml-x509 0.11 (1.249-lcm) did not know: "Unknown algorithm <oid>"
_OIDS = {"ec": "1.2.840.10045.2.1", "ed25519": "1.3.101.112", "ed448": "1.3.101.113"}


def _key(pem: str, oid_style: bool):
    """``validate_private_key``: a PEM PKCS#8 (or PKCS#1) RSA key of 2048..4096 bits."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise CertError("SERVER_CERTIFICATE_KEY_INVALID") from None
    except Exception:  # noqa: BLE001  -- an unsupported key type is a refusal, not a crash
        raise CertError("SERVER_CERTIFICATE_KEY_INVALID") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048 or key.key_size > 4096:
            raise CertError("SERVER_CERTIFICATE_KEY_RSA_LENGTH_NOT_SUPPORTED", str(key.key_size))
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        kind = "ec"
        name = _CURVES.get(key.curve.name, key.curve.name)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        kind, name = "ed25519", "ED25519"
    elif isinstance(key, ed448.Ed448PrivateKey):
        kind, name = "ed448", "ED448"
    else:
        kind, name = "", type(key).__name__
    raise CertError(
        "SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED",
        _OIDS.get(kind, name) if oid_style else name,
    )


def _validity(cert, now: datetime.datetime, not_yet: str, expired: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertError(not_yet, rfc3339(now), rfc3339(cert.not_valid_before_utc))
    if now > cert.not_valid_after_utc:
        raise CertError(expired, rfc3339(now), rfc3339(cert.not_valid_after_utc))


def _one_cert(pem: str, code: str):
    try:
        certs = _load_certs(pem)
    except ValueError:
        raise CertError(code) from None
    if not certs:
        raise CertError(code)
    return certs[0]


def validate_server(
    certificate: str,
    private_key: str,
    chain: str,
    now: datetime.datetime,
    validity_first: bool = True,
) -> bytes:
    """Check an install_server_certificate request; returns what the server then presents
    (key, certificate, chain as PEM). ``validity_first`` is False for the 8.2 (1.249) order."""
    from cryptography.hazmat.primitives import hashes, serialization

    key = _key(private_key, oid_style=not validity_first)
    cert = _one_cert(certificate, "SERVER_CERTIFICATE_INVALID")

    def keys_match():
        pub = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if pub != theirs:
            raise CertError("SERVER_CERTIFICATE_KEY_MISMATCH")

    def validity():
        _validity(cert, now, "SERVER_CERTIFICATE_NOT_VALID_YET", "SERVER_CERTIFICATE_EXPIRED")

    for step in (validity, keys_match) if validity_first else (keys_match, validity):
        step()
    if not isinstance(cert.signature_hash_algorithm, hashes.SHA256):
        raise CertError("SERVER_CERTIFICATE_SIGNATURE_NOT_SUPPORTED")
    if chain:
        _one_cert(chain, "SERVER_CERTIFICATE_CHAIN_INVALID")
    # the file xapi writes: key, leaf, chain joined by blank lines; ssl wants the leaf
    # first, then the chain, and the key (any order in one file is fine for OpenSSL)
    parts = [certificate.strip(), *([chain.strip()] if chain else []), private_key.strip()]
    return ("\n".join(parts) + "\n").encode()


def validate_ca(cert_pem: str, now: datetime.datetime):
    """pool.install_ca_certificate's check (xapi 1.290 on): one PEM certificate in force."""
    cert = _one_cert(cert_pem, "CA_CERTIFICATE_INVALID")
    _validity(cert, now, "CA_CERTIFICATE_NOT_VALID_YET", "CA_CERTIFICATE_EXPIRED")
    return cert


def ts_of(t: datetime.datetime) -> str:
    """A datetime in the datamodel's wire form (``YYYYMMDDTHH:MM:SSZ``)."""
    return t.astimezone(datetime.UTC).strftime("%Y%m%dT%H:%M:%SZ")


def from_ts(ts: str) -> datetime.datetime:
    return datetime.datetime.strptime(ts, "%Y%m%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
