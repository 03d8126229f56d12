"""The installed ``xe`` console script against a simulated pool: golden outputs.

Every command runs the real client (``shutil.which("xe")``) over the thin-CLI protocol
against ``running_world(seed=1)`` (the default scenario, reproducible uuids). Expected
outputs live in ``tests/golden/xe/<name>.txt`` as transcripts (command line, stdout, stderr,
exit status); timestamps that depend on the wall clock are replaced by ``<timestamp>``.
Regenerate after an intended change with ``XE_GOLDEN_UPDATE=1 pytest tests/integration/
test_xe.py`` and review the diff.

Read-only commands share one world per module; commands that change state get a fresh world.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import XenAPI

from xapi_sim import scenario
from xapi_sim.server import Simulator
from xapi_sim.testing import running_world
from xapi_sim.xe_server.commands import TABLE

# The console script installed with this interpreter (skips e.g. a pyenv shim on PATH).
XE = shutil.which("xe", path=os.path.dirname(sys.executable)) or shutil.which("xe")
pytestmark = pytest.mark.skipif(
    XE is None, reason="the xe console script is not installed (pip install -e .)"
)

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden" / "xe"
UPDATE = os.environ.get("XE_GOLDEN_UPDATE") == "1"
TIMESTAMP = re.compile(r"\b(?!19700101T00:00:00Z)\d{8}T\d{2}:\d{2}:\d{2}Z")
# per-vCPU usage is a simulated series of the time (docs/metrics.md): keep the keys only
UTILISATION = re.compile(r"(VCPUs-utilisation \(MRO\): )(.*)")


def _utilisation(m) -> str:
    return m.group(1) + re.sub(r"(\d+): [0-9.e+-]+", r"\1: <fraction>", m.group(2))


def _seeded_uuids():
    """UUIDs of the seeded default scenario (seed=1), read from a build of it."""
    w = scenario.build(scenario.default(), seed=1)
    db = w.pools[0].db
    vm = db.get("VM", db.by_label("VM", "web1")[0])["uuid"]
    return (
        db.get("pool", w.pools[0].ref)["uuid"],
        w.host_by_name("xs1").uuid,
        w.host_by_name("xs3").uuid,
        w.host_by_name("xs4").uuid,
        vm,
    )


POOL, XS1, XS3, XS4, WEB1 = _seeded_uuids()


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An empty HOME, so a developer's ~/.xe does not leak into the tests."""
    return tmp_path_factory.mktemp("home")


def xe_env(home, **extra):
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env["HOME"] = str(home)
    env.update(extra)
    return env


class Run:
    def __init__(self, argv, proc):
        self.argv = argv
        self.rc = proc.returncode
        # bytes, decoded without newline translation (a progress bar starts with "\r")
        self.out = proc.stdout.decode("utf-8")
        self.err = proc.stderr.decode("utf-8")

    def transcript(self) -> str:
        text = "$ xe " + " ".join(self.argv) + "\n" + self.out
        if self.err:
            text += "--- stderr ---\n" + self.err
        text += f"--- exit {self.rc} ---\n"
        return UTILISATION.sub(_utilisation, TIMESTAMP.sub("<timestamp>", text))


def connection_args(w, host):
    h = w.host(host)
    args = ["-s", h.address, "-p", str(h.port)]
    if h.address != "127.0.0.1":
        args.append("--nossl")  # xe speaks TLS to any other address by default
    return args


def xe(w, home, argv, host="xs1", input=None, auth=True, env=None):
    argv = argv.split() if isinstance(argv, str) else list(argv)
    cmd = [XE, *connection_args(w, host)]
    if auth:
        cmd += ["-u", w.user, "-pw", w.password]
    proc = subprocess.run(
        cmd + argv,
        capture_output=True,
        env=env or xe_env(home),
        input=input.encode() if input is not None else None,
        timeout=30,
    )
    return Run(argv, proc)


def check(name, run: Run):
    """Compare a run's transcript with tests/golden/xe/<name>.txt."""
    text = run.transcript()
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.exists(), f"no golden file {path}; run with XE_GOLDEN_UPDATE=1"
    assert text == path.read_bytes().decode("utf-8"), f"xe output differs from {path}"
    return run


@pytest.fixture(scope="module")
def ro(home):
    """One world for the read-only commands."""
    with running_world(seed=1) as w:
        yield w


@pytest.fixture
def fresh():
    with running_world(seed=1) as w:
        yield w


# -- read-only commands: golden outputs ------------------------------------------------------

READ_ONLY = [
    ("help", "help"),
    ("help--all", "help --all"),
    ("help-commands", "help vm-start host-cpu-info pool-param-get nosuch"),
    ("help--minimal", "help --minimal"),
    ("host-list", "host-list"),
    ("host-list--minimal", "host-list --minimal"),
    ("host-list-params", "host-list params=name-label,enabled,address name-label=xs2"),
    ("host-param-list", f"host-param-list uuid={XS1}"),
    ("host-param-get", f"host-param-get uuid={XS3} param-name=cpu_info"),
    ("host-param-get-key", f"host-param-get uuid={XS3} param-name=cpu_info param-key=features_hvm"),
    ("host-cpu-info", "host-cpu-info"),
    ("host-cpu-info-uuid", f"host-cpu-info uuid={XS3}"),
    ("host-cpu-info--minimal", "host-cpu-info --minimal"),
    ("host-get-cpu-features", "host-get-cpu-features"),
    ("host-get-cpu-features-uuid", f"host-get-cpu-features uuid={XS3}"),
    ("host-get-vms-which-prevent-evacuation", f"host-get-vms-which-prevent-evacuation uuid={XS1}"),
    ("pool-list", "pool-list"),
    ("pool-param-list", f"pool-param-list uuid={POOL}"),
    ("pool-param-get-cpu_info", f"pool-param-get uuid={POOL} param-name=cpu_info"),
    ("pool-param-get-key", f"pool-param-get uuid={POOL} param-name=cpu_info param-key=vendor"),
    ("pool-param-get-master", f"pool-param-get uuid={POOL} param-name=master"),
    ("vm-list", "vm-list"),
    ("vm-list-filter", "vm-list power-state=running params=uuid,name-label"),
    ("vm-list--minimal", "vm-list power-state=running --minimal"),
    ("vm-list-no-match--minimal", "vm-list power-state=paused --minimal"),
    ("vm-list-map-filter", "vm-list HVM-boot-params:order=cd params=name-label,HVM-boot-params"),
    ("vm-list-set-filter", "vm-list allowed-operations:contains=start params=name-label"),
    ("vm-list-params-all", "vm-list name-label=db1 params=all"),
    ("vm-param-list", f"vm-param-list uuid={WEB1}"),
    ("vm-param-get-flags", f"vm-param-get uuid={WEB1} param-name=last-boot-CPU-flags"),
    ("vm-param-get-power-state", f"vm-param-get uuid={WEB1} param-name=power-state"),
    ("template-list", "template-list"),
    ("message-list-empty", "message-list"),
    ("event-wait-satisfied", "event-wait class=vm name-label=web1 power-state=running"),
]


@pytest.mark.parametrize("name,argv", READ_ONLY, ids=[n for n, _ in READ_ONLY])
def test_read_only_golden(ro_runs, name, argv):
    r = check(name, ro_runs[name])
    assert r.rc == 0


ERRORS = [
    # name, argv, host
    ("error-unknown-command", "vm-frobnicate", "xs1"),
    ("error-missing-parameter", "pool-param-get param-name=cpu_info", "xs1"),
    ("error-missing-parameter-2", f"vm-param-get uuid={WEB1}", "xs1"),
    ("error-bad-uuid", "vm-param-list uuid=0000-not-a-uuid", "xs1"),
    ("error-bad-uuid-host-cpu-info", "host-cpu-info uuid=nope", "xs1"),
    (
        "error-param-name-underscore",
        f"vm-param-get uuid={WEB1} param-name=last_boot_CPU_flags",
        "xs1",
    ),
    (
        "error-key-not-in-map",
        f"pool-param-get uuid={POOL} param-name=cpu_info param-key=nope",
        "xs1",
    ),
    ("error-no-matching-vm", "vm-shutdown vm=no-such-vm", "xs1"),
    ("error-multiple-vms", "vm-shutdown power-state=running", "xs1"),
    ("error-unknown-field", "vm-list colour=blue", "xs1"),
    ("error-syntax", "name-label=x", "xs1"),
    ("error-unknown-switch", "vm-list -z 1", "xs1"),
    ("error-bad-minimal", "vm-list minimal=yes", "xs1"),
    ("error-vm-bad-power-state", "vm-start vm=web1", "xs1"),
    ("error-no-destination", "vm-migrate vm=web1", "xs1"),
    ("error-unknown-host", "vm-migrate vm=web1 host=xs9", "xs1"),
    ("error-host-not-disabled", "host-reboot host=xs2", "xs1"),
    ("error-multiple-hosts", "host-evacuate", "xs1"),
    ("error-event-class", "event-wait class=sr", "xs1"),
    ("error-host-is-slave", "vm-list", "xs2"),
    ("error-vm-param-set-int", f"vm-param-set uuid={WEB1} VCPUs-max=many", "xs1"),
    ("error-vm-param-set-readonly", f"vm-param-set uuid={WEB1} power-state=halted", "xs1"),
    (
        "error-multiple-failure",
        "vm-start is-control-domain=false power-state=running --multiple",
        "xs1",
    ),
]


@pytest.fixture(scope="module")
def ro_runs(ro, home):
    """Every read-only and error command of this module, run concurrently once."""
    jobs = {name: (argv, "xs1") for name, argv in READ_ONLY}
    jobs.update({name: (argv, host) for name, argv, host in ERRORS})
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(xe, ro, home, argv, host) for name, (argv, host) in jobs.items()
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name,argv,host", ERRORS, ids=[n for n, _, _ in ERRORS])
def test_errors_golden(ro_runs, name, argv, host):
    r = check(name, ro_runs[name])
    assert r.rc == 1
    assert r.err or r.out.startswith("operation failed on ")


def test_authentication_failed(ro, home):
    r = xe(ro, home, ["-u", "root", "-pw", "wrong", "vm-list"], auth=False)
    assert (r.rc, r.out, r.err) == (1, "", "Authentication failed\nFor usage run: 'xe help'\n")
    r = xe(ro, home, ["-u", "", "-pw", "x", "vm-list"], auth=False)
    assert (r.rc, r.err) == (1, "Username/password must be specified\nFor usage run: 'xe help'\n")
    # help needs no login; unknown commands and missing parameters fail before it
    r = xe(ro, home, ["-pw", "wrong", "help", "--minimal"], auth=False)
    assert r.rc == 0 and "vm-start" in r.out
    r = xe(ro, home, ["-pw", "wrong", "vm-frobnicate"], auth=False)
    assert r.err.startswith("Unknown command: vm-frobnicate\n")


def test_logout_after_each_command(ro, home):
    db = ro.world.pools[0].db
    before = db.count("session")
    xe(ro, home, "vm-list --minimal")
    xe(ro, home, "vm-shutdown vm=no-such-vm")
    assert db.count("session") == before


# -- commands that change state --------------------------------------------------------------


def test_vm_lifecycle(fresh, home):
    w = fresh
    check("vm-start-on", xe(w, home, "vm-start vm=batch1 on=xs2"))
    check(
        "vm-after-start",
        xe(w, home, "vm-list name-label=batch1 params=power-state,resident-on,last-boot-CPU-flags"),
    )
    check("vm-shutdown", xe(w, home, "vm-shutdown vm=web2"))
    check("vm-shutdown--force", xe(w, home, "vm-shutdown vm=batch1 --force"))
    check("vm-start", xe(w, home, "vm-start vm=web2"))
    check("vm-reboot", xe(w, home, "vm-reboot vm=web1"))
    check("vm-reboot--force", xe(w, home, "vm-reboot vm=web1 --force"))
    check("vm-suspend", xe(w, home, "vm-suspend vm=db1"))
    check("vm-resume--progress", xe(w, home, "vm-resume vm=db1 --progress"))
    check("vm-resume-on", xe(w, home, "vm-resume vm=legacy1 on=xs3"))
    check("vm-migrate", xe(w, home, "vm-migrate vm=web1 host=xs3 --live"))
    check("vm-migrate-live-param", xe(w, home, f"vm-migrate uuid={WEB1} host-uuid={XS1} live=true"))
    check("vm-list-after-lifecycle", xe(w, home, "vm-list is-control-domain=false"))
    check(
        "vm-param-set",
        xe(
            w,
            home,
            f"vm-param-set uuid={WEB1} name-label=web1b other-config:owner=ops user-version=3",
        ),
    )
    check(
        "vm-param-get-other-config",
        xe(w, home, f"vm-param-get uuid={WEB1} param-name=other-config"),
    )
    check(
        "vm-param-get-after-set",
        xe(w, home, f"vm-list uuid={WEB1} params=name-label,user-version,other-config"),
    )
    r = check(
        "vm-shutdown--multiple",
        xe(w, home, "vm-shutdown power-state=running is-control-domain=false --multiple"),
    )
    assert r.rc == 0
    check(
        "vm-list-all-halted",
        xe(w, home, "vm-list is-control-domain=false params=name-label,power-state"),
    )


def test_event_wait_blocks_until_the_condition_holds(fresh, home):
    w = fresh
    cmd = [
        XE,
        *connection_args(w, "xs1"),
        "-u",
        w.user,
        "-pw",
        w.password,
        "event-wait",
        "class=vm",
        "name-label=batch1",
        "power-state=running",
    ]
    waiter = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=xe_env(home)
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=0.7)
        assert xe(w, home, "vm-start vm=batch1").rc == 0
        out, err = waiter.communicate(timeout=15)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert (waiter.returncode, out, err) == (0, "", "")
    r = xe(w, home, "event-wait class=vm name-label=batch1 power-state=/=halted")
    assert r.rc == 0


def test_host_lifecycle(fresh, home):
    w = fresh
    check("host-disable", xe(w, home, "host-disable host=xs3"))
    check(
        "host-list-after-disable",
        xe(w, home, "host-list params=name-label,enabled,allowed-operations"),
    )
    check("host-evacuate", xe(w, home, "host-evacuate host=xs3"))
    check("host-reboot", xe(w, home, "host-reboot host=xs3"))
    check("host-list-after-reboot", xe(w, home, "host-list params=name-label,enabled"))
    check("host-disable-2", xe(w, home, "host-disable host=xs3"))
    check("host-enable", xe(w, home, "host-enable host=xs3"))
    check("host-disable-xs2", xe(w, home, "host-disable host=xs2"))
    xe(w, home, "host-disable host=xs3")
    check(
        "host-get-vms-which-prevent-evacuation-blocked",
        xe(w, home, f"host-get-vms-which-prevent-evacuation uuid={XS1}"),
    )
    check("host-evacuate-blocked", xe(w, home, "host-evacuate host=xs1"))
    check("host-shutdown", xe(w, home, "host-shutdown host=xs3"))
    check(
        "host-list-after-shutdown",
        xe(w, home, "host-list params=name-label,enabled,host-metrics-live"),
    )
    check("host-enable-xs2", xe(w, home, "host-enable host=xs2"))


def test_levelling_story(fresh, home):
    """The levelling story of docs/xe.md, told with xe only."""
    w = fresh
    check("story-01-host-cpu-info-xs1", xe(w, home, f"host-cpu-info uuid={XS1}"))
    check("story-02-host-cpu-info-xs4", xe(w, home, "host-cpu-info", host="xs4"))
    check("story-03-pool-cpu_info", xe(w, home, f"pool-param-get uuid={POOL} param-name=cpu_info"))
    check(
        "story-04-web1-flags",
        xe(w, home, f"vm-param-get uuid={WEB1} param-name=last-boot-CPU-flags"),
    )
    check(
        "story-05-pool-join-amd-refused",
        xe(
            w,
            home,
            "pool-join master-address=127.0.0.1 master-username=root master-password=xenroot",
            host="xs5",
        ),
    )
    check(
        "story-06-pool-join-xs4",
        xe(
            w,
            home,
            "pool-join master-address=127.0.0.1 master-username=root master-password=xenroot",
            host="xs4",
        ),
    )
    check("story-07-xs4-is-slave", xe(w, home, "host-list", host="xs4"))
    check("story-08-host-list", xe(w, home, "host-list params=name-label,address"))
    check(
        "story-09-pool-cpu_info-lowered",
        xe(w, home, f"pool-param-get uuid={POOL} param-name=cpu_info"),
    )
    check("story-10-message-list", xe(w, home, "message-list"))
    check("story-11-vm-migrate-refused", xe(w, home, "vm-migrate vm=web1 host=xs4 --live"))
    check("story-12-vm-migrate-forced", xe(w, home, "vm-migrate vm=web1 host=xs4 --live --force"))
    check("story-13-vm-start-new-level", xe(w, home, "vm-start vm=batch1 on=xs4"))
    check(
        "story-14-batch1-flags",
        xe(w, home, "vm-list name-label=batch1 params=name-label,last-boot-CPU-flags"),
    )
    check("story-15-pool-eject-aborted", xe(w, home, f"pool-eject host-uuid={XS4}", input="no\n"))
    check("story-16-pool-eject-refused", xe(w, home, f"pool-eject host-uuid={XS4}", input="yes\n"))
    check("story-17-host-evacuate-xs4", xe(w, home, "host-evacuate host=xs4"))
    check("story-18-pool-eject", xe(w, home, f"pool-eject host-uuid={XS4}", input="yes\n"))
    check("story-19-host-list-after-eject", xe(w, home, "host-list params=name-label"))
    check(
        "story-20-xs4-standalone-again", xe(w, home, "pool-list params=master,cpu_info", host="xs4")
    )


def test_pool_join_force_and_connection_failure(fresh, home):
    w = fresh
    check(
        "pool-join-unreachable",
        xe(
            w,
            home,
            "pool-join master-address=192.0.2.1 master-username=root master-password=xenroot",
            host="xs4",
        ),
    )
    check(
        "pool-join--force",
        xe(
            w,
            home,
            "pool-join master-address=127.0.0.1 "
            "master-username=root master-password=xenroot "
            "--force",
            host="xs4",
        ),
    )
    check("pool-eject--force", xe(w, home, f"pool-eject host-uuid={XS4} --force"))


# -- the client: settings, files, protocol errors --------------------------------------------


def test_dot_xe_file_and_extra_args(ro, home, tmp_path):
    h = ro.host("xs1")
    (tmp_path / ".xe").write_text(
        f"server={h.address}\nport={h.port}\nusername=root\npassword={ro.password}\n\nnossl=true\n"
    )
    env = xe_env(tmp_path)
    r = subprocess.run(
        [XE, "host-list", "--minimal", "params=name-label"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "xs1,xs2,xs3\n", "")
    # XE_EXTRA_ARGS wins over ~/.xe; non-client keys become command arguments
    (tmp_path / ".xe").write_text("password=wrong\n")
    env = xe_env(
        tmp_path,
        XE_EXTRA_ARGS=f"server={h.address},port={h.port},password={ro.password},params=name-label",
    )
    r = subprocess.run(
        [XE, "host-list", "--minimal"], capture_output=True, text=True, env=env, timeout=30
    )
    assert (r.returncode, r.stdout) == (0, "xs1,xs2,xs3\n")
    # the command line wins over both
    r = subprocess.run(
        [XE, "host-list", "-pw", "wrong"], capture_output=True, text=True, env=env, timeout=30
    )
    assert (r.returncode, r.stderr) == (1, "Authentication failed\nFor usage run: 'xe help'\n")
    # a line without '=' discards the file
    (tmp_path / ".xe").write_text("garbage\n")
    r = subprocess.run(
        [
            XE,
            "-s",
            h.address,
            "-p",
            str(h.port),
            "-pw",
            ro.password,
            "host-list",
            "--minimal",
            "params=name-label",
        ],
        capture_output=True,
        text=True,
        env=xe_env(tmp_path),
        timeout=30,
    )
    assert r.stderr == "Error parsing rc file. No defaults loaded\n"
    assert r.stdout == "xs1,xs2,xs3\n"


def test_password_file(ro, home, tmp_path):
    h = ro.host("xs1")
    pwf = tmp_path / "pw"
    pwf.write_text(f"root\n{ro.password}\n")
    base = [XE, "-s", h.address, "-p", str(h.port)]
    r = subprocess.run(
        base + ["-pwf", str(pwf), "pool-list", "--minimal"],
        capture_output=True,
        text=True,
        env=xe_env(home),
        timeout=30,
    )
    assert (r.returncode, r.stdout) == (0, POOL + "\n")
    pwf.write_text("root\n")
    r = subprocess.run(
        base + ["-pwf", str(pwf), "pool-list"],
        capture_output=True,
        text=True,
        env=xe_env(home),
        timeout=30,
    )
    assert (r.returncode, r.stderr) == (
        1,
        "Error: password file format: expecting username "
        "on the first line, password on the second line\n",
    )
    r = subprocess.run(
        base + ["-pwf", str(tmp_path / "none"), "pool-list"],
        capture_output=True,
        text=True,
        env=xe_env(home),
        timeout=30,
    )
    assert (r.returncode, r.stderr) == (1, f"Error opening password file '{tmp_path / 'none'}'\n")


def test_usage_and_version(home):
    r = subprocess.run([XE], capture_output=True, text=True, env=xe_env(home), timeout=30)
    assert r.returncode == 0 and r.stderr.startswith("Usage: xe <cmd> [-s server] [-p port]")
    r = subprocess.run(
        [XE, "-version"], capture_output=True, text=True, env=xe_env(home), timeout=30
    )
    assert (r.returncode, r.stdout) == (0, "ThinCLI protocol: 0.2\n")


def test_a_bug_in_a_command_is_an_internal_error_and_is_logged(fresh, home, monkeypatch, caplog):
    """An exception XAPI would not raise (a bug of the simulator) reaches the user as
    INTERNAL_ERROR, as any unexpected OCaml exception does, and the log keeps its traceback."""

    def broken(ctx):
        raise KeyError("bug")

    monkeypatch.setattr(TABLE["host-cpu-info"], "impl", broken)
    r = xe(fresh, home, "host-cpu-info")
    assert r.rc == 1
    assert r.err.endswith("message: INTERNAL_ERROR: [ KeyError: 'bug' ]\n")
    logged = [rec for rec in caplog.records if rec.name == "xapi_sim.xe_server.handler"]
    assert len(logged) == 1 and logged[0].exc_info[0] is KeyError
    assert "host-cpu-info" in logged[0].getMessage()
    # a modelled error is output only, not logged
    caplog.clear()
    assert xe(fresh, home, "vm-param-list uuid=nosuch").rc == 1
    assert not [rec for rec in caplog.records if rec.name == "xapi_sim.xe_server.handler"]


def _serve_once(reply: bytes):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


def test_not_a_cli_server(home):
    port = _serve_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    r = subprocess.run(
        [XE, "-s", "127.0.0.1", "-p", str(port), "vm-list"],
        capture_output=True,
        text=True,
        env=xe_env(home),
        timeout=30,
    )
    assert r.returncode != 0
    assert r.stderr.startswith("Failed to contact a running management agent.\n")


def test_nothing_listening(home):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = subprocess.run(
        [XE, "-s", "127.0.0.1", "-p", str(port), "vm-list"],
        capture_output=True,
        text=True,
        env=xe_env(home),
        timeout=30,
    )
    assert (r.returncode, r.stderr) == (1, "Error: Connection refused (calling connect )\n")


# -- TLS -------------------------------------------------------------------------------------


def test_tls(tmp_path, home):
    """--tls-cert/--tls-key: that certificate on every host, https:// URLs."""
    from xapi_sim.wire.tls import make_pem

    cert = key = tmp_path / "cert.pem"
    cert.write_bytes(make_pem("xapi-sim"))
    from xapi_sim import scenario

    world = scenario.build(scenario.default(), seed=1)
    sim = Simulator(world, port=0, tls_cert=str(cert), tls_key=str(key)).start()
    try:
        xs4 = world.host_by_name("xs4")
        assert xs4.url.startswith("https://")
        base = [XE, "-s", xs4.address, "-p", str(xs4.port), "-u", "root", "-pw", world.password]
        r = subprocess.run(
            base + ["host-list", "params=name-label"],
            capture_output=True,
            text=True,
            env=xe_env(home),
            timeout=30,
        )
        assert (r.returncode, r.stdout, r.stderr) == (0, "name-label ( RW)    : xs4\n\n\n", "")
        # every endpoint also speaks plain HTTP on the same port
        r = subprocess.run(
            base + ["--nossl", "host-list", "params=name-label"],
            capture_output=True,
            text=True,
            env=xe_env(home),
            timeout=30,
        )
        assert (r.returncode, r.stdout, r.stderr) == (0, "name-label ( RW)    : xs4\n\n\n", "")
        # 127.0.0.1: plain first, as xe does on-host, then TLS
        xs1 = world.host_by_name("xs1")
        r = subprocess.run(
            [
                XE,
                "-s",
                xs1.address,
                "-p",
                str(xs1.port),
                "-pw",
                world.password,
                "pool-list",
                "--minimal",
            ],
            capture_output=True,
            text=True,
            env=xe_env(home),
            timeout=30,
        )
        assert (r.returncode, r.stdout) == (0, POOL + "\n")
        session = XenAPI.Session(xs1.url, ignore_ssl=True)
        session.xenapi.login_with_password("root", world.password)
        try:
            assert session.xenapi.pool.get_all() != []
            assert session.xenapi.host.get_name_label(session.xenapi.host.get_by_uuid(XS1)) == "xs1"
        finally:
            session.xenapi.logout()
    finally:
        sim.stop()
