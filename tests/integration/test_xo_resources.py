"""Xen Orchestra's ``xen-api`` npm client exports and imports through its HTTP resource
helpers (``getResource`` / ``putResource``, ``tests/node/xo-resources.mjs``): a VM as an XVA
(uploaded back from a stream of known length and from a buffer) and a disk as raw and VHD."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess

import pytest
import XenAPI
from disk_kit import disk_contents, local_sr, request, vm_with_two_disks

from xapi_sim.testing import running_world

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"


def test_xo_exports_and_imports_through_its_resource_helpers():
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "xen-api" / "package.json").exists():
        pytest.fail("node and `npm ci --prefix tests/node` are required (see README)")
    with running_world() as rw:
        s = XenAPI.Session(rw.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        vm, disks = vm_with_two_disks(rw, s, "xo-export")
        sr = local_sr(s, "xs1")
        vdi = next(
            s.xenapi.VBD.get_VDI(v)
            for v in s.xenapi.VM.get_VBDs(vm)
            if s.xenapi.VBD.get_userdevice(v) == "0"
        )
        before = set(s.xenapi.VM.get_all())
        r = subprocess.run(
            [node, "xo-resources.mjs", rw.master_url(), vm, sr, vdi],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        m = rw.world.pools[0].master
        xva = request(m, "GET", f"/export?session_id={s._session}&ref={vm}")[2]
        assert out["export"]["status"] == 200 and out["export"]["task"] == ""
        # the SR's utilisation in ova.xml moved with the imports: compare the sizes
        assert abs(out["export"]["size"] - len(xva)) < 4096
        new = set(s.xenapi.VM.get_all()) - before
        assert len(new) == 2
        for v in new:
            got = disk_contents(rw, s, v)
            assert {d: got[d][: len(data)] for d, data in disks.items()} == disks
        assert isinstance(out["import"], list) and len(out["import"]) == 1
        assert {out["import"][0], out["import2"][0]} == new
        raw = request(m, "GET", f"/export_raw_vdi?session_id={s._session}&vdi={vdi}")[2]
        assert out["raw"] == {"size": len(raw), "sha1": hashlib.sha1(raw).hexdigest()}
        assert out["vhd"]["head"] == "conectix" and out["vhdBack"]["sha1"] == out["raw"]["sha1"]
