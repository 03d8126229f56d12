"""``xe vm-export`` / ``xe vm-import`` (``xe_server/commands/transfer.py`` and the client's
``HttpGet`` / ``HttpPut`` in ``xe.py``): a VM with two disks round-trips through a file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from disk_kit import disk_contents, local_sr, vm_with_two_disks
from session_kit import logged_in


@pytest.fixture(scope="module")
def env():
    with logged_in() as (rw, s):
        yield rw, s


def xe(rw, home, *argv, host="xs1"):
    h = rw.world.host_by_name(host)
    args = ["-s", h.address_for_url, "-p", str(h.port), "-u", "root", "-pw", "xenroot"]
    if h.address_for_url != "127.0.0.1":
        args.append("--nossl")
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "xapi_sim.xe", *args, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_vm_export_then_import_round_trips_two_disks(env, tmp_path):
    rw, s = env
    vm, disks = vm_with_two_disks(rw, s, "xe-roundtrip")
    uuid = s.xenapi.VM.get_uuid(vm)
    path = tmp_path / "vm.xva"
    tasks = set(s.xenapi.task.get_all())
    r = xe(rw, tmp_path, "vm-export", f"vm={uuid}", f"filename={path}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Export succeeded\n"
    assert path.read_bytes()[:7] == b"ova.xml"
    assert set(s.xenapi.task.get_all()) == tasks
    sr = s.xenapi.SR.get_uuid(local_sr(s, "xs1"))
    r = xe(rw, tmp_path, "vm-import", f"filename={path}", f"sr-uuid={sr}")
    assert r.returncode == 0, r.stderr
    [new_uuid] = r.stdout.strip().split(",")
    new = s.xenapi.VM.get_by_uuid(new_uuid)
    assert s.xenapi.VM.get_name_label(new) == "xe-roundtrip" and new != vm
    got = disk_contents(rw, s, new)
    assert {d: got[d][: len(data)] for d, data in disks.items()} == disks
    assert set(s.xenapi.task.get_all()) == tasks


def test_export_refuses_an_existing_file_and_import_a_missing_one(env, tmp_path):
    rw, s = env
    vm = s.xenapi.VM.get_by_name_label("batch1")[0]
    path = tmp_path / "exists.xva"
    path.write_bytes(b"keep me")
    r = xe(rw, tmp_path, "vm-export", "vm=batch1", f"filename={path}")
    assert r.returncode == 1 and "Operation failed. Error:" in r.stderr
    # the handler had started: its task either finished (the whole export fit in the socket
    # buffers) or failed writing to the closed connection, as xapi's does
    assert "Export failed, unknown error" in r.stderr or "Error code: CLIENT_ERROR" in r.stderr
    assert path.read_bytes() == b"keep me"
    r = xe(rw, tmp_path, "vm-import", f"filename={tmp_path / 'nope.xva'}")
    assert r.returncode == 1
    assert f"file '{tmp_path / 'nope.xva'}' does not exist" in r.stderr
    assert vm  # the VM is untouched
    # an import of something that is not an XVA reports the task's error
    bad = tmp_path / "bad.xva"
    bad.write_bytes(b"x" * 2048)
    r = xe(rw, tmp_path, "vm-import", f"filename={bad}")
    assert r.returncode == 1 and "IMPORT_ERROR" in r.stderr + r.stdout
