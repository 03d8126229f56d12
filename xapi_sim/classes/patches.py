"""``pool_patch`` before ``pool_update`` (6.5 SP1, 7.0): patches uploaded with
``PUT /pool_patch_upload`` (``handlers/patch_upload.py``), prechecked, applied per host
and pool-wide, cleaned and destroyed (docs/certificates-updates.md).

Mirrors xen-api ``ocaml/xapi/xapi_pool_patch.ml`` at Dundee (``203781a993^``):

- the upload: a patch's ``<info>`` (``patch_info_of_xml``: ``name-label``,
  ``name-description``, ``version``, ``uuid`` -- lower-cased, must be a uuid --,
  ``after-apply-guidance`` space-separated) makes a ``pool_patch`` whose uuid is the
  patch's; the same uuid again is PATCH_ALREADY_EXISTS [uuid] unless the first was cleaned
  (then it takes the new file). A real patch is a signed archive whose script prints the
  ``<info>``; here the uploaded body *is* the ``<info>`` document (INVALID_PATCH otherwise).
- ``precheck``: CANNOT_FIND_PATCH once cleaned; answers the script's output ("" here).
- ``apply``: PATCH_ALREADY_APPLIED [patch] on a host that has it, then the precheck, then a
  ``host_patch`` (applied, timestamp) -- ``write_patch_applied_db``.
- ``pool_apply``: ``apply`` on every host without it, then ``pool_applied``.
- ``clean`` / ``clean_on_host`` / ``pool_clean``: the file goes (here: the patch is marked
  cleaned, in memory -- xapi's ``filename`` field is internal).
- ``destroy``: PATCH_IS_APPLIED while any host has a ``host_patch`` of it.
"""

from __future__ import annotations

import logging
import re
import threading

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ..errors import Failure

log = logging.getLogger(__name__)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_GUIDANCES = ("restartHVM", "restartPV", "restartHost", "restartXAPI")


class CleanedPatches:
    """Per world: the refs of patches whose file was cleaned."""

    def __init__(self, world):
        self._lock = threading.Lock()
        self._refs: set[str] = set()

    def mark(self, ref: str, cleaned: bool) -> None:
        with self._lock:
            if cleaned:
                self._refs.add(ref)
            else:
                self._refs.discard(ref)

    def __contains__(self, ref: str) -> bool:
        with self._lock:
            return ref in self._refs


def parse_patch_info(data: bytes) -> dict:
    """``patch_info_of_xml``; any problem is INVALID_PATCH [reason]."""
    try:
        root = ElementTree.fromstring(data.strip())
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as e:
        raise Failure("INVALID_PATCH", str(e)) from None
    if root.tag != "info":
        raise Failure("INVALID_PATCH", "Bad_patch_info")
    a = root.attrib
    for key in ("name-label", "name-description", "version", "uuid", "after-apply-guidance"):
        if key not in a:
            raise Failure("INVALID_PATCH", f'Missing_patch_key("{key}")')
    uuid = a["uuid"].lower()
    if not _UUID.fullmatch(uuid):
        raise Failure("INVALID_PATCH", f'Invalid_patch_uuid("{uuid}")')
    guidance = [g for g in a["after-apply-guidance"].split(" ") if g]
    if any(g not in _GUIDANCES for g in guidance):
        raise Failure("INVALID_PATCH", "Bad_patch_info")
    return {
        "uuid": uuid,
        "name_label": a["name-label"],
        "name_description": a["name-description"],
        "version": a["version"],
        "after_apply_guidance": guidance,
    }


def upload(world, db, data: bytes) -> str:
    """The upload handler's database part: the patch's ref."""
    info = parse_patch_info(data)
    cleaned = world.service(CleanedPatches)
    ref = db.uuids["pool_patch"].get(info["uuid"])
    if ref is not None:
        if ref not in cleaned:
            raise Failure("PATCH_ALREADY_EXISTS", info["uuid"])
        db.set("pool_patch", ref, "size", len(data))
        world.txm.on_commit(lambda: cleaned.mark(ref, False))
        return ref
    return world.new_row(
        db, "pool_patch", **info, size=len(data), pool_applied=False, other_config={}
    )


def _applied(db, patch: str, host: str) -> bool:
    return any(
        db.get("host_patch", hp)["host"] == host
        for hp in db.get("pool_patch", patch)["host_patches"]
        if db.exists("host_patch", hp)
    )


def precheck(call, patch: str, host: str) -> str:
    db = call.db
    db.get("pool_patch", patch)
    db.get("host", host)
    if patch in call.world.service(CleanedPatches):
        raise Failure("CANNOT_FIND_PATCH")
    return ""


def apply(call, patch: str, host: str) -> str:
    db = call.db
    db.get("pool_patch", patch)
    db.get("host", host)
    if _applied(db, patch, host):
        raise Failure("PATCH_ALREADY_APPLIED", patch)
    out = precheck(call, patch, host)
    record_applied(call, patch, host)
    return out


def record_applied(call, patch: str, host: str) -> str:
    """The ``host_patch`` row saying ``patch`` is applied on ``host`` now (``host.patches``
    follows: the store keeps the relation); also made when an update applies whose twin
    pool_patch exists (``Xapi_pool_update``)."""
    return call.world.new_row(
        call.db,
        "host_patch",
        host=host,
        pool_patch=patch,
        applied=True,
        timestamp_applied=call.world.clock.now_ts(),
        other_config={},
    )


def pool_apply(call, patch: str) -> None:
    db = call.db
    db.get("pool_patch", patch)
    for h, _ in list(db.rows("host")):
        if not _applied(db, patch, h):
            apply(call, patch, h)
    db.set("pool_patch", patch, "pool_applied", True)


def clean(call, patch: str) -> None:
    call.db.get("pool_patch", patch)
    cleaned = call.world.service(CleanedPatches)
    call.world.txm.on_commit(lambda: cleaned.mark(patch, True))


def destroy(call, patch: str) -> None:
    db = call.db
    row = db.get("pool_patch", patch)
    if any(db.exists("host_patch", hp) for hp in row["host_patches"]):
        raise Failure("PATCH_IS_APPLIED")
    db.remove("pool_patch", patch)
