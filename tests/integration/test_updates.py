"""Updates per release (docs/certificates-updates.md): pool_update from an uploaded VDI
(7.1 on) with its pool_patch twin, and Repository / pool.sync_updates / host.apply_updates
with guidances (XenServer 8, XCP-ng 8.3) -- over the XenAPI package."""

from __future__ import annotations

import pytest
import XenAPI
from session_kit import failure, logged_in

from tests.integration.disk_kit import new_vdi, request
from xapi_sim.classes.updates import CATALOGUE_HASH
from xapi_sim.testing import running_world

UUID = "1b0d2b3c-5a6e-4f70-8a91-0123456789ab"
UPDATE_XML = (
    f'<update uuid="{UUID}" name-label="XS82ECU1001" version="1.0" '
    'installation-size="1048576" after-apply-guidance="restartHost" key="/x/RPM-GPG-KEY-XS">'
    "<name-description>Hotfix 1</name-description></update>"
).encode()


def pool_of(version: str) -> str:
    return (
        f'[[host]]\nname_label = "h1"\ncpu = "Haswell"\nversion = "{version}"\n'
        f'[[host]]\nname_label = "h2"\ncpu = "Haswell"\nversion = "{version}"\n'
        '[[pool]]\nname_label = "p"\nmaster = "h1"\nmembers = ["h2"]\n'
    )


@pytest.fixture(scope="module", params=["dundee", "ely", "stockholm", "nile", "xcp-ng-8.3"])
def world(request):
    with logged_in(pool_of(request.param)) as (w, s):
        yield request.param, w, s


def uploaded(w, s, data: bytes):
    """A VDI holding ``data`` (PUT /import_raw_vdi), as XenCenter uploads an update ISO."""
    sr = next(r for r, v in s.xenapi.SR.get_all_records().items() if v["content_type"] == "user")
    vdi = new_vdi(s, sr, 1024 * 1024, "update")
    m = w.world.pools[0].master
    assert request(m, "PUT", f"/import_raw_vdi?session_id={s._session}&vdi={vdi}", data)[0] == 200
    return vdi


def test_pool_update_lifecycle(world):
    rel, w, s = world
    if rel == "dundee":  # pool_update came with 7.1
        assert failure(s.xenapi.pool_update.get_all)[0] == "MESSAGE_METHOD_UNKNOWN"
        return
    bad = uploaded(w, s, b'<update uuid="x" version="1"><name-description>d</name-description>')
    assert failure(s.xenapi.pool_update.introduce, bad) == [
        "INVALID_UPDATE",
        "missing <update> in update.xml",
    ]
    bad2 = uploaded(
        w, s, b'<update uuid="x" version="1"><name-description>d</name-description></update>'
    )
    assert failure(s.xenapi.pool_update.introduce, bad2) == [
        "INVALID_UPDATE",
        "missing <name-label> in update.xml",
    ]
    vdi = uploaded(w, s, UPDATE_XML)
    upd = s.xenapi.pool_update.introduce(vdi)
    rec = s.xenapi.pool_update.get_record(upd)
    assert rec["uuid"] == UUID and rec["name_label"] == "XS82ECU1001"
    assert rec["installation_size"] == "1048576" and rec["key"] == "RPM-GPG-KEY-XS"
    assert rec["after_apply_guidance"] == ["restartHost"] and rec["vdi"] == vdi
    assert s.xenapi.pool_update.introduce(vdi) == upd  # the same VDI again: the same update
    other = uploaded(w, s, UPDATE_XML)
    assert failure(s.xenapi.pool_update.introduce, other) == ["UPDATE_ALREADY_EXISTS", UUID]
    (patch,) = s.xenapi.pool_patch.get_all()
    assert s.xenapi.pool_patch.get_uuid(patch) == UUID[:9] + "0000-0000" + UUID[18:]
    h1 = s.xenapi.host.get_by_name_label("h1")[0]
    h2 = s.xenapi.host.get_by_name_label("h2")[0]
    assert s.xenapi.pool_update.precheck(upd, h1) == "ok"
    s.xenapi.pool_update.apply(upd, h1)
    assert s.xenapi.host.get_updates(h1) == [upd]
    assert s.xenapi.host.get_updates_requiring_reboot(h1) == [upd]
    assert failure(s.xenapi.pool_update.apply, upd, h1) == ["UPDATE_ALREADY_APPLIED", upd]
    assert failure(s.xenapi.pool_update.destroy, upd) == ["UPDATE_IS_APPLIED"]
    s.xenapi.pool_update.pool_apply(upd)
    assert sorted(s.xenapi.pool_update.get_hosts(upd)) == sorted([h1, h2])
    assert failure(s.xenapi.pool_update.pool_apply, upd) == [
        "UPDATE_ALREADY_APPLIED_IN_POOL",
        upd,
    ]
    assert len(s.xenapi.pool_patch.get_host_patches(patch)) == 2
    s.xenapi.pool_update.pool_clean(upd)
    assert s.xenapi.pool_update.get_vdi(upd) == "OpaqueRef:NULL"
    assert failure(s.xenapi.VDI.get_record, vdi)[0] == "HANDLE_INVALID"


def test_destroy_unapplied_update_takes_its_patch(world):
    rel, w, s = world
    if rel == "dundee":
        return
    xml = UPDATE_XML.replace(UUID.encode(), b"2b0d2b3c-5a6e-4f70-8a91-0123456789ab")
    upd = s.xenapi.pool_update.introduce(uploaded(w, s, xml))
    patches = len(s.xenapi.pool_patch.get_all())
    s.xenapi.pool_update.destroy(upd)
    assert len(s.xenapi.pool_patch.get_all()) == patches - 1
    assert failure(s.xenapi.pool_update.get_record, upd)[0] == "HANDLE_INVALID"


def test_repositories_sync_apply_guidances(world):
    rel, w, s = world
    if rel not in ("nile", "xcp-ng-8.3"):
        assert failure(s.xenapi.Repository.get_all)[0] == "MESSAGE_METHOD_UNKNOWN"
        return
    pool = s.xenapi.pool.get_all()[0]
    intro = s.xenapi.Repository.introduce
    assert failure(intro, "r", "", "ftp://x/y", "https://x/src", True, "") == [
        "INVALID_BASE_URL",
        "ftp://x/y",
    ]
    assert failure(intro, "r", "", "https://x/b", "https://x/s", True, "../key")[0] == (
        "INVALID_GPGKEY_PATH"
    )
    assert failure(s.xenapi.pool.sync_updates, pool, False, "", "") == ["NO_REPOSITORY_ENABLED"]
    repo = intro("base", "", "https://repo.example/base", "https://repo.example/src", True, "")
    assert failure(intro, "base", "", "https://other/b", "https://other/s", True, "") == [
        "REPOSITORY_ALREADY_EXISTS",
        repo,
    ]
    s.xenapi.pool.set_repositories(pool, [repo])
    assert failure(s.xenapi.Repository.forget, repo) == ["REPOSITORY_IS_IN_USE"]
    h1 = s.xenapi.host.get_by_name_label("h1")[0]
    assert s.xenapi.host.get_latest_synced_updates_applied(h1) == "unknown"
    digest = s.xenapi.pool.sync_updates(pool, False, "", "")
    assert digest == CATALOGUE_HASH == s.xenapi.Repository.get_hash(repo)
    assert s.xenapi.host.get_latest_synced_updates_applied(h1) == "no"
    assert failure(s.xenapi.host.apply_updates, h1, "stale") == ["UPDATEINFO_HASH_MISMATCH"]
    result = s.xenapi.host.apply_updates(h1, digest)
    assert result == [["UPDATES_REQUIRE_RECOMMENDED_GUIDANCE", "RebootHost"]]
    rec = s.xenapi.host.get_record(h1)
    assert rec["pending_guidances"] == ["reboot_host"]
    assert rec["latest_synced_updates_applied"] == "yes"
    if rel == "xcp-ng-8.3":  # 24.x records the recommended guidances apart
        assert rec["pending_guidances_recommended"] == ["reboot_host"]
    assert s.xenapi.host.apply_updates(h1, digest) == []  # up to date
    # the guidance followed: a reboot clears it (consider_enabling_host)
    h2 = s.xenapi.host.get_by_name_label("h2")[0]
    s.xenapi.host.apply_updates(h2, digest)
    assert s.xenapi.host.get_pending_guidances(h2) == ["reboot_host"]
    s.xenapi.host.disable(h2)
    s.xenapi.host.reboot(h2)  # synchronous in the simulator
    assert s.xenapi.host.get_pending_guidances(h2) == []
    if rel == "xcp-ng-8.3":
        assert s.xenapi.host.get_pending_guidances_recommended(h2) == []
    s.xenapi.pool.remove_repository(pool, repo)
    assert s.xenapi.pool.get_repositories(pool) == []
    s.xenapi.pool.add_repository(pool, repo)
    assert s.xenapi.pool.get_repositories(pool) == [repo]
    s.xenapi.pool.set_repositories(pool, [])
    s.xenapi.Repository.forget(repo)
    assert s.xenapi.Repository.get_all() == []


PATCH_UUID = "5a1e2b3c-0000-4f70-8a91-0123456789ab"
PATCH_INFO = (
    f'<info uuid="{PATCH_UUID.upper()}" name-label="XS70E001" name-description="Hotfix 1" '
    'version="1.0" after-apply-guidance="restartHost restartXAPI"/>'
).encode()


def upload_patch(w, s, body: bytes):
    """PUT /pool_patch_upload with a task of the client's: (status, task record)."""
    task = s.xenapi.task.create("upload", "")
    m = w.world.pools[0].master
    status, _, _ = request(
        m, "PUT", f"/pool_patch_upload?session_id={s._session}&task_id={task}", body
    )
    return status, s.xenapi.task.get_record(task)


def test_pool_patch_upload_apply_dundee():
    with running_world(pool_of("dundee")) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        status, task = upload_patch(w, s, b"<not-info/>")
        assert status == 200 and task["status"] == "failure"
        assert task["error_info"][0] == "INVALID_PATCH"
        status, task = upload_patch(w, s, PATCH_INFO)
        assert task["status"] == "success"
        patch = task["result"]
        rec = s.xenapi.pool_patch.get_record(patch)
        assert rec["uuid"] == PATCH_UUID and rec["name_label"] == "XS70E001"
        assert rec["after_apply_guidance"] == ["restartHost", "restartXAPI"]
        _, again = upload_patch(w, s, PATCH_INFO)
        assert again["error_info"] == ["PATCH_ALREADY_EXISTS", PATCH_UUID]
        h1 = s.xenapi.host.get_by_name_label("h1")[0]
        assert s.xenapi.pool_patch.precheck(patch, h1) == ""
        s.xenapi.pool_patch.apply(patch, h1)
        assert failure(s.xenapi.pool_patch.apply, patch, h1) == ["PATCH_ALREADY_APPLIED", patch]
        assert failure(s.xenapi.pool_patch.destroy, patch) == ["PATCH_IS_APPLIED"]
        s.xenapi.pool_patch.pool_apply(patch)
        assert s.xenapi.pool_patch.get_pool_applied(patch) is True
        hps = s.xenapi.pool_patch.get_host_patches(patch)
        assert len(hps) == 2 and all(s.xenapi.host_patch.get_applied(h) for h in hps)
        assert [p for p in s.xenapi.host.get_patches(h1) if p in hps]
        s.xenapi.pool_patch.pool_clean(patch)
        assert failure(s.xenapi.pool_patch.precheck, patch, h1) == ["CANNOT_FIND_PATCH"]
        _, back = upload_patch(w, s, PATCH_INFO)  # a cleaned patch takes the new file
        assert back["status"] == "success" and back["result"] == patch


def test_pool_patch_upload_absent_from_7_1():
    with running_world(pool_of("ely")) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        m = w.world.pools[0].master
        q = f"/pool_patch_upload?session_id={s._session}"
        assert request(m, "PUT", q, PATCH_INFO)[0] == 404
