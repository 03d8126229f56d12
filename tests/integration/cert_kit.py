"""Certificates for the certificate tests: a pool of two hosts of one release, and a
self-signed certificate with its PKCS#8 key, as a client of host.install_server_certificate
would make them."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def pool_of(version: str) -> str:
    return (
        f'[[host]]\nname_label = "h1"\ncpu = "Haswell"\nversion = "{version}"\n'
        f'[[host]]\nname_label = "h2"\ncpu = "Haswell"\nversion = "{version}"\n'
        '[[pool]]\nname_label = "p"\nmaster = "h1"\nmembers = ["h2"]\n'
    )


def make_cert(key=None, days=(-1, 30), algo=None, cn="h1.example"):
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .sign(key, algo or hashes.SHA256())
    )
    kpem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), kpem, cert
