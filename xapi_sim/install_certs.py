"""A host's server certificate as the installer leaves it, and which certificate it serves.

From 8.2 CU1 (the ``Certificate`` class, xen-api 1.249) every host has a ``Certificate`` row
for the certificate its TLS listener presents: made at install (firstboot's
``generate_ssl_cert``; xapi's start records it, ``ocaml/xapi/certificates_sync.ml``), with
``host``, ``not_before``, ``not_after``, ``fingerprint`` (SHA-256, ``pp_hash``) and from xapi
1.290 (XenServer 8) ``name`` = "" and ``type`` = ``host``. Validity: ten years
(``Xapi_globs.cert_expiration_days``).

``ServerCerts`` (one per world) keeps the PEM of each host's current certificate in
memory: the self-signed ones can always be made again from their row
(``x509cert.self_signed`` is deterministic in the row's uuid), installed ones
(``host.install_server_certificate``) only from the copy the listener's certificate store
keeps by fingerprint (``wire/tls.py``). ``served(world, host)`` answers the listener: the
fingerprint of the host's current certificate and its PEM, or None for a release without
the class (the listener then keeps its per-address self-signed certificate).
"""

from __future__ import annotations

import datetime
import logging
import threading

from . import x509cert
from .runtime import HostRuntime

log = logging.getLogger(__name__)

VALID_DAYS = 3650  # Xapi_globs.cert_expiration_days


class ServerCerts:
    """Per world: host uuid -> (Certificate ref, fingerprint, PEM or None)."""

    def __init__(self, world):
        self.world = world
        self._lock = threading.Lock()  # a leaf lock: dict updates only
        self._by_host: dict[str, tuple[str, str, bytes | None]] = {}

    def put(self, host_uuid: str, ref: str, fingerprint: str, pem: bytes | None) -> None:
        with self._lock:
            self._by_host[host_uuid] = (ref, fingerprint, pem)

    def get(self, host_uuid: str) -> tuple[str, str, bytes | None] | None:
        with self._lock:
            return self._by_host.get(host_uuid)


def host_cert_fields(db, host_ref: str, fingerprint: str, nb, na) -> dict:
    """The fields of a host server certificate row the pool's release has."""
    c = db.schema.classes["Certificate"].fields
    fields = dict(
        host=host_ref,
        fingerprint=fingerprint,
        not_before=x509cert.ts_of(nb),
        not_after=x509cert.ts_of(na),
    )
    if "type" in c:
        fields["type"] = "host"
    if "name" in c:
        fields["name"] = ""
    return fields


def new_self_signed(world, db, h: HostRuntime) -> tuple[str, bytes, dict]:
    """A fresh self-signed certificate for ``h``: (row uuid, PEM, row fields)."""
    uuid = world.ids.uuid()
    now = datetime.datetime.fromtimestamp(int(world.clock.time()), datetime.UTC)
    nb, na = now, now + datetime.timedelta(days=VALID_DAYS)
    pem = x509cert.self_signed(uuid, h.name_label, nb, na)
    fp = x509cert.facts(pem)[0]
    return uuid, pem, host_cert_fields(db, h.ref, fp, nb, na)


def install_host_certificate(world, db, h: HostRuntime) -> None:
    """At install: the host's first server certificate and its row (releases with the
    class only)."""
    if "Certificate" not in db.schema.classes:
        return
    uuid, pem, fields = new_self_signed(world, db, h)
    ref = world.new_row(db, "Certificate", uuid=uuid, **fields)
    world.service(ServerCerts).put(h.uuid, ref, fields["fingerprint"], pem)


def sync_at_start(world, db, h: HostRuntime) -> None:
    """xapi's start (``certificates_sync.ml`` ``update``): a host of a release with the
    class that has no server certificate row -- it joined a pool, or was upgraded from a
    release without the class -- gets one; its listener presents it after the commit."""
    if "Certificate" not in db.schema.classes or host_certificates(db, h.ref):
        return
    install_host_certificate(world, db, h)
    sim = world.simulator
    if sim is not None and h.port:
        src = sim.tls_for(h, h.address_for_url)
        world.txm.on_commit(src.invalidate)


def host_certificates(db, host_ref: str) -> list[tuple[str, dict]]:
    """The host's server certificate rows (``type`` host where the release has it)."""
    if "Certificate" not in db.schema.classes:
        return []
    typed = "type" in db.schema.classes["Certificate"].fields
    return [
        (r, row)
        for r, row in db.rows("Certificate")
        if row["host"] == host_ref and (not typed or row["type"] == "host")
    ]


def served(world, h: HostRuntime) -> tuple[str, bytes | None] | None:
    """(fingerprint, PEM or None when only a kept copy can have it) of the certificate ``h``
    presents, or None where its release has no Certificate class (or no row for it)."""
    pool = h.pool
    if pool is None or "Certificate" not in pool.db.schema.classes:
        return None
    db = pool.db
    svc = world.service(ServerCerts)
    cached = svc.get(h.uuid)
    if cached is not None:
        ref, fp, pem = cached
        row = db.tables["Certificate"].get(ref)
        if row is not None and row["fingerprint"] == fp and row["host"] == h.ref:
            return fp, pem
    rows = host_certificates(db, h.ref)
    if not rows:
        return None
    ref, row = rows[-1]
    fp = row["fingerprint"]
    made = x509cert.self_signed(
        row["uuid"],
        h.name_label,
        x509cert.from_ts(row["not_before"]),
        x509cert.from_ts(row["not_after"]),
    )
    # an installed certificate is not made again: the listener's store keeps it by fingerprint
    pem = made if x509cert.facts(made)[0] == fp else None
    svc.put(h.uuid, ref, fp, pem)
    return fp, pem
