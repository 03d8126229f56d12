"""Release profiles (docs/releases.md): every profile builds, reports its own identity, serves
exactly the API its datamodel lifecycles give, records follow its fields, and errors read in
its own words -- over the XenAPI package, raw XML-RPC and the project's ``xe``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from importlib import resources

import pytest
import XenAPI

from xapi_sim import errors, products
from xapi_sim.datamodel import RELEASE_INDEX, Schema
from xapi_sim.levelling import rules
from xapi_sim.testing import running_world

PROFILES = list(products.PROFILES)
XE = shutil.which("xe", path=os.path.dirname(sys.executable)) or shutil.which("xe")


def two_host_pool(version: str, cpus=("Haswell", "IvyBridge")) -> str:
    hosts = "".join(
        f'[[host]]\nname_label = "h{i}"\ncpu = "{cpu}"\nversion = "{version}"\n'
        for i, cpu in enumerate(cpus, 1)
    )
    members = ", ".join(f'"h{i}"' for i in range(2, len(cpus) + 1))
    return hosts + f'[[pool]]\nname_label = "p"\nmaster = "h1"\nmembers = [{members}]\n'


@pytest.fixture(scope="module", params=PROFILES)
def rel_world(request):
    with running_world(two_host_pool(request.param)) as w:
        yield request.param, w


def _expected_methods(release: str) -> set:
    """The wire names the datamodel lifecycles give ``release``, computed from the committed
    data directly: every message published by then, minus implicit ones removed by then,
    plus the generated ``get_all_records_where``/``get_all_where`` and system.listMethods."""
    raw = json.loads(resources.files("xapi_sim").joinpath("data/datamodel.json").read_text())
    idx = RELEASE_INDEX[release]

    def since_ok(since):
        return since is not None and RELEASE_INDEX.get(since, 10**6) <= idx

    out = {"system.listMethods"}
    for cname, c in raw["classes"].items():
        if not since_ok(c["since"]):
            continue
        names = set()
        for name, _p, _r, implicit, since, _dep, removed, _e in c["messages"]:
            gone = removed is not None and RELEASE_INDEX[removed] <= idx
            if since_ok(since) and not (implicit and gone):
                names.add(name)
        if "get_all_records" in names:
            names |= {"get_all_records_where", "get_all_where"}
        out |= {f"{cname}.{n}" for n in names}
    return out


def test_every_profile_is_named_by_name_and_by_version():
    for name, p in products.PROFILES.items():
        assert products.product(name) is p
        assert products.product(p.version) is p
        sv = dict(p.software_version)
        assert sv["product_version"] == p.version
        assert sv["platform_version"] == p.platform_version
        assert sv["xencenter_min"] == sv["xencenter_max"] == f"{p.api_major}.{p.api_minor}"
        assert p.levelling in rules.RULES
        assert p.release in RELEASE_INDEX
    with pytest.raises(ValueError, match="unknown product version"):
        products.product("9.9.9")


def test_api_versions_are_xen_apis():
    got = {n: (p.api_major, p.api_minor) for n, p in products.PROFILES.items()}
    assert got == {
        "cream": (2, 4),
        "dundee": (2, 5),
        "ely": (2, 6),
        "stockholm": (2, 15),
        "nile": (2, 20),
        "xcp-ng-8.3": (2, 21),
    }


def test_identity_and_cpu_info_keys(rel_world):
    name, w = rel_world
    p = products.PROFILES[name]
    s = XenAPI.Session(w.master_url())
    s.xenapi.login_with_password("root", "xenroot", "2.0", "test")
    try:
        hosts = s.xenapi.host.get_all_records()
        for h in hosts.values():
            assert h["software_version"] == dict(p.software_version)
            assert (int(h["API_version_major"]), int(h["API_version_minor"])) == (
                p.api_major,
                p.api_minor,
            )
            keys = set(h["cpu_info"])
            r = rules.rules(p.levelling)
            if r.cpu_keys == "host":
                assert {"features_pv_host", "features_hvm_host"} <= keys
                assert "features" not in keys
                assert ("threads_per_core" in keys) == r.threads_per_core
            elif r.cpu_keys == "dundee":
                assert {"features", "features_pv", "features_hvm"} <= keys
        pool = next(iter(s.xenapi.pool.get_all_records().values()))
        if rules.rules(p.levelling).cpu_keys == "host":
            assert set(pool["cpu_info"]) == {
                "vendor",
                "socket_count",
                "cpu_count",
                "features_pv_host",
                "features_hvm_host",
            }
        # TLS verification: on for a fresh XenServer 8 / XCP-ng 8.3 pool, absent before
        if "tls_verification_enabled" in pool:
            assert pool["tls_verification_enabled"] is p.tls_verification
        else:
            assert RELEASE_INDEX[p.release] < RELEASE_INDEX["1.290.0"]
        # records carry exactly the release's fields
        rec = next(iter(hosts.values()))
        assert set(rec) == set(Schema.for_release(p.release).classes["host"].fields)
        # templates: the release's catalogue
        templates = [v for v in s.xenapi.VM.get_all_records().values() if v["is_a_template"]]
        assert templates
    finally:
        s.xenapi.session.logout()


def test_list_methods_equals_the_lifecycles(rel_world):
    name, w = rel_world
    p = products.PROFILES[name]
    names = xmlrpc.client.ServerProxy(w.master_url()).system.listMethods()
    assert len(names) == len(set(names))
    assert set(names) == _expected_methods(p.release)


def test_generic_getters_and_setters_follow_the_release(rel_world):
    name, w = rel_world
    p = products.PROFILES[name]
    schema = Schema.for_release(p.release)
    s = XenAPI.Session(w.master_url())
    s.xenapi.login_with_password("root", "xenroot", "2.0", "test")
    try:
        host = s.xenapi.host.get_all()[0]
        has_certs = "certificates" in schema.classes["host"].fields
        if has_certs:
            # the host's server certificate, recorded at install (install_certs.py)
            assert len(s.xenapi.host.get_certificates(host)) == 1
        else:
            with pytest.raises(XenAPI.Failure) as e:
                s.xenapi.host.get_certificates(host)
            assert e.value.details[0] == "MESSAGE_METHOD_UNKNOWN"
        # a RW field of every release: the generic setter
        s.xenapi.host.set_name_description(host, f"runs {name}")
        assert s.xenapi.host.get_name_description(host) == f"runs {name}"
        # ssl_legacy: a field from Dundee, deprecated in Stockholm
        assert ("ssl_legacy" in s.xenapi.host.get_record(host)) == (
            "ssl_legacy" in schema.classes["host"].fields
        )
    finally:
        s.xenapi.session.logout()


def test_error_texts_are_each_releases():
    slave = (
        "You cannot make regular API calls directly on a slave. "
        "Please pass API calls via the master host."
    )
    assert errors.errors_for("dundee")["HOST_IS_SLAVE"][1] == slave
    assert errors.errors_for("ely")["HOST_IS_SLAVE"][1] == slave
    assert "pool member" in errors.errors_for("stockholm")["HOST_IS_SLAVE"][1]
    assert "supporter" in errors.errors_for("nile")["HOST_IS_SLAVE"][1]
    # codes a release did not have keep today's texts; parameter names are the release's
    for name in PROFILES:
        table = errors.errors_for(name)
        assert set(errors.ERRORS) <= set(table)


@pytest.mark.parametrize("version", ["dundee", "stockholm", "nile"])
def test_xe_prints_errors_in_the_releases_words(version, tmp_path):
    with running_world(two_host_pool(version)) as w:
        member = w.host("h2")
        cmd = [XE, "-s", member.address, "-p", str(member.port), "--nossl"]
        cmd += ["-u", "root", "-pw", "xenroot", "vm-list"]
        env = {**os.environ, "HOME": str(tmp_path)}
        env.pop("XE_EXTRA_ARGS", None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 1
    doc = errors.errors_for(version)["HOST_IS_SLAVE"][1]
    assert proc.stderr.splitlines()[0] == doc
    assert proc.stderr.splitlines()[1].startswith("Master IP address: ")


# -- xapi-sim serve --release ------------------------------------------------------------------


def _serve(tmp_path, *args):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xapi_sim", "serve", "--port", "0", "--ready-file", str(ready)]
        + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, ready


def test_serve_release_runs_the_default_world_on_that_release(tmp_path):
    proc, ready = _serve(tmp_path, "--release", "stockholm")
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no ready file"
            time.sleep(0.05)
        hosts = json.loads(ready.read_text())["hosts"]
        assert len(hosts) == 5  # the built-in world: pool-a of three, two standalone
        s = XenAPI.Session(hosts[0]["url"])
        s.xenapi.login_with_password("root", "xenroot", "2.15", "test")
        for h in s.xenapi.host.get_all_records().values():
            assert h["software_version"]["product_version"] == "8.2.1"
            assert h["API_version_minor"] == "15"
        s.xenapi.session.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--release", "quebec"], "unknown product version 'quebec'"),
        (["--release", "nile", "--scenario", "x.toml"], "--release picks the release"),
        (["--release", "cream"], "the built-in world cannot run as cream: pool with host"),
    ],
)
def test_serve_release_refusals(tmp_path, args, message):
    proc, ready = _serve(tmp_path, *args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and message in err and "Traceback" not in err
    assert not ready.exists()
