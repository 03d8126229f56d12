"""``xapi-sim serve --xapi-db`` and ``xapi-sim export --format`` as a user runs them.

* ``serve --xapi-db A --xapi-db B``: one pool per file on loopback; the start-up output holds
  the load report and the table recorded address -> URL, the ready file each loaded host's
  ``recorded_address``; ``--password`` is root's password (the file has none); XenAPI logs
  in at the URLs; SIGTERM exits 0.
* A file that is not a database (or none at all) exits 2 with one line naming it.
* ``export --xapi-db F --format xmldbdump`` writes a database that loads back to the same
  records; ``--format scenario`` a scenario that builds; several pools need ``--pool``;
  a state dir seeded from ``--xapi-db`` exports the same way.
"""

from __future__ import annotations

import io
import json
import pathlib
import signal
import subprocess
import sys
import time

import XenAPI

from xapi_sim import dbxml, playback, scenario
from xapi_sim.world import World

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "xapi-db"
DUNDEE = str(DATA / "dundee-2hosts.xml")
TAMPA = str(DATA / "tampa-2hosts.xml")


def run(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "xapi_sim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Server:
    def __init__(self, tmp_path, *args):
        self.ready = tmp_path / "ready.json"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xapi_sim",
                "serve",
                "--port",
                "0",
                "--auth-delay",
                "0",
                "--ready-file",
                str(self.ready),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                return json.loads(self.ready.read_text())
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"server exited {self.proc.returncode}: {out}\n{err}")
            time.sleep(0.05)
        raise AssertionError("no ready file")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err


def test_serve_two_databases(tmp_path):
    srv = Server(tmp_path, "--xapi-db", DUNDEE, "--xapi-db", TAMPA, "--password", "pw1")
    try:
        desc = srv.wait_ready()
        hosts = {h["name_label"]: h for h in desc["hosts"]}
        assert {n: h["recorded_address"] for n, h in hosts.items()} == {
            "xs70-a": "10.0.0.11",
            "xs70-b": "10.0.0.12",
            "dt16": "10.80.227.166",
            "dt23": "10.80.227.184",
        }
        assert all(h["address"].startswith("127.") for h in hosts.values())
        for name in ("xs70-a", "dt16"):
            assert hosts[name]["master"]
            s = XenAPI.Session(hosts[name]["url"])
            s.xenapi.login_with_password("root", "pw1", "2.5", "pytest")
            assert (
                s.xenapi.host.get_address(s.xenapi.session.get_this_host(s._session))
                == hosts[name]["address"]
            )
            s.xenapi.session.logout()
    finally:
        code, out, err = srv.stop()
    assert code == 0, err
    assert f"xapi-sim: loaded {DUNDEE}: pool 'lab-pool' -- 2 hosts, 6 VMs, 2 SRs" in out
    assert "host.boot_free_mem: not in the API datamodel" in out
    table = out[out.index("RECORDED ADDRESS") :].splitlines()
    for name, h in hosts.items():
        assert any(
            line.split()[:2] == [h["recorded_address"], name] and line.split()[-1] == h["url"]
            for line in table[1:5]
        ), (name, table)


def test_serve_refuses_what_is_not_a_database(tmp_path):
    bad = tmp_path / "passwd"
    bad.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for target, why in (
        (str(bad), "not an xapi database"),
        (str(tmp_path / "missing.xml"), "cannot read it"),
        (str(tmp_path), "cannot read it"),
    ):
        r = run("serve", "--port", "0", "--xapi-db", target)
        assert r.returncode == 2, r
        assert r.stderr.count("\n") == 1 and target in r.stderr and why in r.stderr
        assert "Traceback" not in r.stderr


def test_export_xmldbdump_and_scenario(tmp_path):
    out = tmp_path / "dump.xml"
    r = run("export", "--xapi-db", DUNDEE, "--format", "xmldbdump", "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<database>')
    w1, w2 = World(seed=0), World(seed=0)
    playback.load(w1, DUNDEE)
    playback.load(w2, str(out))
    for cls in ("host", "VM", "SR", "VDI", "PIF", "network", "pool"):
        assert set(w1.pools[0].db.tables[cls]) == set(w2.pools[0].db.tables[cls])
    assert w1.pools[0].db.tables["VM"] == w2.pools[0].db.tables["VM"]
    r = run("export", "--xapi-db", DUNDEE, "--format", "scenario")
    assert r.returncode == 0, r.stderr
    scn = scenario.loads(r.stdout, "<export>")
    assert sorted(h.name_label for h in scn.hosts) == ["xs70-a", "xs70-b"]
    assert {v.name_label for v in scn.vms} == {"web", "db", "build", "archive"}


def test_export_from_a_state_dir_seeded_by_xapi_db(tmp_path):
    state = tmp_path / "state"
    srv = Server(tmp_path, "--xapi-db", DUNDEE, "--xapi-db", TAMPA, "--state-dir", str(state))
    try:
        srv.wait_ready()
    finally:
        code, _, err = srv.stop()
    assert code == 0, err
    r = run("export", "--state-dir", str(state), "--format", "xmldbdump")
    assert r.returncode == 2 and "choose one with --pool" in r.stderr
    assert "'lab-pool'" in r.stderr and "'16And23'" in r.stderr
    r = run("export", "--state-dir", str(state), "--format", "xmldbdump", "--pool", "16And23")
    assert r.returncode == 0, r.stderr
    f = dbxml.read(io.BytesIO(r.stdout.encode()))
    assert f.schema_version() == (5, 73)
    assert len(f.tables["VM"]) == 67 and len(f.tables["host"]) == 2
