"""Xen Orchestra's VM creation (xo-server ``createVm``) through its unmodified ``xen-api``
Node client (``tests/node/xo-create-vm.mjs``): clone or copy of a template, provision with
the template's disks dropped, a user disk (``VDI.create`` + ``VBD.create`` on the device
``VM.get_allowed_VBD_devices`` offers), a VIF on the first of ``VM.get_allowed_VIF_devices``,
then ``VM.start``. Needs Node.js 18+ and ``npm ci --prefix tests/node``."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest
import XenAPI

from xapi_sim.testing import running_world

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "xo-create-vm.mjs"


def _node():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required for the Xen Orchestra client test (Node >= 18)")
    if not (NODE_DIR / "node_modules" / "xen-api" / "package.json").exists():
        pytest.fail("the xen-api npm client is not installed: run `npm ci --prefix tests/node`")
    return node


@pytest.fixture(scope="module")
def xo():
    with running_world(seed=3) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        x = s.xenapi
        pool = x.pool.get_all()[0]
        sr = x.pool.get_default_SR(pool)
        net = next(n for n, r in x.network.get_all_records().items() if r["bridge"] == "xenbr0")
        proc = subprocess.run(
            [_node(), str(SCRIPT), w.master_url(), "CentOS 7", x.SR.get_uuid(sr),
             x.network.get_uuid(net)],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        steps = {}
        for line in proc.stdout.splitlines():
            msg = json.loads(line)
            steps[msg["step"]] = msg
        assert proc.returncode == 0 and "error" not in steps, (steps.get("error"), proc.stderr)
        yield w, x, steps, sr, net


def test_the_whole_sequence_ran(xo):
    w, x, steps, sr, net = xo
    assert list(steps) == ["connect", "created", "started", "copied", "done"]


def test_the_created_vm_is_what_xo_asked_for(xo):
    w, x, steps, sr, net = xo
    c = steps["created"]
    assert c["is_a_template"] is False
    assert c["name_description"] == "created like xo-server does"
    # provision ran without the template's disks: only the user's disk and VIF
    assert c["VBDs"] == [c["vbd"]] and c["VIFs"] == [c["vif"]]
    assert "disks" not in c["other_config"] and c["other_config"]["base_template_name"] == (
        "CentOS 7"
    )
    assert any(k.startswith("xo:") for k in c["other_config"])
    assert c["allowedVbd"] == ["0", "1", "2"]
    assert c["vifDevices"] == [str(i) for i in range(7)]


def test_the_started_vm_has_its_devices_attached(xo):
    w, x, steps, sr, net = xo
    s = steps["started"]
    assert s["power_state"] == "Running" and s["resident_on"] in w.world.hosts
    assert s["vbd"] == {"attached": True, "device": "xvda", "userdevice": "0", "bootable": True}
    assert s["vif"]["attached"] is True and s["vif"]["device"] == "0"
    assert len(s["vif"]["MAC"].split(":")) == 6 and s["vif"]["MTU"] == 1500
    assert s["vdi"] == {"SR": sr, "virtual_size": 1 << 30, "type": "user"}
    assert steps["copied"]["VBDs"] == 1 and steps["copied"]["VIFs"] == 1


def test_destroying_the_vms_kept_their_disks(xo):
    """VM.destroy removes VBDs and VIFs; VDIs stay (xapi_vm_helpers.ml destroy)."""
    w, x, steps, sr, net = xo
    names = {r["name_label"] for r in x.VDI.get_all_records().values()}
    assert {"xo-vm disk", "xo-vm-copy disk"} <= names
    assert x.VM.get_by_name_label("xo-vm") == [] and x.VM.get_by_name_label("xo-vm-copy") == []
    assert x.network.get_VIFs(net) == []
