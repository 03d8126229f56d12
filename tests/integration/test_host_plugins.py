"""``host.call_plugin`` (``classes/host_plugins.py``) and ``xe host-call-plugin``: the
simulated dom0 plugins (``perfmon``, ``disk-space``, XCP-ng's ``hyperthreading.py``), the
failures ``XenAPIPlugin.dispatch`` and xapi give (XENAPI_MISSING_PLUGIN,
UNKNOWN_XENAPI_PLUGIN_FUNCTION, XENAPI_PLUGIN_FAILURE) and the forward to a dead host
(HOST_OFFLINE) -- over the XenAPI package, Xen Orchestra's client and the xe CLI."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import XenAPI
from session_kit import failure, logged_in
from xe_kit import xe_runner

from xapi_sim.testing import running_world

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{v}"
[[host]]
name_label = "h2"
cpu = "Haswell"
version = "{v}"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
"""

GiB = 1 << 30


def test_disk_space_and_perfmon_as_xencenter_calls_them():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        h1, h2 = x.host.get_by_name_label("h1")[0], x.host.get_by_name_label("h2")[0]
        free = int(x.host.call_plugin(h2, "disk-space", "get_avail_host_disk_space", {}))
        assert 0 < free < 4 * GiB
        assert x.host.call_plugin(h2, "disk-space", "check_patch_upload", {"size": "1024"}) == (
            "True"
        )
        big = str(free)
        assert x.host.call_plugin(h2, "disk-space", "check_patch_upload", {"size": big}) == (
            "False"
        )
        assert x.host.call_plugin(h1, "disk-space", "get_required_space", {"size": "77"}) == "77"
        assert x.host.call_plugin(h1, "disk-space", "get_reclaimable_disk_space", {}) == "0"
        assert x.host.call_plugin(h1, "disk-space", "cleanup_disk_space", {}) == ""
        for fn in ("refresh", "start", "stop", "restart", "debug_mem"):
            assert x.host.call_plugin(h1, "perfmon", fn, {}) == "True"
        # the plugin's own failures, as XenAPIPlugin.dispatch reports them
        assert failure(x.host.call_plugin, h1, "disk-space", "check_patch_upload", {}) == [
            "XENAPI_PLUGIN_FAILURE",
            "check_patch_upload",
            "Exception",
            "MISSING_SIZE",
        ]
        assert failure(
            x.host.call_plugin, h1, "disk-space", "check_patch_upload", {"size": "12x"}
        ) == [
            "XENAPI_PLUGIN_FAILURE",
            "check_patch_upload",
            "ValueError",
            "invalid literal for int() with base 10: '12x'",
        ]
        assert failure(x.host.call_plugin, h1, "perfmon", "nope", {}) == [
            "UNKNOWN_XENAPI_PLUGIN_FUNCTION",
            "nope",
        ]
        # plugins a simulated host does not ship; XCP-ng's are on XCP-ng only
        for name in ("smartctl.py", "hyperthreading.py", "../../bin/sh"):
            assert failure(x.host.call_plugin, h1, name, "health", {}) == [
                "XENAPI_MISSING_PLUGIN",
                name,
            ]
        # forwarded to the host named: a dead one is HOST_OFFLINE before the plugin is looked at
        x.sim.host_crash(h2)
        assert failure(x.host.call_plugin, h2, "nothing-here", "f", {}) == ["HOST_OFFLINE", h2]
        assert failure(x.host.call_plugin, "OpaqueRef:nonsense", "perfmon", "refresh", {})[0] == (
            "HANDLE_INVALID"
        )


def test_xcp_ng_hyperthreading_and_the_larger_dom0_disk():
    with logged_in(WORLD.format(v="xcp-ng-8.3")) as (w, s):
        x = s.xenapi
        h1 = x.host.get_by_name_label("h1")[0]
        assert x.host.call_plugin(h1, "hyperthreading.py", "get_hyperthreading", {}) == "false"
        free = int(x.host.call_plugin(h1, "disk-space", "get_avail_host_disk_space", {}))
        assert 4 * GiB < free < 18 * GiB
        assert failure(x.host.call_plugin, h1, "updater.py", "check_update", {}) == [
            "XENAPI_MISSING_PLUGIN",
            "updater.py",
        ]


def test_xe_host_call_plugin(tmp_path):
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        uuid = x.host.get_uuid(x.host.get_by_name_label("h2")[0])
        xe = xe_runner(w.host("h1"), tmp_path)

        r = xe("host-call-plugin", f"host-uuid={uuid}", "plugin=disk-space")
        r2 = xe(
            "host-call-plugin",
            f"host-uuid={uuid}",
            "plugin=disk-space",
            "fn=get_required_space",
            "args:size=4096",
        )
        assert r.returncode == 1 and "fn" in r.stdout + r.stderr
        assert (r2.returncode, r2.stdout, r2.stderr) == (0, "4096\n", "")
        r3 = xe("host-call-plugin", f"host-uuid={uuid}", "plugin=nope", "fn=f")
        assert r3.returncode == 1
        assert (r3.stdout, r3.stderr) == (
            "",
            "The requested plugin could not be found.\nname: nope\n",
        )


def test_xen_orchestra_tells_a_missing_plugin_by_its_code():
    node = shutil.which("node")
    node_dir = pathlib.Path(__file__).resolve().parents[1] / "node"
    assert node, "node is required for the Xen Orchestra client tests (see README)"
    with running_world(WORLD.format(v="xcp-ng-8.3")) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        h1 = s.xenapi.host.get_by_name_label("h1")[0]
        s.xenapi.session.logout()
        p = subprocess.run(
            [node, "xo-plugins.mjs", w.master_url(), h1],
            cwd=node_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["hyperthreading"] == {"value": "false"}
    assert got["smartctl"] == {"code": "XENAPI_MISSING_PLUGIN", "params": ["smartctl.py"]}
    # through a task (callAsync): the task's error_info carries the same code
    assert got["raid"] == {"code": "XENAPI_MISSING_PLUGIN", "params": ["raid.py"]}
    assert int(got["diskSpace"]["value"]) > 4 << 30


def _down(x, name):
    h = x.host.get_by_name_label(name)[0]
    x.sim.host_crash(h)
    return h


def _live(x, h):
    return x.host_metrics.get_live(x.host.get_metrics(h))


def test_power_on_by_mode_dundee():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        h1 = x.host.get_by_name_label("h1")[0]
        h2 = _down(x, "h2")
        assert "power_on" not in x.host.get_allowed_operations(h2)
        assert failure(x.host.power_on, h2) == ["HOST_POWER_ON_MODE_DISABLED"]
        x.host.set_power_on_mode(h1, "wake-on-lan", {})
        assert failure(x.host.power_on, h1) == ["HOST_IS_LIVE", h1]  # the first error wins
        x.host.set_power_on_mode(h2, "wake-on-lan", {})
        assert "power_on" in x.host.get_allowed_operations(h2)
        x.host.power_on(h2)
        assert _live(x, h2)
        assert x.host.get_current_operations(h2) == {}
        # DRAC: the config's keys in the script's order, then the secret
        _down(x, "h2")
        x.host.set_power_on_mode(h2, "DRAC", {"power_on_ip": "10.0.0.9"})
        assert failure(x.host.power_on, h2) == [
            "XENAPI_PLUGIN_FAILURE",
            "main",
            "KeyError",
            "'power_on_user'",
        ]
        missing = "00000000-0000-0000-0000-000000000000"
        config = {
            "power_on_ip": "10.0.0.9",
            "power_on_user": "root",
            "power_on_password_secret": missing,
        }
        x.host.set_power_on_mode(h2, "DRAC", config)
        assert failure(x.host.power_on, h2) == ["UUID_INVALID", "secret", missing]
        assert not _live(x, h2)
        secret = x.secret.create({"value": "calvin"})
        config["power_on_password_secret"] = x.secret.get_uuid(secret)
        x.host.set_power_on_mode(h2, "DRAC", config)
        x.host.power_on(h2)
        assert _live(x, h2)
        # the old config's password secret is destroyed, even if the new one names it again
        x.host.set_power_on_mode(h2, "DRAC", config)
        assert secret not in x.secret.get_all()
        # 7.0 still ships iLO.py; a custom mode needs a script dom0 does not have
        _down(x, "h2")
        x.host.set_power_on_mode(h2, "iLO", {**config, "power_on_password_secret": missing})
        assert failure(x.host.power_on, h2) == ["UUID_INVALID", "secret", missing]
        x.host.set_power_on_mode(h2, "myscript", {})
        assert failure(x.host.power_on, h2) == [
            "XENAPI_PLUGIN_FAILURE",
            "main",
            "ImportError",
            "No module named myscript",
        ]
        # the plugin itself, called directly
        x.host.set_power_on_mode(h2, "", {})
        uuid = x.host.get_uuid(h2)
        assert failure(
            x.host.call_plugin, h1, "power-on-host", "main", {"remote_host_uuid": uuid}
        ) == ["XENAPI_PLUGIN_FAILURE", "main", "HOST_POWER_ON_NOT_CONFIGURED", ""]


def test_custom_power_on_scripts_by_release():
    for version, want in (
        ("stockholm", ["NameError", "global name 'ModuleNotFoundError' is not defined"]),
        ("xcp-ng-8.3", ["ModuleNotFoundError", "No module named 'iLO'"]),
    ):
        with logged_in(WORLD.format(v=version)) as (w, s):
            x = s.xenapi
            h2 = _down(x, "h2")
            x.host.set_power_on_mode(h2, "iLO", {})  # iLO.py is gone (CP-33061)
            assert failure(x.host.power_on, h2) == ["XENAPI_PLUGIN_FAILURE", "main", *want]


def test_xe_host_power_on(tmp_path):
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        h2 = _down(x, "h2")
        xe = xe_runner(w.host("h1"), tmp_path)

        r = xe(
            "host-set-power-on-mode",
            "host=h2",
            "power-on-mode=wake-on-lan",
            "power-on-config:note=x",
        )
        assert (r.returncode, r.stderr) == (0, "")
        assert x.host.get_power_on_config(h2) == {"note": "x"}
        r = xe("host-power-on", "host=h2")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert _live(x, h2)
