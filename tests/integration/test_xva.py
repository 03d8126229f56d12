"""``GET /export``, ``PUT /import``, ``GET /export_metadata`` (``handlers/xva.py``): the XVA
format as xapi writes it, round trips, a hand-built XVA as a real XenServer writes one, and
the import's errors."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import tarfile

import pytest
import XenAPI
from disk_kit import disk_contents, local_sr, new_vdi, request, vm_with_two_disks
from session_kit import logged_in

from xapi_sim import xva

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def env():
    with logged_in() as (rw, s):
        yield rw, s


def do_import(rw, s, body, query=""):
    """PUT /import with a task: (HTTP status, task record)."""
    m = rw.world.pools[0].master
    task = s.xenapi.task.create("import", "")
    q = f"/import?session_id={s._session}&task_id={task}{query}"
    status = request(m, "PUT", q, body)[0]
    return status, s.xenapi.task.get_record(task)


def test_export_writes_the_xva_format(env):
    rw, s = env
    m = rw.world.pools[0].master
    vm, disks = vm_with_two_disks(rw, s, "format")
    status, headers, body = request(m, "GET", f"/export?session_id={s._session}&ref={vm}")
    assert status == 200 and headers["content-disposition"] == 'attachment; filename="export.xva"'
    assert "content-length" not in headers and headers["task-id"].startswith("OpaqueRef:")
    tar = tarfile.open(fileobj=io.BytesIO(body))
    names = tar.getnames()
    assert names[0] == "ova.xml"
    version, objects = xva.parse_ova(tar.extractfile("ova.xml").read())
    assert version["export_vsn"] == "2" and version["product_version"] == "7.0.0"
    classes = [c for c, _, _ in objects]
    assert classes.count("VM") == 1 and classes.count("VDI") == 2 and "VIF" in classes
    vm_id, vmrec = next((i, r) for c, i, r in objects if c == "VM")
    assert vmrec["power_state"] == "Halted" and vmrec["metrics"] == "OpaqueRef:NULL"
    assert vmrec["VBDs"] and all(v.startswith("Ref:") for v in vmrec["VBDs"])
    assert not any(n.startswith("OpaqueRef:") for _, i, _ in objects for n in [i])
    # chunks: 1 MiB, zero chunks skipped but the first and last, each with its checksum
    vdi_ids = sorted(i for c, i, _ in objects if c == "VDI")
    for vid in vdi_ids:
        chunks = [n for n in names if n.startswith(vid + "/") and not n.endswith(".checksum")]
        for n in chunks:
            data = tar.extractfile(n).read()
            assert (
                tar.extractfile(n + ".checksum").read().decode() == hashlib.sha1(data).hexdigest()
            )
    big = next(
        vid
        for vid in vdi_ids
        if any(r.get("virtual_size") == str(4 * MiB) for c, i, r in objects if i == vid)
    )
    assert [n for n in names if n.startswith(big + "/") and "." not in n] == [
        f"{big}/00000000",
        f"{big}/00000003",
    ]
    assert s.xenapi.VM.get_current_operations(vm) == {}


def test_round_trip_gives_the_same_vm_with_its_disks(env):
    rw, s = env
    m = rw.world.pools[0].master
    vm, disks = vm_with_two_disks(rw, s, "roundtrip")
    body = request(m, "GET", f"/export?session_id={s._session}&uuid={s.xenapi.VM.get_uuid(vm)}")[2]
    status, task = do_import(rw, s, body)
    assert status == 200 and task["status"] == "success", task["error_info"]
    assert task["other_config"].get("object_creation") == "complete"
    [new] = XenAPI.xmlrpclib.loads(
        f"<methodResponse><params><param>{task['result']}</param></params></methodResponse>"
    )[0][0]
    assert new != vm
    a, b = s.xenapi.VM.get_record(vm), s.xenapi.VM.get_record(new)
    for k in ("name_label", "memory_static_max", "VCPUs_max", "HVM_boot_policy", "platform"):
        assert a[k] == b[k], k
    assert a["uuid"] != b["uuid"] and b["power_state"] == "Halted"
    assert b["current_operations"] == {}
    assert a["other_config"]["mac_seed"] != b["other_config"]["mac_seed"]
    got = disk_contents(rw, s, new)
    assert {d: got[d][: len(data)] for d, data in disks.items()} == disks
    vif = s.xenapi.VIF.get_record(b["VIFs"][0])
    assert vif["MAC"] == "aa:bb:cc:dd:ee:01"
    assert vif["network"] == s.xenapi.VIF.get_network(a["VIFs"][0])
    # a gzip-compressed XVA imports too; restore keeps the UUID of a VM that is gone
    s.xenapi.VM.destroy(vm)
    status, task = do_import(rw, s, gzip.compress(body), "&restore=true")
    assert task["status"] == "success", task["error_info"]
    assert s.xenapi.VM.get_by_uuid(a["uuid"])


def test_hand_built_xva_as_a_real_xenserver_writes_it(env):
    """An XVA written by hand from the format description: ``ova.xml`` (version and the
    objects, every integer a string, references as ``Ref:N``), one disk as chunks with SHA-1
    checksums -- the middle chunk absent, as a zero chunk is -- and the end of the tar."""
    rw, s = env
    sr = local_sr(s, "xs1")

    def member(name, value):
        return f"<member><name>{name}</name><value>{value}</value></member>"

    def struct(d):
        return "<struct>" + "".join(member(k, v) for k, v in d.items()) + "</struct>"

    def arr(xs):
        return "<array><data>" + "".join(f"<value>{x}</value>" for x in xs) + "</data></array>"

    empty = "<struct></struct>"
    vm = {
        "uuid": "4a1f5b3c-1111-4c8e-9a63-0123456789ab",
        "name_label": "handmade",
        "name_description": "from a real XVA",
        "user_version": "1",
        "is_a_template": "<boolean>0</boolean>",
        "power_state": "Halted",
        "affinity": "OpaqueRef:NULL",
        "memory_static_max": "268435456",
        "memory_dynamic_max": "268435456",
        "memory_dynamic_min": "268435456",
        "memory_static_min": "134217728",
        "VCPUs_params": empty,
        "VCPUs_max": "1",
        "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "PV_bootloader": "pygrub",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "",
        "HVM_boot_params": empty,
        "platform": struct({"nx": "true"}),
        "PCI_bus": "",
        "other_config": struct({"mac_seed": "0f0e0d0c-0000-4000-8000-000000000001"}),
        "recommendations": "",
        "VBDs": arr(["Ref:1"]),
        "VIFs": arr([]),
        "resident_on": "OpaqueRef:NULL",
        "metrics": "OpaqueRef:NULL",
        "guest_metrics": "OpaqueRef:NULL",
    }
    vbd = {
        "uuid": "4a1f5b3c-2222-4c8e-9a63-0123456789ab",
        "VM": "Ref:0",
        "VDI": "Ref:2",
        "userdevice": "0",
        "bootable": "<boolean>1</boolean>",
        "mode": "RW",
        "type": "Disk",
        "unpluggable": "<boolean>0</boolean>",
        "empty": "<boolean>0</boolean>",
        "other_config": empty,
        "qos_algorithm_type": "",
        "qos_algorithm_params": empty,
    }
    vdi = {
        "uuid": "4a1f5b3c-3333-4c8e-9a63-0123456789ab",
        "name_label": "handmade disk",
        "name_description": "",
        "SR": "Ref:3",
        "virtual_size": str(3 * MiB),
        "type": "system",
        "sharable": "<boolean>0</boolean>",
        "read_only": "<boolean>0</boolean>",
        "other_config": empty,
        "VBDs": arr(["Ref:1"]),
    }
    srrec = {"uuid": "4a1f5b3c-4444-4c8e-9a63-0123456789ab", "name_label": "Local storage"}
    objs = [
        ("VM", "Ref:0", vm),
        ("VBD", "Ref:1", vbd),
        ("VDI", "Ref:2", vdi),
        ("SR", "Ref:3", srrec),
    ]
    version = {
        "hostname": "xenbuild",
        "date": "2016-05-13",
        "product_version": "7.0.0",
        "product_brand": "XenServer",
        "build_number": "125380c",
        "xapi_major": "1",
        "xapi_minor": "9",
        "export_vsn": "2",
    }
    objects = "".join(
        "<value>" + struct({"class": c, "id": i, "snapshot": struct(r)}) + "</value>"
        for c, i, r in objs
    )
    objects = member("objects", f"<array><data>{objects}</data></array>")
    ova = f"<value><struct>{member('version', struct(version))}{objects}</struct></value>"
    c0, c2 = b"MBR!" + bytes(MiB - 4), b"\x01" * MiB
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (
            ("ova.xml", ova.encode()),
            ("Ref:2/00000000", c0),
            ("Ref:2/00000000.checksum", hashlib.sha1(c0).hexdigest().encode()),
            ("Ref:2/00000002", c2),
            ("Ref:2/00000002.checksum", hashlib.sha1(c2).hexdigest().encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    status, task = do_import(rw, s, buf.getvalue(), f"&sr_id={sr}")
    assert task["status"] == "success", task["error_info"]
    new = s.xenapi.VM.get_by_name_label("handmade")[0]
    rec = s.xenapi.VM.get_record(new)
    assert rec["uuid"] != vm["uuid"] and rec["memory_static_max"] == "268435456"
    assert rec["other_config"]["mac_seed"] != "0f0e0d0c-0000-4000-8000-000000000001"
    [disk] = disk_contents(rw, s, new).values()
    assert disk[: 3 * MiB] == c0 + bytes(MiB) + c2  # LVM rounds the size up to 4 MiB
    vdi_ref = s.xenapi.VBD.get_VDI(rec["VBDs"][0])
    assert s.xenapi.VDI.get_SR(vdi_ref) == sr and s.xenapi.VDI.get_type(vdi_ref) == "system"


def test_import_errors_fail_the_task_and_leave_nothing(env):
    rw, s = env
    m = rw.world.pools[0].master
    vm, _ = vm_with_two_disks(rw, s, "errors")
    body = request(m, "GET", f"/export?session_id={s._session}&ref={vm}")[2]
    vms_before = set(s.xenapi.VM.get_all())
    vdis_before = set(s.xenapi.VDI.get_all())
    # not an XVA
    _, task = do_import(rw, s, xva.member("hello.txt", b"hi") + xva.END)
    assert task["error_info"] == ["IMPORT_ERROR_UNEXPECTED_FILE", "ova.xml", "hello.txt"]
    # cut short
    _, task = do_import(rw, s, body[: len(body) // 2])
    assert task["error_info"][0] == "IMPORT_ERROR_PREMATURE_EOF"
    # a damaged chunk: the checksum fails (unless force)
    bad = bytearray(body)
    h = bad.index(b"/00000000\x00")  # the first chunk's tar header
    i = h - h % 512 + 512 + 100  # inside its data
    bad[i] ^= 0xFF
    _, task = do_import(rw, s, bytes(bad))
    assert task["status"] == "failure" and task["error_info"][0] == "IMPORT_ERROR_GENERIC"
    assert set(s.xenapi.VM.get_all()) == vms_before
    assert set(s.xenapi.VDI.get_all()) == vdis_before
    _, task = do_import(rw, s, bytes(bad), "&force=true")
    assert task["status"] == "success", task["error_info"]
    # an ISO SR: 400
    iso = next(r for r, rec in s.xenapi.SR.get_all_records().items() if rec["type"] == "iso")
    status, task = do_import(rw, s, body, f"&sr_id={iso}")
    assert status == 400 and task["error_info"] == ["SR_OPERATION_NOT_SUPPORTED"]


def test_export_of_a_vm_whose_disks_another_host_holds_redirects(env):
    rw, s = env
    m = rw.world.pools[0].master
    xs2 = rw.world.host_by_name("xs2")
    vm = s.xenapi.VM.get_by_name_label("batch1")[0]
    vdi = new_vdi(s, local_sr(s, "xs2"), MiB)
    s.xenapi.VBD.create(
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": "5",
            "bootable": False,
            "mode": "RW",
            "type": "Disk",
            "unpluggable": True,
            "empty": False,
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    q = f"/export?session_id={s._session}&ref={vm}"
    status, headers, _ = request(m, "GET", q)
    assert status == 302
    assert headers["location"] == f"https://{xs2.address_for_url}:{xs2.port}{q}"
    status, _, body = request(xs2, "GET", q, tls=True)
    assert status == 200 and body[:7] == b"ova.xml"
    # a running VM cannot be exported
    web = s.xenapi.VM.get_by_name_label("web1")[0]
    host = rw.world.hosts[s.xenapi.VM.get_resident_on(web)]
    status, _, body = request(host, "GET", f"/export?session_id={s._session}&ref={web}")
    assert status == 500 and b"VM_BAD_POWER_STATE" in body


def test_export_metadata_imports_back(env):
    rw, s = env
    m = rw.world.pools[0].master
    vm, _ = vm_with_two_disks(rw, s, "meta")
    status, headers, body = request(m, "GET", f"/export_metadata?session_id={s._session}&ref={vm}")
    assert status == 200 and int(headers["content-length"]) == len(body)
    assert tarfile.open(fileobj=io.BytesIO(body)).getnames() == ["ova.xml"]
    _, objects = xva.parse_ova(tarfile.open(fileobj=io.BytesIO(body)).extractfile("ova.xml").read())
    assert [c for c, _, _ in objects].count("VM") == 1
    # PUT /import_metadata takes it back: a new VM on the same disks
    vdis = {s.xenapi.VBD.get_VDI(v) for v in s.xenapi.VM.get_VBDs(vm)}
    task = s.xenapi.task.create("meta", "")
    q = f"/import_metadata?session_id={s._session}&task_id={task}"
    status, headers, _ = request(m, "PUT", q, body)
    assert status == 200 and headers["task-id"] == task
    rec = s.xenapi.task.get_record(task)
    assert rec["status"] == "success", rec["error_info"]
    [new] = xva.parse_value(rec["result"])
    assert new != vm and s.xenapi.VM.get_name_label(new) == "meta"
    assert {s.xenapi.VBD.get_VDI(v) for v in s.xenapi.VM.get_VBDs(new)} == vdis
    # a VDI the pool lacks: IMPORT_ERROR_FAILED_TO_FIND_OBJECT, nothing created
    before = set(s.xenapi.VM.get_all())
    gone = s.xenapi.VDI.get_uuid(next(iter(vdis)))
    task = s.xenapi.task.create("meta", "")
    request(m, "PUT", f"{q[: q.index('&task_id')]}&task_id={task}&vdi:{gone}=nope", body)
    assert s.xenapi.task.get_error_info(task)[0] == "IMPORT_ERROR_FAILED_TO_FIND_OBJECT"
    assert set(s.xenapi.VM.get_all()) == before


def test_stream_export_keeps_working_over_a_slow_reader(env):
    rw, s = env
    m = rw.world.pools[0].master
    vm, disks = vm_with_two_disks(rw, s, "slow")
    c = http.client.HTTPConnection(m.address_for_url, m.port, timeout=30)
    c.request("GET", f"/export?session_id={s._session}&ref={vm}")
    r = c.getresponse()
    got = b""
    while piece := r.read(4096):
        got += piece
    c.close()
    assert tarfile.open(fileobj=io.BytesIO(got)).getnames()[0] == "ova.xml"


def test_import_with_a_huge_content_length_ends_with_the_xva(env):
    """Xen Orchestra's upload of a stream of unknown length: ``Content-Length`` 1 PiB, the
    XVA, then the connection closed: the import completes when the XVA does."""
    import socket

    rw, s = env
    m = rw.world.pools[0].master
    vm, disks = vm_with_two_disks(rw, s, "huge-length")
    body = request(m, "GET", f"/export?session_id={s._session}&ref={vm}")[2]
    task = s.xenapi.task.create("import", "")
    sock = socket.create_connection((m.address_for_url, m.port), timeout=30)
    head = (
        f"PUT /import?session_id={s._session}&task_id={task} HTTP/1.1\r\n"
        "Host: x\r\nContent-Length: 1125899906842624\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while piece := sock.recv(65536):
        reply += piece
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 OK")
    rec = s.xenapi.task.get_record(task)
    assert rec["status"] == "success", rec["error_info"]
    [new] = xva.parse_value(rec["result"])
    got = disk_contents(rw, s, new)
    assert {d: got[d][: len(data)] for d, data in disks.items()} == disks


def test_export_metadata_without_credentials_fails_its_task(env):
    """``with_context``: a 401, and the forwarded task fails with
    SESSION_AUTHENTICATION_FAILED."""
    rw, s = env
    m = rw.world.pools[0].master
    vm = s.xenapi.VM.get_by_name_label("batch1")[0]
    task = s.xenapi.task.create("meta", "")
    status, headers, _ = request(m, "GET", f"/export_metadata?ref={vm}&task_id={task}")
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="VM.export_metadata"'
    assert s.xenapi.task.get_error_info(task) == ["SESSION_AUTHENTICATION_FAILED"]
