"""``xapi-sim serve`` as harnesses use it (docs/testing.md): ``--port 0 --ready-file`` in a
subprocess, the ready file's contents, real clients against the URLs it lists, SIGTERM exits 0,
``--seed`` reproducibility (also in-process: two builds with one seed have identical uuids
and refs), and a bad scenario refused with exit status 2 and a message naming the file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import XenAPI

from xapi_sim import scenario
from xapi_sim.testing import running_world

KEYS = {
    "name_label",
    "uuid",
    "address",
    "url",
    "pool",
    "pool_uuid",
    "master",
    "http_url",
    "https_url",
}


class Server:
    def __init__(self, tmp_path, *args, name="ready.json"):
        self.ready = tmp_path / name
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xapi_sim",
                "serve",
                "--port",
                "0",
                "--ready-file",
                str(self.ready),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                return json.loads(self.ready.read_text())
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"server exited {self.proc.returncode}: {out}\n{err}")
            time.sleep(0.05)
        raise AssertionError("no ready file")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError("server ignored SIGTERM") from None
        return self.proc.returncode, out, err


@pytest.fixture
def server_pair(tmp_path):
    """Two servers started concurrently with the same seed."""
    a = Server(tmp_path, "--seed", "7", name="a.json")
    b = Server(tmp_path, "--seed", "7", name="b.json")
    yield a, b
    for s in (a, b):
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


def by_name(ready):
    return {h["name_label"]: h for h in ready["hosts"]}


def test_ready_file_serves_and_sigterm_exits_0(server_pair, tmp_path):
    a, b = server_pair
    ready = a.wait_ready()
    b.wait_ready()
    assert set(ready) == {"hosts"}
    hosts = by_name(ready)
    assert sorted(hosts) == ["xs1", "xs2", "xs3", "xs4", "xs5"]
    assert all(set(h) == KEYS for h in hosts.values())
    assert hosts["xs1"]["master"] is True and hosts["xs1"]["pool"] == "pool-a"
    assert hosts["xs2"]["master"] is False and hosts["xs3"]["master"] is False
    assert hosts["xs2"]["pool_uuid"] == hosts["xs1"]["pool_uuid"]
    assert hosts["xs4"]["master"] and hosts["xs5"]["master"]
    assert hosts["xs4"]["pool_uuid"] != hosts["xs1"]["pool_uuid"]
    assert len({h["url"] for h in hosts.values()}) == 5
    assert not list(tmp_path.glob(".ready-*")), "temporary file left behind"

    # the URLs work with the real client; the uuids are the hosts' uuids
    s = XenAPI.Session(hosts["xs1"]["url"])
    s.xenapi.login_with_password("root", "xenroot", "2.5", "serve-test")
    for name in ("xs1", "xs2", "xs3"):
        ref = s.xenapi.host.get_by_uuid(hosts[name]["uuid"])
        assert s.xenapi.host.get_name_label(ref) == name
    pool = s.xenapi.pool.get_all()[0]
    assert s.xenapi.pool.get_uuid(pool) == hosts["xs1"]["pool_uuid"]
    # members redirect to the master's address as listed
    member = XenAPI.Session(hosts["xs2"]["url"])
    with pytest.raises(XenAPI.Failure) as e:
        member.xenapi.login_with_password("root", "xenroot")
    assert e.value.details == ["HOST_IS_SLAVE", hosts["xs1"]["address"]]
    # standalone hosts answer on their own URL
    s4 = XenAPI.Session(hosts["xs4"]["url"])
    s4.xenapi.login_with_password("root", "xenroot")
    assert s4.xenapi.host.get_record(s4.xenapi.host.get_all()[0])["uuid"] == hosts["xs4"]["uuid"]

    # --seed: the second server made the same objects
    ready_b = b.wait_ready()
    for name, h in by_name(ready_b).items():
        assert (h["uuid"], h["pool_uuid"]) == (hosts[name]["uuid"], hosts[name]["pool_uuid"])
    sb = XenAPI.Session(by_name(ready_b)["xs1"]["url"])
    sb.xenapi.login_with_password("root", "xenroot", "2.5", "serve-test")
    recs_a = s.xenapi.VM.get_all_records()
    recs_b = sb.xenapi.VM.get_all_records()
    assert {r: v["uuid"] for r, v in recs_a.items()} == {r: v["uuid"] for r, v in recs_b.items()}
    s.xenapi.session.logout()
    sb.xenapi.session.logout()

    t0 = time.monotonic()
    code, out, err = a.stop()
    assert code == 0, err
    assert time.monotonic() - t0 < 5
    assert "stopped" in out
    assert "Traceback" not in err
    code, _, err = b.stop()
    assert code == 0, err


def test_bad_scenario_exits_2_naming_the_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text('[[host]]\nname_label = "h1"\ncpu = "Pentium-9000"\n')
    ready = tmp_path / "never.json"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "xapi_sim",
            "serve",
            "--port",
            "0",
            "--scenario",
            str(bad),
            "--ready-file",
            str(ready),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2
    assert str(bad) in p.stderr and "cpu" in p.stderr
    assert "Traceback" not in p.stderr
    assert not ready.exists()


# -- --seed in process ---------------------------------------------------------------------


def identities(world):
    """Every generated (class, ref, uuid); roles are static in XAPI (rbac_static.ml)."""
    out = []
    for pool in world.pools:
        db = pool.db
        for cls, table in db.tables.items():
            if cls == "role":
                continue
            for ref, row in table.items():
                out.append((cls, ref, row.get("uuid")))
    return sorted(out)


def test_same_seed_same_uuids_and_refs():
    scn = scenario.default()
    a = scenario.build(scn, seed=1234)
    b = scenario.build(scn, seed=1234)
    ids_a = identities(a)
    assert ids_a == identities(b)
    assert len(ids_a) > 50
    assert [h.uuid for h in a.hosts.values()] == [h.uuid for h in b.hosts.values()]
    c = scenario.build(scn, seed=1235)
    assert not set(r for _, r, _ in identities(c)) & set(r for _, r, _ in ids_a)


def test_no_seed_differs_from_run_to_run():
    scn = scenario.default()
    a = scenario.build(scn, seed=None)
    b = scenario.build(scn, seed=None)
    assert not set(identities(a)) & set(identities(b))


def test_seeded_worlds_answer_the_same(login):
    """Same seed, same calls: the same refs and uuids on the wire (sessions included)."""
    seen = []
    for _ in range(2):
        with running_world(seed=99) as w:
            s = login(w.master_url())
            seen.append(
                (
                    s.handle,
                    sorted(s.xenapi.host.get_all()),
                    sorted(r["uuid"] for r in s.xenapi.VM.get_all_records().values()),
                )
            )
            s.xenapi.session.logout()
    assert seen[0] == seen[1]


def test_cli_rejects_tls_cert_without_key(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "xapi_sim", "serve", "--port", "0", "--tls-cert", os.devnull],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2


def test_log_options_write_internal_errors_with_their_traceback(tmp_path):
    """``serve --log-level/--log-file``: the task GC's failures are logged, not swallowed."""
    import logging

    from xapi_sim import cli

    log_file = tmp_path / "sim.log"
    cli.setup_logging(logging.INFO, str(log_file))
    try:
        logger = logging.getLogger("xapi_sim.classes.task")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("task GC pass failed")
    finally:
        for h in logging.getLogger("xapi_sim").handlers:
            h.close()
        logging.getLogger("xapi_sim").handlers[:] = []
        logging.getLogger("xapi_sim").propagate = True
    text = log_file.read_text()
    assert "task GC pass failed" in text and "Traceback" in text and "RuntimeError: boom" in text


def test_bad_log_level_is_refused():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "xapi_sim", "serve", "--log-level", "LOUD"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "expected DEBUG, INFO, WARNING or ERROR" in r.stderr
