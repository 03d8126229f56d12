"""What a state directory holds and how it is checked: the format constants, line framing,
the checks of snapshot, layout, rows and journal lines, and the scan that tells damage
from a torn tail."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zlib

from .. import products
from ..datamodel import Schema
from ..install_network import DEFAULT_NICS, MAX_NICS
from ..levelling import cpus
from ..rowcodec import dec, enc  # noqa: F401 -- also used by importers of persist

log = logging.getLogger(__name__)

FORMAT = "xapi-sim-state"
VERSION = 2
READABLE_VERSIONS = (1, 2)
NOT_PERSISTED = {"session", "task"}
STATE = "state.json"
JOURNAL = "journal.jsonl"
JOURNAL_NEXT = "journal.next.jsonl"
JOURNALS = (JOURNAL, JOURNAL_NEXT)
HOST_STATES = ("up", "down", "crashed")


# -- checking what is on disk ---------------------------------------------------------------


class StateError(ValueError):
    """The state directory cannot be used; the text is one line for the user."""


class JournalDamage(StateError):
    """A journal line that is not a torn tail: ``repair`` cuts the journal there."""

    def __init__(self, state_dir, name, line, offset, reason, valid_after):
        self.state_dir, self.name, self.line, self.offset = state_dir, name, line, offset
        self.reason, self.valid_after = reason, valid_after
        path = os.path.join(state_dir, name)
        follow = (
            f"{valid_after} valid line{'s' if valid_after != 1 else ''} follow it"
            if valid_after
            else "no valid line follows it"
        )
        super().__init__(
            f"{path} line {line}: {reason} ({follow}); refusing to start, nothing was "
            f"changed. 'xapi-sim repair --state-dir {state_dir}' keeps a backup and cuts the "
            f"journal at line {line}"
        )


class _Bad(Exception):
    """A shape error, with where it is."""


def _want(cond, msg):
    if not cond:
        raise _Bad(msg)


def _short(v, n=60):
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def _is_int(v):
    return type(v) is int


def _served_releases():
    return {p.release for p in products.PRODUCTS.values()}


def _check_hw(d, where):
    _want(isinstance(d, dict), f"{where}: expected an object, got {_short(d)}")
    for k in (
        "cpu",
        "hidden_features",
        "sockets",
        "cpus_per_socket",
        "memory",
        "mask",
        "overrides",
    ):
        _want(k in d, f"{where}: no {k!r}")
    _want(isinstance(d["cpu"], str), f"{where}.cpu: expected a string")
    try:
        cpus.model(d["cpu"])
    except ValueError as e:
        raise _Bad(f"{where}.cpu: {e}") from None
    _want(
        isinstance(d["hidden_features"], list)
        and all(isinstance(x, str) for x in d["hidden_features"]),
        f"{where}.hidden_features: expected a list of strings",
    )
    for k in ("sockets", "cpus_per_socket", "memory"):
        _want(
            _is_int(d[k]) and d[k] > 0,
            f"{where}.{k}: expected a positive integer, got {_short(d[k])}",
        )
    _want(
        d["mask"] is None or isinstance(d["mask"], list), f"{where}.mask: expected a list or null"
    )
    _want(
        isinstance(d["overrides"], dict)
        and all(isinstance(v, str) for v in d["overrides"].values()),
        f"{where}.overrides: expected an object of strings",
    )
    nics = d.get("nics", DEFAULT_NICS)
    _want(
        _is_int(nics) and 1 <= nics <= MAX_NICS,
        f"{where}.nics: expected an integer from 1 to {MAX_NICS}, got {_short(nics)}",
    )


def _check_layout(lay, where="layout"):
    _want(isinstance(lay, dict), f"{where}: expected an object, got {_short(lay)}")
    for k in ("user", "password", "seed", "pools", "hosts"):
        _want(k in lay, f"{where}: no {k!r}")
    _want(isinstance(lay["user"], str), f"{where}.user: expected a string")
    _want(isinstance(lay["password"], str), f"{where}.password: expected a string")
    _want(lay["seed"] is None or _is_int(lay["seed"]), f"{where}.seed: expected an integer or null")
    _want(isinstance(lay["pools"], list), f"{where}.pools: expected a list")
    _want(isinstance(lay["hosts"], list), f"{where}.hosts: expected a list")
    releases = _served_releases()
    prefs = {}
    for i, p in enumerate(lay["pools"]):
        w = f"{where}.pools[{i}]"
        _want(isinstance(p, dict), f"{w}: expected an object")
        for k in ("ref", "master", "release"):
            _want(isinstance(p.get(k), str), f"{w}.{k}: expected a string, got {_short(p.get(k))}")
        _want(
            p["release"] in releases,
            f"{w}.release: {p['release']!r} is not a release "
            f"xapi-sim serves ({', '.join(sorted(releases))})",
        )
        _want(isinstance(p.get("password", ""), str), f"{w}.password: expected a string")
        _want(p["ref"] not in prefs, f"{w}: pool {p['ref']} appears twice")
        prefs[p["ref"]] = p
    hrefs = {}
    for i, h in enumerate(lay["hosts"]):
        w = f"{where}.hosts[{i}]"
        _want(isinstance(h, dict), f"{w}: expected an object")
        for k in ("ref", "uuid", "name_label", "version", "address"):
            _want(isinstance(h.get(k), str), f"{w}.{k}: expected a string, got {_short(h.get(k))}")
        _want(
            h["version"] in products.PRODUCTS,
            f"{w}.version: unknown product version {h['version']!r}",
        )
        _want(
            h.get("build_number") is None or isinstance(h["build_number"], str),
            f"{w}.build_number: expected a string",
        )
        for k in (
            "hw",
            "next_hw",
            "pool",
            "state",
            "port",
            "started_once",
            "disabled_until_reboot",
        ):
            _want(k in h, f"{w}: no {k!r}")
        _check_hw(h["hw"], f"{w}.hw")
        if h["next_hw"] is not None:
            _check_hw(h["next_hw"], f"{w}.next_hw")
        _want(
            h["pool"] is None or h["pool"] in prefs,
            f"{w}.pool: {_short(h['pool'])} is not a pool of the layout",
        )
        _want(
            h["state"] in HOST_STATES,
            f"{w}.state: expected one of {', '.join(HOST_STATES)}, got {_short(h['state'])}",
        )
        _want(
            _is_int(h["port"]) and 0 <= h["port"] <= 65535,
            f"{w}.port: expected a port number, got {_short(h['port'])}",
        )
        for k in ("started_once", "disabled_until_reboot"):
            _want(type(h[k]) is bool, f"{w}.{k}: expected true or false")
        _want(h["ref"] not in hrefs, f"{w}: host {h['ref']} appears twice")
        hrefs[h["ref"]] = h
    for ref, p in prefs.items():
        m = hrefs.get(p["master"])
        _want(
            m is not None and m["pool"] == ref,
            f"{where}: the master {p['master']} of pool {ref} is not a host of that pool",
        )


_TYPE_CHECKS: dict = {}


def _field_types(release, cls):
    key = (release, cls)
    t = _TYPE_CHECKS.get(key)
    if t is None:
        c = Schema.for_release(release).classes.get(cls)
        t = _TYPE_CHECKS[key] = {} if c is None else {n: f.type for n, f in c.fields.items()}
    return t


def _type_text(ty):
    k = ty.kind
    if k in ("ref", "record"):
        return f"{ty.name} {k}"
    if k == "enum":
        return f"enum {ty.name}"
    if k == "set":
        return f"{_type_text(ty.elem)} set"
    if k == "map":
        return f"({_type_text(ty.key)} -> {_type_text(ty.elem)}) map"
    return k


def _value_ok(ty, v) -> bool:
    k = ty.kind
    if k in ("string", "ref", "enum", "datetime"):
        return isinstance(v, str)
    if k == "int":
        return type(v) is int
    if k == "float":
        return type(v) in (int, float)
    if k == "bool":
        return type(v) is bool
    if k == "set":
        return isinstance(v, list) and all(_value_ok(ty.elem, x) for x in v)
    if k == "map":
        return isinstance(v, dict) and all(
            _value_ok(ty.key, a) and _value_ok(ty.elem, b) for a, b in v.items()
        )
    return True


def _check_row(release, cls, ref, row, where):
    """Types of the fields a row has (unknown fields are ignored at load, missing ones take
    their defaults)."""
    _want(isinstance(row, dict), f"{where}: row {cls} {ref} is not an object")
    types = _field_types(release, cls)
    for name, v in row.items():
        ty = types.get(name)
        if ty is not None and not _value_ok(ty, v):
            raise _Bad(
                f"{where}: {cls} {ref} field {name}: expected {_type_text(ty)}, got {_short(v)}"
            )


def _check_snapshot(snap, version):
    _want(isinstance(snap.get("layout"), dict), "no 'layout' object")
    _check_layout(snap["layout"])
    if version >= 2:
        _want(_is_int(snap.get("seq")) and snap["seq"] >= 0, "'seq': expected an integer >= 0")
        sup = snap.get("supersedes", {})
        _want(
            isinstance(sup, dict)
            and all(
                isinstance(v, dict) and _is_int(v.get("size")) and isinstance(v.get("sha256"), str)
                for v in sup.values()
            ),
            "'supersedes': expected {file: {size, sha256}}",
        )
    pools = snap.get("pools")
    _want(isinstance(pools, dict), "no 'pools' object")
    releases = _served_releases()
    out = {}
    for pref, p in pools.items():
        w = f"pools[{pref}]"
        _want(isinstance(p, dict), f"{w}: expected an object")
        _want(
            p.get("release") in releases,
            f"{w}.release: expected one of "
            f"{', '.join(sorted(releases))}, got {_short(p.get('release'))}",
        )
        tables = p.get("tables")
        _want(isinstance(tables, dict), f"{w}.tables: expected an object")
        decoded = {}
        for cls, t in tables.items():
            _want(isinstance(t, dict), f"{w}.tables.{cls}: expected an object")
            rows = {}
            for ref, row in t.items():
                row = dec(row)
                _check_row(p["release"], cls, ref, row, w)
                rows[ref] = row
            decoded[cls] = rows
        out[pref] = (p["release"], decoded)
    return out


def _check_entry(payload, version):
    """A journal line's JSON: returns (seq or None, layout or None, pools)."""
    _want(isinstance(payload, dict), f"wrong shape: expected an object, got {_short(payload)}")
    seq = None
    if version >= 2:
        seq = payload.get("seq")
        _want(_is_int(seq) and seq >= 1, f"wrong shape: 'seq' is {_short(seq)}")
    _want(
        "layout" in payload and "pools" in payload,
        "wrong shape: a journal line has 'layout' and 'pools'",
    )
    lay = payload["layout"]
    if lay is not None:
        try:
            _check_layout(lay)
        except _Bad as e:
            raise _Bad(f"wrong shape: {e}") from None
    pools = payload["pools"]
    _want(isinstance(pools, dict), "wrong shape: 'pools' is not an object")
    releases = _served_releases()
    out = {}
    for pref, entry in pools.items():
        w = f"pools[{pref}]"
        _want(
            isinstance(entry, dict)
            and entry.get("release") in releases
            and isinstance(entry.get("rows"), list),
            f"wrong shape: {w}: expected {{release, rows}}, got {_short(entry)}",
        )
        items = []
        for i, item in enumerate(entry["rows"]):
            ok = (
                isinstance(item, list)
                and len(item) >= 3
                and isinstance(item[1], str)
                and isinstance(item[2], str)
                and ((item[0] == "put" and len(item) == 4) or (item[0] == "del" and len(item) == 3))
            )
            _want(
                ok,
                f'wrong shape: {w}.rows[{i}]: expected ["put", table, ref, row] or '
                f'["del", table, ref], got {_short(item)}',
            )
            if item[0] == "put":
                row = dec(item[3])
                try:
                    _check_row(entry["release"], item[1], item[2], row, f"{w}.rows[{i}]")
                except _Bad as e:
                    raise _Bad(f"wrong shape: {e}") from None
                items.append(("put", item[1], item[2], row))
            else:
                items.append(("del", item[1], item[2], None))
        out[pref] = (entry["release"], items)
    return seq, lay, out


_CRC = re.compile(rb"[0-9a-f]{8}")


def _parse_line(raw, version):
    """The JSON of one complete journal line, or _Bad."""
    if version >= 2:
        if raw.startswith(b"{"):
            raise _Bad("a line without checksum (format version 1) in a version 2 journal")
        _want(
            len(raw) > 9 and _CRC.fullmatch(raw[:8]) is not None and raw[8:9] == b" ",
            "damaged: not a journal line (no checksum)",
        )
        body = raw[9:]
        _want(zlib.crc32(body) == int(raw[:8], 16), "damaged: checksum mismatch")
    else:
        _want(raw.startswith(b"{"), "damaged: not a JSON line of a version 1 journal")
        body = raw
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Bad(f"damaged: not JSON ({e})") from None


def _frames_ok(raw, version):
    try:
        _parse_line(raw, version)
        return True
    except _Bad:
        return False


class Scan:
    """What a state directory holds, checked: the rows and layout after replay."""

    def __init__(self):
        self.version = VERSION
        self.seq = 0
        self.layout = None
        self.pools: dict = {}  # pool ref -> (release, {table: {ref: row}})
        self.replayed = 0  # journal lines applied
        self.skipped = 0  # lines already in the snapshot
        self.total_lines = 0
        self.torn: list = []  # (file, offset, bytes) of incomplete last lines
        self.files: dict = {}  # journal file -> {"size", "sha256"}
        self.superseded: list = []


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise StateError(f"{path}: cannot read it: {e.strerror}") from None


def scan(state_dir) -> Scan:
    """Check and replay a state directory without changing anything. Raises StateError
    (JournalDamage for a journal line ``repair`` can cut at)."""
    s = Scan()
    spath = os.path.join(state_dir, STATE)
    raw = _read(spath)
    try:
        snap = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"{spath}: damaged: not valid JSON ({e})") from None
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise StateError(f"{spath}: not an xapi-sim state file")
    version = snap.get("version")
    if version not in READABLE_VERSIONS:
        raise StateError(
            f"{spath}: state format version {_short(version)} is not supported "
            f"(this xapi-sim reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    s.version = version
    try:
        s.pools = _check_snapshot(snap, version)
    except _Bad as e:
        raise StateError(f"{spath}: malformed: {e}") from None
    s.layout = snap["layout"]
    cur = snap.get("seq", 0)
    supersedes = snap.get("supersedes", {})
    datas = []
    for name in JOURNALS:
        path = os.path.join(state_dir, name)
        if not os.path.exists(path):
            continue
        data = _read(path)
        info = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        s.files[name] = info
        if supersedes.get(name) == info:
            s.superseded.append(name)
            continue
        datas.append((name, data))
    last = max((i for i, (_, d) in enumerate(datas) if d), default=-1)
    for i, (name, data) in enumerate(datas):
        lines = data.split(b"\n")
        tail = lines.pop()
        s.total_lines += len(lines)
        offset = 0
        prev = None

        def damage(n, off, reason, rest=(), i=i, name=name):
            after = sum(1 for r in rest if _frames_ok(r, version))
            for _, d in datas[i + 1 :]:
                after += sum(1 for r in d.split(b"\n")[:-1] if _frames_ok(r, version))
            raise JournalDamage(state_dir, name, n, off, reason, after)

        for n, line in enumerate(lines, 1):
            try:
                seq, lay, pools = _check_entry(_parse_line(line, version), version)
            except _Bad as e:
                damage(n, offset, str(e), lines[n:])
            if version >= 2:
                if prev is not None and seq != prev + 1:
                    damage(n, offset, f"sequence number {seq} after {prev}", lines[n:])
                if seq > cur + 1:
                    damage(
                        n,
                        offset,
                        f"sequence number {seq} where {cur + 1} was expected "
                        f"({seq - cur - 1} line(s) missing)",
                        lines[n:],
                    )
                prev = seq
                if seq <= cur:
                    s.skipped += 1
                    offset += len(line) + 1
                    continue
                cur = seq
            if lay is not None:
                s.layout = lay
            for pref, (release, items) in pools.items():
                _, tables = s.pools.get(pref, (release, {}))
                s.pools[pref] = (release, tables)
                for op, cls, ref, row in items:
                    if op == "del":
                        tables.get(cls, {}).pop(ref, None)
                    else:
                        tables.setdefault(cls, {})[ref] = row
            s.replayed += 1
            offset += len(line) + 1
        if tail:
            if i != last:
                damage(len(lines) + 1, offset, "an incomplete line with more journal after it")
            s.torn.append((name, offset, len(tail)))
    s.seq = cur
    try:
        _check_world(s.layout, s.pools)
    except _Bad as e:
        raise StateError(
            f"{state_dir}: the kept world (state.json and its journal) is inconsistent: {e}"
        ) from None
    return s


def _check_world(lay, pools):
    """What the rebuilt world needs: each pool's database with its pool row and the rows of
    its hosts, at the release the layout names."""
    for p in lay["pools"]:
        entry = pools.get(p["ref"])
        _want(entry is not None, f"pool {p['ref']} has no database")
        release, tables = entry
        _want(
            release == p["release"],
            f"pool {p['ref']} is {p['release']} in the layout and {release} in its database",
        )
        _want(p["ref"] in tables.get("pool", {}), f"pool {p['ref']} has no pool row")
    for h in lay["hosts"]:
        if h["pool"] is not None:
            _want(
                h["ref"] in pools[h["pool"]][1].get("host", {}),
                f"host {h['name_label']} ({h['ref']}) has no host row in its pool",
            )
