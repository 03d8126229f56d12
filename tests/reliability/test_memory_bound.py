"""Memory stays bounded whatever the disk size: the server, in its own process, imports and
exports a 2 GiB disk (raw both ways, and the VM holding it as an XVA both ways) and its peak
resident set (``VmHWM`` in ``/proc/PID/status``) stays under 200 MiB. The bytes really
cross the wire; the data is sparse (a few MiB among zeros), so the disk file stays small
and the test quick."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time

import pytest
import XenAPI

GiB = 1024**3
MiB = 1024**2
LIMIT = 200 * MiB
SIZE = 2 * GiB


def _hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class _Disk:
    """2 GiB of a sparse disk's bytes, generated as http.client reads them: a marked MiB
    every 256 MiB, zeros elsewhere."""

    def __init__(self):
        self.pos = 0
        self.zero = bytes(MiB)

    def read(self, n=-1):
        n = min(MiB, SIZE - self.pos) if n < 0 else min(n, MiB, SIZE - self.pos)
        if n <= 0:
            return b""
        off = self.pos
        self.pos += n
        if off % (256 * MiB) < MiB:
            return bytes([1 + off // (256 * MiB)]) * n
        return self.zero[:n]


def _conn(url):
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=120)


def _get_all(url, target) -> tuple[int, int, bytes]:
    """(status, bytes received, first MiB) of a GET, read in pieces."""
    c = _conn(url)
    c.request("GET", target)
    r = c.getresponse()
    n, first = 0, b""
    while piece := r.read(4 * MiB):
        if n < MiB:
            first += piece[: MiB - n]
        n += len(piece)
    c.close()
    return r.status, n, first


@pytest.fixture
def server(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xapi_sim", "serve", "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no ready file"
        time.sleep(0.05)
    time.sleep(0.05)
    desc = json.loads(ready.read_text())
    try:
        yield proc, desc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_gib_disk_import_and_export_stay_under_200_mib(server):
    proc, desc = server
    url = next(h["url"] for h in desc["hosts"] if h["master"] and h["pool"] == "pool-a")
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    x = s.xenapi
    pool = x.pool.get_all()[0]
    sr = x.pool.get_default_SR(pool)
    vdi = x.VDI.create(
        {
            "SR": sr,
            "virtual_size": str(SIZE),
            "type": "user",
            "name_label": "big",
            "name_description": "",
            "sharable": False,
            "read_only": False,
            "other_config": {},
            "xenstore_data": {},
            "sm_config": {},
            "tags": [],
        }
    )
    sid = s._session
    # raw import: 2 GiB on the wire
    c = _conn(url)
    c.request(
        "PUT",
        f"/import_raw_vdi?session_id={sid}&vdi={vdi}",
        body=_Disk(),
        headers={"Content-Length": str(SIZE)},
    )
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 200
    # raw export: 2 GiB back
    status, n, first = _get_all(url, f"/export_raw_vdi?session_id={sid}&vdi={vdi}")
    assert status == 200 and n == SIZE and first == b"\x01" * MiB
    # the VM holding the disk, as an XVA, out and back in
    vm = x.VM.get_by_name_label("batch1")[0]
    x.VBD.create(
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": "1",
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
    c = _conn(url)
    c.request("GET", f"/export?session_id={sid}&ref={vm}")
    r = c.getresponse()
    xva = r.read()
    c.close()
    assert r.status == 200 and len(xva) < 64 * MiB  # zero chunks are skipped
    task = x.task.create("import", "")
    c = _conn(url)
    c.request("PUT", f"/import?session_id={sid}&task_id={task}&sr_id={sr}", body=xva)
    r = c.getresponse()
    r.read()
    c.close()
    assert x.task.get_status(task) == "success", x.task.get_error_info(task)
    hwm = _hwm(proc.pid)
    print(f"peak RSS {hwm / MiB:.0f} MiB")
    assert hwm < LIMIT, f"peak RSS {hwm / MiB:.0f} MiB"
