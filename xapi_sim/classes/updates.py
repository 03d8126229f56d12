"""Updates: ``pool_update`` (7.1 on), and ``Repository`` with ``pool.sync_updates`` /
``host.apply_updates`` and guidances (XenServer 8, XCP-ng 8.3); docs/certificates-updates.md.

Each handler exists where the emulated release's datamodel has the message.

**pool_update** (xen-api ``ocaml/xapi/xapi_pool_update.ml`` at 1.249-lcm and v23.30.0):

- ``introduce(vdi)``: the update's ``update.xml`` is read from the VDI (a real update ISO
  holds it as a file; here the VDI's data *begins* with the XML document, uploaded e.g.
  with ``PUT /import_raw_vdi``), parsed as ``parse_update_info`` does (INVALID_UPDATE
  ["missing <uuid> in update.xml"], ... ), then the ``pool_update`` and its ``pool_patch``
  twin (uuid with octets 4..7 zeroed, ``patch_uuid_of_update_uuid``) are made; an update
  of that uuid from another VDI is UPDATE_ALREADY_EXISTS [uuid]; one whose VDI was cleaned
  takes the new VDI.
- ``precheck(self, host)`` / ``apply(self, host)``: the public source has no body for them
  (the update script ran them); modelled from their errors: CANNOT_FIND_UPDATE once cleaned,
  UPDATE_ALREADY_APPLIED [update] on a host that has it; precheck answers ``ok``. Apply
  records the host in ``pool_update.hosts`` / ``host.updates``, a ``host_patch`` of the
  twin (``write_patch_applied_db``), and ``host.updates_requiring_reboot`` when the
  guidance is ``restartHost``.
- ``pool_apply``: UPDATE_ALREADY_APPLIED_IN_POOL [update] when every host has it, else
  ``apply`` on each other host; UPDATE_POOL_APPLY_FAILED [hosts] if any failed.
- ``pool_clean``: the VDI is destroyed and ``vdi`` set to NULL. ``destroy``:
  UPDATE_IS_APPLIED while a host has it, else the update and its twin go.
- ``pool_patch.precheck/apply/pool_apply/pool_clean/destroy`` of a twin forward to its
  update (``xapi_pool_patch.ml`` ``forward``; precheck and apply answer ""); before 7.1
  a pool_patch is a patch of its own (``patches.py``).

**Repositories** (v23.30.0 ``repository.ml``, ``xapi_pool.ml``, ``xapi_host.ml``):
``Repository.introduce`` (INVALID_BASE_URL [url] unless http(s) with a host,
INVALID_GPGKEY_PATH, REPOSITORY_ALREADY_EXISTS [ref] for the same name or binary URL),
``forget`` (REPOSITORY_IS_IN_USE while enabled), ``pool.set_repositories`` /
``add_repository`` / ``remove_repository``; ``pool.sync_updates`` (NO_REPOSITORY_ENABLED,
MULTIPLE_UPDATE_REPOSITORIES_ENABLED) returns the updateinfo hash of the simulated
catalogue (``data/update_catalogue.json``), sets the repository's ``hash``,
``pool.last_update_sync`` and each host's ``latest_synced_updates_applied``;
``host.apply_updates(host, hash)`` (UPDATEINFO_HASH_MISMATCH) installs it, sets
``last_software_update``, the host's (and, for ``RestartDeviceModel``, its running HVM
VMs') pending guidances, and answers [["UPDATES_REQUIRE_RECOMMENDED_GUIDANCE", g], ...].
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from importlib import resources
from urllib.parse import urlsplit

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from ..vdi_store import VdiStore
from . import patches, storage_vdi

log = logging.getLogger(__name__)

UPDATE_XML_MAX = 64 * 1024  # bytes of a VDI read for update.xml
_GUIDANCES = ("restartHVM", "restartPV", "restartHost", "restartXAPI")


def _catalogue() -> dict:
    with resources.files("xapi_sim").joinpath("data/update_catalogue.json").open("rb") as fh:
        return json.load(fh)


CATALOGUE = _catalogue()
CATALOGUE_HASH = hashlib.sha256(
    json.dumps(CATALOGUE["updates"], sort_keys=True).encode()
).hexdigest()
# Guidance (updateinfo.ml) -> the update_guidances enum
_HOST_GUIDANCE = {"RebootHost": "reboot_host", "RestartToolstack": "restart_toolstack"}


# -- pool_update ---------------------------------------------------------------------------


def parse_update_xml(data: bytes) -> dict:
    """``parse_update_info`` of the XML at the start of ``data``."""
    text = data.split(b"\0", 1)[0].strip()
    try:
        root = ElementTree.fromstring(text) if text else None
    except (ElementTree.ParseError, DefusedXmlException, ValueError):
        root = None
    if root is None or root.tag != "update":
        raise Failure("INVALID_UPDATE", "missing <update> in update.xml")
    a = root.attrib
    for attr in ("uuid", "name-label", "version"):
        if attr not in a:
            raise Failure("INVALID_UPDATE", f"missing <{attr}> in update.xml")
    try:
        size = int(a.get("installation-size", "0"))
    except ValueError:
        size = 0
    guidance = [g for g in a.get("after-apply-guidance", "").split(",") if g]
    if any(g not in _GUIDANCES for g in guidance):
        guidance = []  # Bad_update_info inside the try: no guidance
    desc = root.find("name-description")
    if desc is None or not (desc.text or ""):
        raise Failure("INVALID_UPDATE", "missing <name-description> in update.xml")
    key = a.get("key", "")
    return {
        "uuid": a["uuid"],
        "name_label": a["name-label"],
        "name_description": desc.text,
        "version": a["version"],
        "key": key.rsplit("/", 1)[-1] if key else "",
        "installation_size": size,
        "after_apply_guidance": guidance,
        "enforce_homogeneity": a.get("enforce-homogeneity", "false").lower() in ("true", "1"),
    }


def patch_uuid_of_update_uuid(uuid: str) -> str:
    """Octets 4..7 zeroed: ``xxxxxxxx-0000-0000-...``."""
    return uuid[:9] + "0000-0000" + uuid[18:]


def _fields(db, cls: str, **fields) -> dict:
    have = db.schema.classes[cls].fields
    return {k: v for k, v in fields.items() if k in have}


@api("pool_update.introduce")
def update_introduce(call, vdi):
    # read the VDI before the pool's lock is taken (no I/O under a lock)
    data = VdiStore.of(call.world).read(vdi, 0, UPDATE_XML_MAX)
    db = call.db
    with db.lock:
        row = db.get("VDI", vdi)
        if row["type"] == "cbt_metadata":
            raise Failure("VDI_INCOMPATIBLE_TYPE", vdi, "cbt_metadata")
        info = parse_update_xml(data)
        for ref, urow in db.rows("pool_update"):
            if urow["uuid"] != info["uuid"]:
                continue
            if not db.exists("VDI", urow["vdi"]):
                db.set("pool_update", ref, "vdi", vdi)
                return ref
            if urow["vdi"] != vdi:
                raise Failure("UPDATE_ALREADY_EXISTS", info["uuid"])
            return ref
        world = call.world
        ref = world.new_row(
            db,
            "pool_update",
            **_fields(db, "pool_update", **info, vdi=vdi, other_config={}, hosts=[]),
        )
        world.new_row(
            db,
            "pool_patch",
            **_fields(
                db,
                "pool_patch",
                uuid=patch_uuid_of_update_uuid(info["uuid"]),
                name_label=info["name_label"],
                name_description=info["name_description"],
                version=info["version"],
                size=info["installation_size"],
                pool_applied=False,
                after_apply_guidance=info["after_apply_guidance"],
                pool_update=ref,
                other_config={},
            ),
        )
        return ref


def _twin(db, update: str) -> str | None:
    for ref, row in db.rows("pool_patch"):
        if row.get("pool_update") == update:
            return ref
    return None


def _precheck(call, update: str, host: str) -> None:
    db = call.db
    row = db.get("pool_update", update)
    db.get("host", host)
    if host in row["hosts"]:
        raise Failure("UPDATE_ALREADY_APPLIED", update)
    if not db.exists("VDI", row["vdi"]):
        raise Failure("CANNOT_FIND_UPDATE")


@api("pool_update.precheck")
def update_precheck(call, self, host):
    with call.db.lock:
        _precheck(call, self, host)
    return "ok"


def _apply(call, update: str, host: str) -> None:
    db = call.db
    _precheck(call, update, host)
    row = db.get("pool_update", update)
    db.set("pool_update", update, "hosts", [*row["hosts"], host])
    hrow = db.get("host", host)
    changes = {"updates": [*hrow["updates"], update]}
    if "restartHost" in row["after_apply_guidance"] and "updates_requiring_reboot" in hrow:
        changes["updates_requiring_reboot"] = [*hrow["updates_requiring_reboot"], update]
    db.update("host", host, **changes)
    patch = _twin(db, update)
    if patch is not None:
        patches.record_applied(call, patch, host)


@api("pool_update.apply")
def update_apply(call, self, host):
    with call.db.lock:
        _apply(call, self, host)


@api("pool_update.pool_apply")
def update_pool_apply(call, self):
    db = call.db
    with db.lock:
        row = db.get("pool_update", self)
        todo = [h for h, _ in db.rows("host") if h not in row["hosts"]]
        if not todo:
            raise Failure("UPDATE_ALREADY_APPLIED_IN_POOL", self)
        failed = []
        for h in todo:
            try:
                _apply(call, self, h)
            except Failure as e:
                log.info("pool_update.pool_apply on %s: %s", h, e.description)
                failed.append(h)
        if failed:
            raise Failure("UPDATE_POOL_APPLY_FAILED", *failed)


@api("pool_update.pool_clean")
def update_pool_clean(call, self):
    db = call.db
    with db.lock:
        vdi = db.get("pool_update", self)["vdi"]
        if db.exists("VDI", vdi):
            storage_vdi.remove_vdi(call, vdi)
            world = call.world

            def free():
                if not db.exists("VDI", vdi):
                    VdiStore.of(world).remove(vdi)

            storage_vdi.after_commit(call, free)
        db.set("pool_update", self, "vdi", NULL_REF)


@api("pool_update.destroy")
def update_destroy(call, self):
    db = call.db
    with db.lock:
        if db.get("pool_update", self)["hosts"]:
            raise Failure("UPDATE_IS_APPLIED")
        patch = _twin(db, self)
        db.remove("pool_update", self)
        if patch is not None:
            db.remove("pool_patch", patch)


def _update_of_patch(call, patch: str) -> str:
    return call.db.get("pool_patch", patch).get("pool_update", NULL_REF)


def _twins(call) -> bool:
    """From 7.1 a pool_patch is the twin of a pool_update; before, a patch of its own."""
    return "pool_update" in call.db.schema.classes["pool_patch"].fields


@api("pool_patch.precheck")
def patch_precheck(call, self, host):
    if not _twins(call):
        with call.db.lock:
            return patches.precheck(call, self, host)
    update_precheck(call, _update_of_patch(call, self), host)
    return ""


@api("pool_patch.apply")
def patch_apply(call, self, host):
    if not _twins(call):
        with call.db.lock:
            return patches.apply(call, self, host)
    update_apply(call, _update_of_patch(call, self), host)
    return ""


@api("pool_patch.pool_apply")
def patch_pool_apply(call, self):
    with call.db.lock:
        if not _twins(call):
            return patches.pool_apply(call, self)
        update = _update_of_patch(call, self)
        for h, _ in list(call.db.rows("host")):
            if h not in call.db.get("pool_update", update)["hosts"]:
                _apply(call, update, h)
        call.db.set("pool_patch", self, "pool_applied", True)


@api("pool_patch.pool_clean")
def patch_pool_clean(call, self):
    if not _twins(call):
        with call.db.lock:
            return patches.clean(call, self)
    update_pool_clean(call, _update_of_patch(call, self))


@api("pool_patch.clean")
def patch_clean(call, self):
    with call.db.lock:
        if not _twins(call):
            return patches.clean(call, self)
        call.db.get("pool_patch", self)  # 7.1 on: a no-op (xapi_pool_patch.ml clean)


@api("pool_patch.clean_on_host")
def patch_clean_on_host(call, self, host):
    with call.db.lock:
        call.db.get("host", host)
        if not _twins(call):
            return patches.clean(call, self)
        call.db.get("pool_patch", self)


@api("pool_patch.destroy")
def patch_destroy(call, self):
    if not _twins(call):
        with call.db.lock:
            return patches.destroy(call, self)
    update_destroy(call, _update_of_patch(call, self))


# -- repositories (XenServer 8 / XCP-ng 8.3) -----------------------------------------------


def _assert_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise Failure("INVALID_BASE_URL", url)


_GPG = re.compile(r"[A-Za-z0-9_-]*")


@api("Repository.introduce")
def repository_introduce(
    call, name_label, name_description, binary_url, source_url, update, gpgkey_path
):
    _assert_url(binary_url)
    _assert_url(source_url)
    if not _GPG.fullmatch(gpgkey_path) or len(gpgkey_path) > 255:
        raise Failure("INVALID_GPGKEY_PATH", gpgkey_path)
    db = call.db
    with db.lock:
        for ref, row in db.rows("Repository"):
            if row["name_label"] == name_label or row["binary_url"] == binary_url:
                raise Failure("REPOSITORY_ALREADY_EXISTS", ref)
        return call.world.new_row(
            db,
            "Repository",
            name_label=name_label,
            name_description=name_description,
            binary_url=binary_url,
            source_url=source_url,
            update=update,
            gpgkey_path=gpgkey_path,
            hash="",
        )


@api("Repository.forget")
def repository_forget(call, self):
    db = call.db
    with db.lock:
        db.get("Repository", self)
        if self in db.get("pool", call.pool.ref)["repositories"]:
            raise Failure("REPOSITORY_IS_IN_USE")
        db.remove("Repository", self)


def _set_repositories(call, value: list) -> None:
    """What changes with the enabled set: the cached updateinfo goes, hosts are unknown."""
    db = call.db
    for r in value:
        db.get("Repository", r)
    pool = db.get("pool", call.pool.ref)
    if list(value) == pool["repositories"]:
        return
    for r in pool["repositories"]:
        if r not in value and db.exists("Repository", r):
            db.set("Repository", r, "hash", "")
    db.set("pool", call.pool.ref, "repositories", list(dict.fromkeys(value)))
    for h, _ in list(db.rows("host")):
        db.set("host", h, "latest_synced_updates_applied", "unknown")


@api("pool.set_repositories")
def set_repositories(call, self, value):
    with call.db.lock:
        call.db.get("pool", self)
        _set_repositories(call, value)


@api("pool.add_repository")
def add_repository(call, self, value):
    with call.db.lock:
        cur = call.db.get("pool", self)["repositories"]
        if value not in cur:
            _set_repositories(call, [*cur, value])


@api("pool.remove_repository")
def remove_repository(call, self, value):
    with call.db.lock:
        cur = call.db.get("pool", self)["repositories"]
        _set_repositories(call, [r for r in cur if r != value])


def _update_repository(call) -> str:
    """``get_single_enabled_update_repository``."""
    db = call.db
    repos = [
        r
        for r in db.get("pool", call.pool.ref)["repositories"]
        if db.get("Repository", r)["update"]
    ]
    if not repos:
        raise Failure("NO_REPOSITORY_ENABLED")
    if len(repos) > 1:
        raise Failure("MULTIPLE_UPDATE_REPOSITORIES_ENABLED")
    return repos[0]


@api("pool.sync_updates")
def sync_updates(call, self, force, token, token_id):
    db = call.db
    with db.lock:
        db.get("pool", self)
        repo = _update_repository(call)
        db.set("Repository", repo, "hash", CATALOGUE_HASH)
        db.set("pool", self, "last_update_sync", call.world.clock.now_ts())
        for h, row in list(db.rows("host")):
            if row["latest_synced_updates_applied"] != "yes":
                db.set("host", h, "latest_synced_updates_applied", "no")
        return CATALOGUE_HASH


def guidances_of(updates: list[dict]) -> list[str]:
    """The recommended guidances of ``updates`` as ``GuidanceSet`` reduces them: a host
    reboot covers a toolstack restart and a device-model restart."""
    gs = {u["recommended_guidance"] for u in updates}
    if "RebootHost" in gs:
        return ["RebootHost"]
    return sorted(gs)


@api("host.apply_updates")
def apply_updates(call, self, hash):
    db = call.db
    with db.lock:
        row = db.get("host", self)
        if db.get("pool", call.pool.ref)["ha_enabled"]:
            raise Failure("HA_IS_ENABLED")
        repo = _update_repository(call)
        if hash == "" or hash != db.get("Repository", repo)["hash"]:
            raise Failure("UPDATEINFO_HASH_MISMATCH")
        if row["latest_synced_updates_applied"] == "yes":
            guidances: list[str] = []  # already up to date
        else:
            guidances = guidances_of(CATALOGUE["updates"])
        host_g = [_HOST_GUIDANCE[g] for g in guidances if g in _HOST_GUIDANCE]
        pending = sorted({*row["pending_guidances"], *host_g})
        changes = {
            "pending_guidances": pending,
            "last_software_update": call.world.clock.now_ts(),
            "latest_synced_updates_applied": "yes",
        }
        if "pending_guidances_recommended" in row:
            changes["pending_guidances_recommended"] = sorted(
                {*row["pending_guidances_recommended"], *host_g}
            )
        db.update("host", self, **changes)
        if "RestartDeviceModel" in guidances:
            for vm in row["resident_VMs"]:
                v = db.get("VM", vm)
                if v["is_control_domain"] or v["power_state"] != "Running":
                    continue
                if not v["HVM_boot_policy"]:
                    continue
                vg = sorted({*v["pending_guidances"], "restart_device_model"})
                db.set("VM", vm, "pending_guidances", vg)
        return [["UPDATES_REQUIRE_RECOMMENDED_GUIDANCE", g] for g in guidances]
