"""Values round-trip through real clients on both transports (issue 12, items 5, 6, 10).

One world for the module; one Node process (``tests/node/rpc-proxy.mjs``, Xen Orchestra's
unmodified ``xen-api`` client on JSON-RPC and on XML-RPC) answers every Node call of the
module, a batch of calls per stdin line.

* Any text XAPI accepts, as a map key, a map value or a string parameter (``name_label``,
  ``name_description``, ``other_config`` keys and values, ``tags``), set by ``XenAPI`` over
  XML-RPC or by ``xen-api`` over JSON-RPC, reads back byte for byte through both. The one
  exception is XML's own: an XML parser reads CR as LF (end-of-line normalisation), so a CR
  cannot travel in an XML-RPC request, and one stored through JSON-RPC reads back through
  ``XenAPI`` as LF -- as with XAPI, which writes CR raw.
* A map key with markup (``"a<b"``) no longer breaks that object's record, ``get_all_records``
  and event batches for every XML-RPC client.
* Non-finite floats reach JSON-RPC clients as RFC 8259 JSON.
* ``system.isAlive:<x>`` is XAPI's probe: an echo without a session, bounded; other names
  starting ``system.isAlive`` are unknown methods.
"""

from __future__ import annotations

import json
import math
import pathlib
import queue
import shutil
import subprocess
import threading
import uuid

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.small_worlds import few_templates
from xapi_sim.dispatch import _BAD_CHARS
from xapi_sim.testing import running_world
from xapi_sim.wire.values import MAX_RPC_SIZE

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"
PROXY = NODE_DIR / "rpc-proxy.mjs"
TIMEOUT = 30


class NodeClient:
    """One ``rpc-proxy.mjs`` process: ``call``/``batch`` run calls through ``xen-api``."""

    def __init__(self, url):
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is required for the Xen Orchestra client (Node >= 18)")
        if not (NODE_DIR / "node_modules" / "xen-api" / "package.json").exists():
            pytest.fail(
                "the xen-api npm client is not installed: run "
                "`npm ci --prefix tests/node` (see README)"
            )
        self.proc = subprocess.Popen(
            [node, str(PROXY), url],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.next_id = 0
        ready = self._line()
        assert ready.get("ready") is True, (ready, self.stderr())

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _line(self):
        try:
            line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"rpc-proxy.mjs silent for {TIMEOUT} s") from None
        assert line is not None, f"rpc-proxy.mjs exited: {self.stderr()}"
        return json.loads(line)

    def stderr(self):
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()

    def batch(self, calls):
        """``calls``: [(via, method, *args)] -> [{"ok": ..., "result" | "code"/"params"}]."""
        self.next_id += 1
        line = json.dumps(
            {
                "id": self.next_id,
                "calls": [
                    {"via": via, "method": method, "args": list(args)}
                    for via, method, *args in calls
                ],
            }
        )
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self._line()
        assert out.get("id") == self.next_id, out
        return out["results"]

    def call(self, via, method, *args):
        (r,) = self.batch([(via, method, *args)])
        assert r["ok"], r
        return r["result"]

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.returncode == 0, self.stderr()


@pytest.fixture(scope="module")
def world():
    """The default world with 3 templates a pool (``tests/small_worlds.py``): the examples
    read every VM's record back (``get_all_records``) hundreds of times, and what they
    check is the records of the scenario's VMs."""
    with few_templates(), running_world() as w:
        yield w


@pytest.fixture(scope="module")
def node(world):
    client = NodeClient(world.master_url())
    yield client
    client.close()


@pytest.fixture(scope="module")
def vms(xapi):
    return {r["name_label"]: ref for ref, r in xapi.VM.get_all_records().items()}


def xml_read(s):
    """What any XML parser makes of a string XAPI wrote raw: CR and CRLF become LF."""
    return s.replace("\r\n", "\n").replace("\r", "\n")


def strict_json(body: bytes):
    def refuse(token):
        raise ValueError(f"not RFC 8259 JSON: {token}")

    return json.loads(body, parse_constant=refuse)


# -- item 5: any accepted text, any string position, both transports ----------------------------

# Text XAPI accepts (dispatch._BAD_CHARS refuses the rest), markup and whitespace drawn often.
REFUSED = "".join(
    chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and _BAD_CHARS.match(chr(c))
)
markup = st.sampled_from(list("<>&\"'\t\n ];"))
json_text = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cs",), exclude_characters=REFUSED), markup, st.just("\r")
    ),
    max_size=12,
)
# an XML-RPC request cannot carry CR: the server's XML parser reads it as LF
xml_text = st.text(
    st.one_of(st.characters(exclude_categories=("Cs",), exclude_characters=REFUSED + "\r"), markup),
    max_size=12,
)


def edits(text):
    return st.fixed_dictionaries(
        {
            "name_label": text,
            "name_description": text,
            "other_config": st.dictionaries(text, text, max_size=4),
            "added": st.tuples(text, text),
            "tags": st.lists(text, max_size=3, unique=True),
        }
    )


def expected(e):
    return {
        "name_label": e["name_label"],
        "name_description": e["name_description"],
        "other_config": {**e["other_config"], e["added"][0]: e["added"][1]},
        "tags": e["tags"],
    }


def seen(record):
    return {k: record[k] for k in ("name_label", "name_description", "other_config", "tags")}


def as_xml_client_reads(want):
    return {
        "name_label": xml_read(want["name_label"]),
        "name_description": xml_read(want["name_description"]),
        "other_config": {xml_read(k): xml_read(v) for k, v in want["other_config"].items()},
        "tags": [xml_read(t) for t in want["tags"]],
    }


EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@EXAMPLES
@given(edits(xml_text))
def test_text_set_over_xml_rpc_reads_back_exactly_everywhere(xapi, node, vms, e):
    assume(e["added"][0] not in e["other_config"])
    vm = vms["web1"]
    xapi.VM.set_name_label(vm, e["name_label"])
    xapi.VM.set_name_description(vm, e["name_description"])
    xapi.VM.set_other_config(vm, e["other_config"])
    xapi.VM.add_to_other_config(vm, *e["added"])
    xapi.VM.set_tags(vm, e["tags"])
    want = expected(e)
    assert seen(xapi.VM.get_record(vm)) == want
    assert seen(xapi.VM.get_all_records()[vm]) == want
    assert xapi.VM.get_other_config(vm) == want["other_config"]
    assert vm in xapi.VM.get_by_name_label(e["name_label"])
    rec, oc, labels = node.batch(
        [
            ("json", "VM.get_record", vm),
            ("json", "VM.get_other_config", vm),
            ("json", "VM.get_by_name_label", e["name_label"]),
        ]
    )
    assert seen(rec["result"]) == want
    assert oc["result"] == want["other_config"]
    assert vm in labels["result"]


@EXAMPLES
@given(edits(json_text))
def test_text_set_over_json_rpc_reads_back_exactly_everywhere(xapi, node, vms, e):
    assume(e["added"][0] not in e["other_config"])
    vm = vms["web2"]
    results = node.batch(
        [
            ("json", "VM.set_name_label", vm, e["name_label"]),
            ("json", "VM.set_name_description", vm, e["name_description"]),
            ("json", "VM.set_other_config", vm, e["other_config"]),
            ("json", "VM.add_to_other_config", vm, *e["added"]),
            ("json", "VM.set_tags", vm, e["tags"]),
            ("json", "VM.get_record", vm),
        ]
    )
    assert all(r["ok"] for r in results), results
    want = expected(e)
    assert seen(results[-1]["result"]) == want
    # XenAPI reads CR as LF (XML end-of-line normalisation), as from XAPI; nothing else moves
    assert seen(xapi.VM.get_record(vm)) == as_xml_client_reads(want)
    assert xapi.VM.get_other_config(vm) == as_xml_client_reads(want)["other_config"]


# -- item 5: one map key with markup broke every XML-RPC client ---------------------------------

MARKUP_KEYS = [
    "a<b",
    "a>b",
    "a&b",
    "&amp;",
    "]]>",
    '"quoted"',
    "<value>x</value>",
    "</name></member>",
    "tab\tkey",
    "line\nkey",
]


def test_markup_in_map_keys_breaks_no_client(world, xapi, node, vms, login):
    vm = vms["db1"]
    other = login(world.master_url())  # a second XML-RPC client, following events
    event_from = getattr(other.xenapi.event, "from")
    try:
        token = event_from(["VM"], "", 0.0)["token"]
        for i, k in enumerate(MARKUP_KEYS):
            xapi.VM.add_to_other_config(vm, k, f"<{i}>&")
        want = {k: f"<{i}>&" for i, k in enumerate(MARKUP_KEYS)}

        def has_keys(record):
            return {k: record["other_config"].get(k) for k in want} == want

        # XenAPI (Python, XML-RPC): the record, every record, the event batch
        assert has_keys(xapi.VM.get_record(vm))
        assert has_keys(xapi.VM.get_all_records()[vm])
        batch = event_from(["VM"], token, 5.0)
        snaps = [ev["snapshot"] for ev in batch["events"] if ev["ref"] == vm]
        assert snaps and has_keys(snaps[-1])
        # xen-api (Node): JSON-RPC and XML-RPC
        rec_json, all_xml, rec_xml = node.batch(
            [
                ("json", "VM.get_record", vm),
                ("xml", "VM.get_all_records"),
                ("xml", "VM.get_record", vm),
            ]
        )
        for r in (rec_json, all_xml, rec_xml):
            assert r["ok"], r
        assert has_keys(rec_json["result"])
        assert has_keys(rec_xml["result"])
        assert has_keys(all_xml["result"][vm])
    finally:
        for k in MARKUP_KEYS:
            xapi.VM.remove_from_other_config(vm, k)
        other.xenapi.session.logout()


# -- item 6: non-finite floats ------------------------------------------------------------------


@pytest.mark.parametrize("value,text", [(float("nan"), "NaN"), (float("inf"), "Infinity")])
def test_non_finite_floats_reach_json_clients_as_json(world, xapi, node, vms, wire, value, text):
    """XAPI accepts any multiplier not below 1 (``xapi_vm_helpers.ml``
    validate_HVM_shadow_multiplier): NaN and +inf pass. Set over XML-RPC, read over
    JSON-RPC: the reply must be RFC 8259 JSON, the float the string ``text``."""
    vm = vms["batch1"]
    url = world.master_url()
    xapi.VM.set_HVM_shadow_multiplier(vm, value)
    try:
        # XML-RPC keeps XAPI's rendering: <double>nan</double>, <double>inf</double>
        back = xapi.VM.get_HVM_shadow_multiplier(vm)
        assert (math.isnan(back) and math.isnan(value)) or back == value
        sref = wire.login(url)
        for version in (1, 2):
            for method, args, pick in [
                ("VM.get_HVM_shadow_multiplier", [vm], lambda r: r),
                ("VM.get_record", [vm], lambda r: r["HVM_shadow_multiplier"]),
                ("VM.get_all_records", [], lambda r: r[vm]["HVM_shadow_multiplier"]),
            ]:
                reply = wire.json_reply(url, method, [sref, *args], version=version)
                assert reply.status == 200
                assert pick(strict_json(reply.body)["result"]) == text, (method, version)
        ev = wire.json_reply(url, "event.from", [sref, ["VM"], "", 0.0])
        snaps = [e["snapshot"] for e in strict_json(ev.body)["result"]["events"] if e["ref"] == vm]
        assert snaps and snaps[-1]["HVM_shadow_multiplier"] == text
        # Xen Orchestra's client parses with JSON.parse: a bare NaN would fail the whole call
        assert node.call("json", "VM.get_HVM_shadow_multiplier", vm) == text
        assert node.call("json", "VM.get_record", vm)["HVM_shadow_multiplier"] == text
        # and what a JSON client reads, it can write back (float parameters take the string)
        node.call("json", "VM.set_HVM_shadow_multiplier", vm, text)
        back = xapi.VM.get_HVM_shadow_multiplier(vm)
        assert (math.isnan(back) and math.isnan(value)) or back == value
        wire.xml_ok(url, "session.logout", sref)
    finally:
        xapi.VM.set_HVM_shadow_multiplier(vm, 1.0)


# -- item 10: system.isAlive ---------------------------------------------------------------------


def both(wire, url, method, *params):
    """The XML-RPC Status struct and the JSON-RPC v2 reply of one call."""
    return wire.xml(url, method, *params), wire.json(url, method, list(params))


def test_is_alive_is_xapis_connection_probe(world, wire):
    """``xmlrpc_client.ml`` check_reusable: ``system.isAlive:<uuid>`` with the uuid as only
    parameter, no session; the reply must be Success with the uuid."""
    url = world.master_url()
    probe = str(uuid.uuid4())
    for name in (
        f"system.isAlive:{probe}",
        "system.isAlive:",
        "Async.system.isAlive:x",
        "system.isAlive:with space",
    ):
        xml, js = both(wire, url, name, probe)
        assert xml == {"Status": "Success", "Value": probe}, name
        assert js == {"jsonrpc": "2.0", "result": probe, "id": 1}, name
    # any first parameter is echoed, as XAPI does (the rest are ignored)
    xml, js = both(wire, url, "system.isAlive:x", {"a": ["b", "c"]}, "ignored")
    assert xml["Value"] == js["result"] == {"a": ["b", "c"]}


def test_is_alive_without_parameters_is_xapis_list_hd_failure(world, wire):
    xml, js = both(wire, world.master_url(), "system.isAlive:x")
    assert xml == {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", 'Failure("hd")']}
    assert js["error"] == {"code": 1, "message": "INTERNAL_ERROR", "data": ['Failure("hd")']}


@pytest.mark.parametrize(
    "name", ["system.isAlive", "system.isAliveX", "system.isAlive.x", "Async.system.isAlive"]
)
def test_other_is_alive_names_are_unknown_methods(world, wire, name):
    """Only ``system.isAlive:`` matches XAPI's ``Scanf "system.isAlive:%s"``; other names go
    down the unknown-method path: the first parameter is session-checked."""
    url = world.master_url()
    xml, js = both(wire, url, name, "echo-me")
    assert xml["ErrorDescription"] == ["SESSION_INVALID", "echo-me"]
    assert js["error"]["message"] == "SESSION_INVALID"
    bare = name.removeprefix("Async.")
    assert wire.xml_err(url, name) == ["MESSAGE_METHOD_UNKNOWN", bare]
    sref = wire.login(url)
    assert wire.xml_err(url, name, sref) == ["MESSAGE_METHOD_UNKNOWN", bare]
    wire.xml_ok(url, "session.logout", sref)


def test_is_alive_never_echoes_more_than_xapi_would(world, wire):
    """XAPI reads no RPC body over 300 KiB, so it never echoes more; the simulator's body
    limit is larger, so the echo itself is bounded."""
    url = world.master_url()
    at_limit = "a" * MAX_RPC_SIZE
    xml, js = both(wire, url, "system.isAlive:x", at_limit)
    assert xml["Value"] == js["result"] == at_limit
    big = "a" * (1 << 20)
    r = wire.xml_reply(url, "system.isAlive:x", big)
    assert r.status == 200 and len(r.body) < 1024
    assert r.xml()["ErrorDescription"] == [
        "INTERNAL_ERROR",
        "Http_svr.Client_requested_size_over_limit",
    ]
    r = wire.json_reply(url, "system.isAlive:x", [big])
    assert r.status == 200 and len(r.body) < 1024
    assert r.json()["error"]["data"] == ["Http_svr.Client_requested_size_over_limit"]
