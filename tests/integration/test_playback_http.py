"""``GET /pool/xmldbdump`` (xen-api Dundee ``Pool_db_backup.pull_database_backup_handler``
behind ``Xapi_http.assert_credentials_ok`` and ``with_context``):

* credentials: ``session_id`` in the query or a cookie (the cookie wins), or basic auth
  checked by a login; otherwise 401 with ``WWW-Authenticate: Basic
  realm="get_pool_xml_db_sync"``; an Authorization header that is not ``Basic user:pw``
  is xapi's 500 page;
* the master streams the database (no length, connection closed) exactly as ``dump``
  writes it; a member answers 200 then the 500 page of ``Database_not_in_memory``; during a
  rolling upgrade both send the minimal Miami database;
* ``task_id`` is completed (or failed on a member); without one no task is left behind;
* Xen Orchestra's ``xen-api`` client downloads it with ``getResource`` and its task;
* many clients dumping while others write each get a consistent database.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import pathlib
import shutil
import subprocess
import threading

import pytest
import XenAPI

from xapi_sim import dbvalues, dbxml, playback, playback_dump
from xapi_sim.server import Simulator
from xapi_sim.world import World

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "xapi-db"
NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"
MASTER = "OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e01"
MEMBER = "OpaqueRef:0a7d3f52-1b2c-4d3e-9f40-5a6b7c8d9e02"


@pytest.fixture
def pool():
    """The Dundee sample served: (world, XenAPI session on the master)."""
    world = World(seed=0, auth_failure_delay=0.0)
    playback.load(world, str(DATA / "dundee-2hosts.xml"))
    sim = Simulator(world, port=0).start()
    s = XenAPI.Session(world.pools[0].master.url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    try:
        yield world, s
    finally:
        sim.stop()


def get(host, target, headers=None):
    """(status, headers, body) of one GET on ``host``'s endpoint."""
    c = http.client.HTTPConnection(host.address_for_url, host.port, timeout=30)
    try:
        c.request("GET", target, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def tables(body: bytes):
    f = dbxml.read(io.BytesIO(body))
    return {t: {r.ref: r.columns for r in rows} for t, rows in f.tables.items()}


def test_session_in_query_or_cookie(pool):
    world, s = pool
    m = world.pools[0].master
    status, headers, body = get(m, f"/pool/xmldbdump?session_id={s._session}")
    assert status == 200
    assert headers["connection"] == "close" and "content-length" not in headers
    assert tables(body) == tables("".join(playback_dump.dump(world.pools[0])).encode())
    status, _, body2 = get(m, "/pool/xmldbdump", {"Cookie": f"session_id={s._session}"})
    assert status == 200 and tables(body2) == tables(body)
    # the cookie comes first (req.cookie @ req.query)
    status, _, _ = get(
        m, "/pool/xmldbdump?session_id=OpaqueRef:bogus", {"Cookie": f"session_id={s._session}"}
    )
    assert status == 200
    status, _, _ = get(
        m, f"/pool/xmldbdump?session_id={s._session}", {"Cookie": "session_id=OpaqueRef:bogus"}
    )
    assert status == 401


def test_basic_auth(pool):
    world, _ = pool
    m = world.pools[0].master
    status, _, body = get(m, "/pool/xmldbdump", basic("root", "xenroot"))
    assert status == 200 and body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    before = len(world.pools[0].db.tables["session"])
    status, headers, body = get(m, "/pool/xmldbdump", basic("root", "wrong"))
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="get_pool_xml_db_sync"'
    assert body == (
        b"<html><body><h1>HTTP 401 unauthorised</h1>Please check your "
        b"credentials and retry.</body></html>"
    )
    assert len(world.pools[0].db.tables["session"]) == before


@pytest.mark.parametrize(
    "headers,target",
    [
        ({}, "/pool/xmldbdump"),
        ({}, "/pool/xmldbdump?session_id=OpaqueRef:NULL"),
        ({}, "/pool/xmldbdump?pool_secret=anything"),
        (basic("nobody", "xenroot"), "/pool/xmldbdump"),
    ],
)
def test_unauthorised(pool, headers, target):
    world, _ = pool
    status, h, _ = get(world.pools[0].master, target, headers)
    assert status == 401 and h["www-authenticate"] == 'Basic realm="get_pool_xml_db_sync"'


@pytest.mark.parametrize(
    "auth", ["Bearer abc", "Basic " + base64.b64encode(b"a:b:c").decode(), "Basic !!!"]
)
def test_unknown_authorization_header(pool, auth):
    world, _ = pool
    status, h, body = get(world.pools[0].master, "/pool/xmldbdump", {"Authorization": auth})
    assert status == 500 and h["content-type"] == "text/html"
    assert b"<h1> Additional information </h1>Failure(&quot;Unknown authorization header: " in body


def test_member_answers_200_then_its_500_page(pool):
    world, s = pool
    member = world.host(MEMBER)
    status, _, body = get(member, f"/pool/xmldbdump?session_id={s._session}")
    assert status == 200
    assert body.startswith(b"HTTP/1.1 500 Internal Error\r\n")
    assert body.endswith(
        b"<h1> Additional information </h1>Db_ref.Database_not_in_memory</body></html>"
    )


def test_task_id_completed_and_no_task_left(pool):
    world, s = pool
    x = s.xenapi
    before = set(x.task.get_all())
    assert get(world.pools[0].master, f"/pool/xmldbdump?session_id={s._session}")[0] == 200
    assert set(x.task.get_all()) == before
    task = x.task.create("backup", "")
    status, _, _ = get(
        world.pools[0].master, f"/pool/xmldbdump?session_id={s._session}&task_id={task}"
    )
    assert status == 200
    rec = x.task.get_record(task)
    assert (rec["status"], float(rec["progress"])) == ("success", 1.0)
    task2 = x.task.create("backup", "")
    status, _, _ = get(
        world.host(MEMBER), f"/pool/xmldbdump?session_id={s._session}&task_id={task2}"
    )
    rec = x.task.get_record(task2)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["INTERNAL_ERROR", "Db_ref.Database_not_in_memory"]


def test_rolling_upgrade_sends_the_minimal_miami_database():
    world = World(seed=0, auth_failure_delay=0.0)
    playback.load(world, str(DATA / "tampa-2hosts.xml"))
    sim = Simulator(world, port=0).start()
    try:
        p = world.pools[0]
        s = XenAPI.Session(p.master.url)
        s.xenapi.login_with_password("root", "xenroot", "2.4", "pytest")
        x = s.xenapi
        x.host.disable(p.master.ref)
        for vm in x.host.get_resident_VMs(p.master.ref):
            if not x.VM.get_is_control_domain(vm):
                x.VM.hard_shutdown(vm)
        s.xenapi_request("sim.host_install", (p.master.ref, "7.0.0"))
        s = XenAPI.Session(p.master.url)
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        assert s.xenapi.pool.get_other_config(p.ref)["rolling_upgrade_in_progress"] == "true"
        member = next(h for h in p.hosts() if h is not p.master)
        for host in (p.master, member):
            status, _, body = get(host, f"/pool/xmldbdump?session_id={s._session}")
            assert status == 200
            assert body.decode() == playback_dump.MINIMAL_MIAMI_DATABASE
    finally:
        sim.stop()


def test_xen_orchestra_get_resource(pool):
    """xen-api's ``getResource('/pool/xmldbdump')``: a task it created, the query's
    session_id and task_id, the body, then the task's result."""
    node = shutil.which("node")
    assert node is not None, "node is required (Node >= 18)"
    assert (NODE_DIR / "node_modules" / "xen-api" / "package.json").exists(), (
        "run `npm ci --prefix tests/node`"
    )
    world, _ = pool
    script = """
import { createClient } from 'xen-api'
const url = process.argv[process.argv.length - 1]
const xapi = createClient({ url, auth: { user: 'root', password: 'xenroot' },
                            allowUnauthorized: true })
await xapi.connect()
await xapi.objectsFetched
const response = await xapi.getResource('/pool/xmldbdump', { task: true })
const body = await response.body.text()
const result = await response.task
console.log(JSON.stringify({ status: response.statusCode, body, task: result ?? null }))
await xapi.disconnect()
"""
    r = subprocess.run(
        [node, "--input-type=module", "-e", script, world.pools[0].master.url],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == 200 and out["task"] == ""
    assert set(tables(out["body"].encode())["VM"]) == set(world.pools[0].db.tables["VM"])


def test_many_clients_dump_while_others_write(pool):
    """Each dump is one consistent database: every VM's VBDs column is exactly the VBD rows
    pointing at it, and every name a writer set is one a writer wrote."""
    world, s = pool
    m = world.pools[0].master
    vms = [ref for ref, row in world.pools[0].db.rows("VM") if not row["is_control_domain"]]
    errors, dumps = [], []
    stop = threading.Event()

    def writer(i):
        x = XenAPI.Session(m.url)
        x.xenapi.login_with_password("root", "xenroot", "2.5", f"w{i}")
        n = 0
        while not stop.is_set():
            n += 1
            x.xenapi.VM.set_name_description(vms[n % len(vms)], f"w{i}-{n}")

    def reader():
        try:
            for _ in range(5):
                status, _, body = get(m, f"/pool/xmldbdump?session_id={s._session}")
                assert status == 200
                dumps.append(body)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    readers = [threading.Thread(target=reader) for _ in range(6)]
    for t in writers + readers:
        t.start()
    for t in readers:
        t.join(120)
    stop.set()
    for t in writers:
        t.join(30)
    assert errors == [] and len(dumps) == 30
    for body in dumps:
        t = tables(body)
        for vm, cols in t["VM"].items():
            vbds = sorted(dbvalues.unmarshal_set(cols["VBDs"]))
            assert vbds == sorted(ref for ref, c in t["VBD"].items() if c["VM"] == vm)
            if vm in vms:
                desc = cols["name__description"]
                assert desc in (
                    "",
                    "Web front end   (nginx)",
                    "Quarterly archive job",
                ) or desc.startswith("w")
