"""Damaged and malformed state directories (issue 12 items 2 and 3).

Only bytes after the last newline of the last journal -- a write a crash cut short, never
acknowledged -- may be dropped. Anything else makes ``xapi-sim serve --state-dir`` (and
``export``) exit 2 with one line on stderr naming the file (and the journal line), leaving
every file untouched; ``xapi-sim repair`` keeps a backup and cuts the journal at the first
damaged line. Each case goes through the real ``xapi-sim`` command.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import tempfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statedir_kit import (
    Server,
    digest,
    lines,
    login,
    payload,
    reframe,
    refused,
    run_cli,
    to_v1,
    write_lines,
)

from xapi_sim import persist
from xapi_sim.datamodel import Timestamp

WRITES = 40


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A state dir with a journal of one layout line per host and WRITES lines each adding
    key k<i> to web1's other_config; returns (dir, web1 ref, {line number: key})."""
    work = tmp_path_factory.mktemp("kept")
    state = work / "state"
    srv = Server(state, work, "--seed", "3").start()
    try:
        x = login(srv.url()).xenapi
        vm = x.VM.get_by_name_label("web1")[0]
        for i in range(WRITES):
            x.VM.add_to_other_config(vm, f"k{i}", str(i))
    finally:
        srv.kill9()
    keys = {}
    for n, line in enumerate(lines(state / "journal.jsonl"), 1):
        for _pref, entry in payload(line)["pools"].items():
            for item in entry["rows"]:
                if item[1] == "VM" and item[2] == vm:
                    oc = item[3]["other_config"]
                    new = [k for k in oc if k.startswith("k") and k not in keys.values()]
                    if new:  # the key this write added (the last new one)
                        keys[n] = new[-1]
    assert len(keys) == WRITES
    return state, vm, keys


@pytest.fixture
def state(kept, tmp_path):
    d = tmp_path / "state"
    shutil.copytree(kept[0], d)
    return d


def web1_keys(srv, vm):
    oc = login(srv.url()).xenapi.VM.get_other_config(vm)
    return {k for k in oc if k.startswith("k")}


def assert_refused(state, *needles, commands=("serve", "export")):
    """Every command exits 2 with exactly one line on stderr holding ``needles``, and no
    file (nor the listing) changes."""
    before = digest(state)
    for command in commands:
        rc, out, err = refused(state, command)
        assert rc == 2, (command, out, err)
        assert len(err) == 1, (command, err)
        for n in needles:
            assert n in err[0], (command, n, err[0])
        assert digest(state) == before, command
    return err[0]


# -- damage in the middle of the journal ----------------------------------------------------


def test_one_damaged_line_in_the_middle_refuses_then_repair_cuts_there(kept, state, tmp_path):
    """The old failure: one bad line among 41 replayed what came before it, dropped the
    valid lines after it, and the next snapshot made that final."""
    _, vm, keys = kept
    journal = state / "journal.jsonl"
    items = lines(journal)
    total = len(items)
    bad = 12  # the 7th write (5 layout lines first)
    damaged = bytearray(items[bad - 1])
    damaged[len(damaged) // 2] ^= 0x20  # one flipped bit
    items[bad - 1] = bytes(damaged)
    write_lines(journal, items)
    original = journal.read_bytes()
    assert_refused(
        state,
        f"{journal} line {bad}",
        "checksum mismatch",
        f"{total - bad} valid lines follow it",
        "xapi-sim repair",
    )

    rc, out, err = run_cli("repair", "--state-dir", str(state))
    assert rc == 0 and not err, err
    assert (
        f"dropped {total - bad + 1} of {total} journal line(s), from journal.jsonl "
        f"line {bad} on (damaged: checksum mismatch)" in out
    )
    backups = [p for p in state.iterdir() if p.name.startswith("backup-")]
    assert len(backups) == 1 and (backups[0] / "journal.jsonl").read_bytes() == original
    assert len(lines(journal)) == bad - 1

    srv = Server(state, tmp_path).start()
    try:
        assert web1_keys(srv, vm) == {k for n, k in keys.items() if n < bad}
        assert len(web1_keys(srv, vm)) == 6
    finally:
        assert srv.stop() == 0


def test_a_torn_last_line_is_dropped(kept, state, tmp_path):
    _, vm, keys = kept
    journal = state / "journal.jsonl"
    items = lines(journal)
    write_lines(journal, items[:-1], tail=items[-1][: len(items[-1]) // 2])
    srv = Server(state, tmp_path).start()
    try:
        assert web1_keys(srv, vm) == set(keys.values()) - {keys[len(items)]}
    finally:
        assert srv.stop() == 0
    assert b"dropped an incomplete last line of journal.jsonl" in srv.out


def test_a_torn_line_with_journal_after_it_is_damage(state):
    journal, nxt = state / "journal.jsonl", state / "journal.next.jsonl"
    items = lines(journal)
    write_lines(journal, items[:20], tail=items[20][:30])
    write_lines(nxt, items[21:])
    assert_refused(state, f"{journal} line 21", "incomplete line with more journal after it")


def test_a_missing_line_is_a_gap(state):
    journal = state / "journal.jsonl"
    items = lines(journal)
    seq5 = payload(items[4])["seq"]
    write_lines(journal, items[:5] + items[6:])
    assert_refused(state, f"{journal} line 6", f"sequence number {seq5 + 2} after {seq5}")


def test_repair_of_a_clean_dir_changes_nothing(state):
    before = digest(state)
    rc, out, err = run_cli("repair", "--state-dir", str(state))
    assert rc == 0 and "nothing to repair" in out
    assert digest(state) == before


# -- valid JSON, wrong shape ---------------------------------------------------------------


def _bad_lines(vm):
    return {
        "an array": lambda seq: [],
        "no pools": lambda seq: {"seq": seq, "layout": None},
        "pools not an object": lambda seq: {"seq": seq, "layout": None, "pools": 5},
        "seq a string": lambda seq: {"seq": str(seq), "layout": None, "pools": {}},
        "bad row item": lambda seq: {
            "seq": seq,
            "layout": None,
            "pools": {"OpaqueRef:p": {"release": "dundee", "rows": [["upsert", "VM", vm]]}},
        },
        "unknown release": lambda seq: {
            "seq": seq,
            "layout": None,
            "pools": {"OpaqueRef:p": {"release": "zz", "rows": []}},
        },
        "field of the wrong type": lambda seq: {
            "seq": seq,
            "layout": None,
            "pools": {
                "OpaqueRef:p": {
                    "release": "dundee",
                    "rows": [["put", "VM", vm, {"memory_static_max": "lots"}]],
                }
            },
        },
        "layout without hosts": lambda seq: {
            "seq": seq,
            "layout": {"user": "root", "password": "x", "seed": 1, "pools": []},
            "pools": {},
        },
    }


@pytest.mark.parametrize("case", list(_bad_lines("x")))
def test_a_well_formed_line_of_the_wrong_shape_is_refused(kept, state, case):
    _, vm, _ = kept
    journal = state / "journal.jsonl"
    items = lines(journal)
    seq = payload(items[9])["seq"]
    items[9] = reframe(_bad_lines(vm)[case](seq))
    write_lines(journal, items)
    assert_refused(state, f"{journal} line 10", "wrong shape")


# -- malformed state.json --------------------------------------------------------------------


def _edit(snap, path, value):
    obj = snap
    for k in path[:-1]:
        obj = obj[k]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


STATE_CASES = {
    "only format and version": (
        lambda s: {"format": s["format"], "version": 2},
        "no 'layout' object",
    ),
    "no pools": (lambda s: _edit(s, ["pools"], KeyError), "no 'pools' object"),
    "no seq": (lambda s: _edit(s, ["seq"], KeyError), "'seq'"),
    "seq a string": (lambda s: _edit(s, ["seq"], "7"), "'seq'"),
    "port a string": (
        lambda s: _edit(s, ["layout", "hosts", 0, "port"], "x"),
        "layout.hosts[0].port",
    ),
    "host state unknown": (
        lambda s: _edit(s, ["layout", "hosts", 1, "state"], "asleep"),
        "layout.hosts[1].state",
    ),
    "unknown cpu": (
        lambda s: _edit(s, ["layout", "hosts", 0, "hw", "cpu"], "Z80"),
        "layout.hosts[0].hw.cpu",
    ),
    "master not in pool": (
        lambda s: _edit(s, ["layout", "pools", 0, "master"], "OpaqueRef:nobody"),
        "is not a host of that pool",
    ),
    "tables a list": (
        lambda s: [_edit(s, ["pools", p, "tables"], []) for p in s["pools"]],
        ".tables: expected an object",
    ),
    "row field of the wrong type": (
        lambda s: [
            _edit(s, ["pools", p, "tables", "pool", r, "name_label"], 42)
            for p in s["pools"]
            for r in s["pools"][p]["tables"]["pool"]
        ],
        "name_label: expected string",
    ),
    "a pool row missing": (
        lambda s: [_edit(s, ["pools", p, "tables", "pool"], {}) for p in s["pools"]],
        "the kept world (state.json and its journal) is inconsistent: pool",
    ),
    "not an xapi-sim file": (lambda s: {"hello": "world"}, "not an xapi-sim state file"),
}


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_a_malformed_state_json_is_refused(state, case):
    edit, needle = STATE_CASES[case]
    sp = state / "state.json"
    snap = json.loads(sp.read_text())
    out = edit(snap)
    if isinstance(out, dict):
        snap = out
    sp.write_text(json.dumps(snap))
    # a world inconsistent as a whole is not one file's fault: the directory is named
    assert_refused(state, str(state) if "inconsistent" in needle else str(sp), needle)


def test_a_state_json_that_is_not_json_is_refused(state):
    sp = state / "state.json"
    sp.write_bytes(sp.read_bytes()[:1000])
    assert_refused(state, str(sp), "not valid JSON")


def test_a_state_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "state"
    f.write_text("not a directory")
    assert_refused(f, str(f), "not a directory")


def test_a_deleted_state_json_next_to_a_journal_is_refused(state):
    (state / "state.json").unlink()
    assert_refused(state, "journal.jsonl is there but state.json is missing")


def _without_dac_override():
    """In the child, before exec: as root, drop the capabilities that let root write into
    a read-only directory (so the test needs no other user)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_read_only_state_dir_is_refused_at_start(state):
    mode = stat.S_IMODE(os.stat(state).st_mode)
    os.chmod(state, 0o555)
    try:
        before = digest(state)
        rc, out, err = refused(state, "serve", preexec_fn=_without_dac_override)
        assert rc == 2 and len(err) == 1 and str(state) in err[0] and "read-only" in err[0]
        assert digest(state) == before
        # export only reads: it works on a read-only directory
        rc, out, err = refused(state, "export", preexec_fn=_without_dac_override)
        assert rc == 0 and "[[host]]" in out
    finally:
        os.chmod(state, mode)


def test_an_unwritable_fresh_state_dir_is_refused(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    os.chmod(d, 0o555)
    try:
        rc, out, err = refused(d, "serve", preexec_fn=_without_dac_override)
        assert rc == 2 and len(err) == 1 and "read-only" in err[0]
        assert os.listdir(d) == []
    finally:
        os.chmod(d, 0o755)


def test_export_of_a_directory_without_a_world(tmp_path):
    rc, _, err = refused(tmp_path, "export")
    assert rc == 2 and err == [f"xapi-sim: {tmp_path}: no world kept here (no state.json)"]
    rc, _, err = refused(tmp_path / "nowhere", "export")
    assert rc == 2 and len(err) == 1 and "no such directory" in err[0]


# -- version 1 directories -------------------------------------------------------------------


def test_a_version_1_dir_is_read_and_converted(kept, state, tmp_path):
    _, vm, keys = kept
    to_v1(str(state))
    srv = Server(state, tmp_path).start()
    try:
        assert web1_keys(srv, vm) == set(keys.values())
    finally:
        assert srv.stop() == 0
    assert b"converted from state format version 1 to 2" in srv.out
    snap = json.loads((state / "state.json").read_text())
    assert snap["version"] == 2
    persist.scan(str(state))


def test_a_version_1_dir_damaged_in_the_middle(kept, state, tmp_path):
    _, vm, keys = kept
    journal = state / "journal.jsonl"
    items = lines(journal)
    total = len(items)
    write_lines(journal, items[:12])
    write_lines(state / "journal.next.jsonl", items[12:])
    to_v1(str(state))
    items = lines(journal)
    items[7] = items[7][: len(items[7]) // 2]  # v1 has no checksum: a cut line
    write_lines(journal, items)
    assert_refused(state, f"{journal} line 8", "not JSON")
    rc, out, err = run_cli("repair", "--state-dir", str(state))
    assert rc == 0, err
    # no sequence numbers: journal.next cannot be told to follow on, so it goes too
    assert f"dropped {total - 7} of {total} journal line(s)" in out
    assert os.path.getsize(state / "journal.next.jsonl") == 0
    srv = Server(state, tmp_path).start()
    try:
        assert web1_keys(srv, vm) == {k for n, k in keys.items() if n <= 7}
    finally:
        assert srv.stop() == 0


# -- properties over the checker (in-process) ------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=10**9))
def test_any_cut_of_the_journal_loads_the_complete_lines(kept, cut):
    """A crash can leave the journal at any length: everything up to the last complete line
    loads, the rest is a torn tail."""
    src, _, _ = kept
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "s")
        shutil.copytree(src, d)
        p = os.path.join(d, "journal.jsonl")
        data = open(p, "rb").read()
        cut %= len(data) + 1
        open(p, "wb").write(data[:cut])
        s = persist.scan(d)
        assert s.replayed + s.skipped == data[:cut].count(b"\n")
        assert [t[2] for t in s.torn] == (
            [cut - data[:cut].rfind(b"\n") - 1] if not data[:cut].endswith(b"\n") and cut else []
        )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(min_value=0, max_value=10**9), value=st.integers(1, 255))
def test_any_changed_byte_is_caught_at_its_line(kept, pos, value):
    """One byte changed anywhere in the journal: refused at that byte's line -- unless it
    was the last newline, which makes the last line an (unacknowledged) torn tail."""
    src, _, _ = kept
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "s")
        shutil.copytree(src, d)
        p = os.path.join(d, "journal.jsonl")
        data = bytearray(open(p, "rb").read())
        pos %= len(data)
        data[pos] ^= value
        open(p, "wb").write(bytes(data))
        line = data[:pos].count(b"\n") + 1
        if pos == len(data) - 1:
            s = persist.scan(d)
            assert s.torn and s.replayed + s.skipped == data.count(b"\n")
            return
        with pytest.raises(persist.JournalDamage) as e:
            persist.scan(d)
        assert e.value.line == line and e.value.name == "journal.jsonl"


@settings(max_examples=60, deadline=None)
@given(
    junk=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda c: st.lists(c) | st.dictionaries(st.text(), c),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_line_content_is_a_state_error_never_a_traceback(kept, junk):
    src, _, _ = kept
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "s")
        shutil.copytree(src, d)
        p = os.path.join(d, "journal.jsonl")
        items = lines(p)
        junk = junk.replace(b"\n", b" ")
        for framed in (junk, reframe_bytes(junk)):
            write_lines(p, items[:3] + [framed] + items[4:])
            try:
                persist.scan(d)
            except persist.StateError:
                pass


def reframe_bytes(body: bytes) -> bytes:
    return b"%08x %s" % (zlib.crc32(body), body)


def test_a_version_1_line_of_the_wrong_shape_is_refused(state):
    to_v1(str(state))
    journal = state / "journal.jsonl"
    items = lines(journal)
    items[3] = json.dumps({"layout": None, "pools": {"OpaqueRef:p": 5}}).encode()
    write_lines(journal, items)
    assert_refused(state, f"{journal} line 4", "wrong shape")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(st.text(), _json, max_size=5))
def test_a_framed_line_reads_back_and_holds_no_newline(body):
    line = persist.frame(body)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert persist._parse_line(line[:-1], 2) == body


_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.text().map(Timestamp),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text() | st.integers(), c, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(v=_value)
def test_values_survive_encoding(v):
    """Datetimes stay datetimes and map keys keep their type through JSON."""
    back = persist.dec(json.loads(json.dumps(persist.enc(v))))
    assert back == v

    def types(x):
        if isinstance(x, dict):
            return ("d", sorted((type(k).__name__, repr(k), types(y)) for k, y in x.items()))
        if isinstance(x, list):
            return ("l", [types(y) for y in x])
        return type(x).__name__

    assert types(back) == types(v)


def test_hardware_nics_are_kept_and_older_state_takes_the_default(tmp_path):
    import attrs

    from xapi_sim import scenario

    world = scenario.build(scenario.default(), seed=2)
    h = world.host_by_name("xs2")
    h.hw = attrs.evolve(h.hw, nics=6)
    d = tmp_path / "s"
    d.mkdir()
    journal = persist.Journal(world, str(d))
    journal.write_snapshot()
    journal.close()
    back, _ = persist.load(str(d))
    assert back.host_by_name("xs2").hw.nics == 6
    assert back.host_by_name("xs1").hw.nics == 4
    sp = d / "state.json"
    snap = json.loads(sp.read_text())
    for hd in snap["layout"]["hosts"]:
        del hd["hw"]["nics"]  # written before hosts had a NIC count
    sp.write_text(json.dumps(snap))
    assert persist.load(str(d))[0].host_by_name("xs2").hw.nics == 4
    snap["layout"]["hosts"][0]["hw"]["nics"] = 0
    sp.write_text(json.dumps(snap))
    with pytest.raises(persist.StateError) as e:
        persist.load(str(d))
    assert "layout.hosts[0].hw.nics: expected an integer from 1 to 64, got 0" in str(e.value)
