"""xapi_sim/data/relations.json (scripts/derive_relations.py) against the datamodel.

Every relation listed must have both ends on the wire, with the one-to-many (or
many-to-many) types, in exactly the releases from ``since`` up to ``removed``, as the
server's own ``Schema`` sees them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.datamodel import RELEASE_INDEX, RELEASES, Schema, Type

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "derive_relations.py"
DOC = json.loads(resources.files("xapi_sim").joinpath("data/relations.json").read_text())

# The relations store.py kept before relations.json existed: (one, set field, many, ref field).
STORE_TODAY = [
    ("host", "resident_VMs", "VM", "resident_on"),
    ("host", "host_CPUs", "host_cpu", "host"),
    ("host", "PIFs", "PIF", "host"),
    ("network", "PIFs", "PIF", "network"),
    ("task", "subtasks", "task", "subtask_of"),
    ("VM", "snapshots", "VM", "snapshot_of"),
    ("VM", "children", "VM", "parent"),
]


def _script():
    spec = importlib.util.spec_from_file_location("derive_relations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _field(schema, cls, name):
    c = schema.classes.get(cls)
    return c.fields.get(name) if c else None


def _one_to_many_at(release, one, sfield, many, rfield):
    s = Schema.for_release(release)
    sf, rf = _field(s, one, sfield), _field(s, many, rfield)
    return (
        sf is not None
        and rf is not None
        and not sf.rw
        and sf.type == Type("set", elem=Type("ref", many))
        and rf.type == Type("ref", one)
    )


def _many_to_many_at(release, a, af, b, bf):
    s = Schema.for_release(release)
    fa, fb = _field(s, a, af), _field(s, b, bf)
    return (
        fa is not None
        and fb is not None
        and fa.type == Type("set", elem=Type("ref", b))
        and fb.type == Type("set", elem=Type("ref", a))
    )


def _window(r):
    lo = RELEASE_INDEX[r["since"]]
    hi = RELEASE_INDEX[r["removed"]] if r["removed"] else len(RELEASES)
    return lo, hi


def test_one_to_many_ends_exist_exactly_in_the_listed_releases():
    assert len(DOC["relations"]) >= 45
    for r in DOC["relations"]:
        ends = (r["one"], r["set_field"], r["many"], r["ref_field"])
        lo, hi = _window(r)
        for i, release in enumerate(RELEASES):
            assert _one_to_many_at(release, *ends) == (lo <= i < hi), (ends, release)


def test_many_to_many_ends_exist_exactly_in_the_listed_releases():
    for r in DOC["many_to_many"]:
        ends = (r["a"], r["a_field"], r["b"], r["b_field"])
        lo, hi = _window(r)
        for i, release in enumerate(RELEASES):
            assert _many_to_many_at(release, *ends) == (lo <= i < hi), (ends, release)


def test_each_end_is_in_one_relation_only():
    ends = [(r["one"], r["set_field"]) for r in DOC["relations"]]
    ends += [(r["many"], r["ref_field"]) for r in DOC["relations"]]
    assert len(ends) == len(set(ends))


def test_the_store_relations_of_today_are_included_and_on_the_dundee_wire():
    listed = {(r["one"], r["set_field"], r["many"], r["ref_field"]): r for r in DOC["relations"]}
    for rel in STORE_TODAY:
        assert rel in listed, rel
        assert listed[rel]["dundee"] and "note" not in listed[rel]
        for release in ("cream", "dundee"):
            assert _one_to_many_at(release, *rel)


def test_other_pairs_are_not_one_to_many_in_any_release():
    for r in DOC["other"]:
        (a, af), (b, bf) = (e.split(".") for e in r["ends"])
        for release in RELEASES:
            assert not _one_to_many_at(release, a, af, b, bf)
            assert not _one_to_many_at(release, b, bf, a, af)


def test_check_mode_runs_without_a_checkout_and_detects_drift():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    mod = _script()
    dm = json.loads(resources.files("xapi_sim").joinpath("data/datamodel.json").read_text())
    assert mod.check(DOC, dm) == []
    bad = json.loads(json.dumps(DOC))
    bad["relations"][0]["since"] = "rio"
    bad["many_to_many"][0]["removed"] = "dundee"
    bad["relations"].append(
        {
            "one": "host",
            "set_field": "nope",
            "many": "VM",
            "ref_field": "resident_on",
            "since": "rio",
            "removed": None,
        }
    )
    assert len(mod.check(bad, dm)) == 3


_ident = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)
_field_name = st.from_regex(r"[A-Za-z][A-Za-z_]{0,10}", fullmatch=True)
_comment = st.sampled_from(["", " (* c *) ", "(* (* nested *) [ ] *)", '\n  (* x, "y" *)\n'])


@given(
    st.lists(st.tuples(_ident, _field_name, _ident, _field_name, _comment), max_size=8),
    st.booleans(),
)
def test_parse_relations_reads_both_list_syntaxes(pairs, new_style):
    """The Dundee form ``(a, "f"), (b, "g");`` and HEAD's ``((a, "f"), (b, "g"))`` with
    comments anywhere give the same pairs, names resolved through ``let _x = "X"``."""
    mod = _script()
    consts = "".join(f'let _{c} = "{c.upper()}"\n' for p in pairs for c in (p[0], p[2]))
    items = []
    for a, af, b, bf, comment in pairs:
        pair = f'(_{a}, "{af}"), (_{b}, "{bf}")'
        items.append(comment + (f"({pair})" if new_style else pair))
    body = ("\n  ; " if new_style else ";\n  ").join(items)
    text = (
        'let doc = "ISO files (*.iso)"\n'
        + consts
        + f"\nlet all_relations =\n  [ (* head *)\n  {body}\n  ]\nlet x = [1]\n"
    )
    want = [((a.upper(), af), (b.upper(), bf)) for a, af, b, bf, _ in pairs]
    assert mod.parse_relations([text]) == want
