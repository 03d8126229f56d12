#!/usr/bin/env python3
"""Derive xapi_sim/data/relations.json: XAPI's one-to-many relations, with the release from
which both ends exist on the wire.

xen-api lists the pairs of fields its database keeps in step in ``all_relations``
(``ocaml/idl/datamodel.ml``; the class-name constants ``let _vm = "VM"`` live there at
Dundee and in ``datamodel_common.ml`` later). The database layer classifies each pair by
field types (``Datamodel_utils.Relations.classify``): ``X ref`` against ``Y ref set`` is
one-to-many (``ocaml/database/db_cache_types.ml`` ``update_one_to_many``), two ref sets are
many-to-many (``update_many_to_many``), anything else is not maintained.

Usage:
  python scripts/derive_relations.py GIT_DIR [DUNDEE_REV [HEAD_REV]]   derive and write
  python scripts/derive_relations.py --check                            validate the JSON

GIT_DIR is a xen-api git directory (e.g. the one ``fetch github:xapi-project/xen-api``
gives); DUNDEE_REV defaults to ``dundee-lcm`` (XenServer 7.0's maintenance branch, v1.9.82
plus build-only commits), HEAD_REV to ``HEAD``. Types, qualifiers and lifecycles come from
the committed ``xapi_sim/data/datamodel.json``; ``--check`` needs nothing else.
"""

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "xapi_sim" / "data"
CONST = re.compile(r'let\s+(_\w+)\s*=\s*"([^"]*)"')
STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
END = re.compile(r'\(\s*(_\w+)\s*,\s*"([^"]+)"\s*\)')

NOTES = {
    "orientation": "xen-api writes each one-to-many pair as (many class, ref field), (one "
    "class, set field); the set side is derived: setting the ref field removes "
    "the row from the old target's set and adds it to the new one's "
    "(db_cache_types.ml set_field/add_row/remove_row), and event.from reports a "
    "mod of both targets (eventgen.ml follow_references)",
    "not_stored": "one-to-many set fields are never persisted: the database rebuilds them from "
    "the ref side on load (datamodel_schema.ml 'we always regenerate one-to-many "
    "Set(Ref _) fields', db_cache_types.ml reindex); xenapi.json, hence our "
    "datamodel.json, carries no persist flag. Exception: a set field declared "
    "~ignore_foreign_key:true is persisted (PVS_site.cache_storage, which is "
    "also in all_relations and still maintained)",
    "dangling": "a ref to a missing row (e.g. VM.snapshot_of after the VM is destroyed, "
    "task.subtask_of after the parent task is gone, VM.parent) is kept as is; "
    "update_one_to_many skips it and deleting the one-side row never clears the "
    "ref fields pointing at it",
    "set_order": "add_to_set prepends a new member; a set already holding it is unchanged",
    "unrelated_refs": "ref fields without a set partner are not maintained, e.g. "
    "VM.scheduled_to_be_resident_on and VM.affinity (host), unlike "
    "VM.resident_on <-> host.resident_VMs",
    "commented_out": "xen-api comments out VDI.parent <-> VDI.children, alert.task <-> "
    "task.alerts and subject.roles <-> role.subjects",
    "many_to_many": "both ref sets are stored; xen-api updates the first field by hand and "
    "update_many_to_many keeps the second in step. VM.VGPUs is one-to-many "
    "(VGPU.VM); VM.groups <-> VM_group.VMs (HEAD, not in our datamodel) is "
    "many-to-many",
    "internal_ends": "some ends are internal_only, so not in xenapi.json nor on the wire, "
    "yet the database maintains the published end from them: task.session "
    "(session ref) fills session.tasks (published midnight-ride); "
    "PCI.attached_VMs (VM ref set, updated by hand) keeps VM.attached_PCIs "
    "in step (many-to-many); PCI.physical_function <-> "
    "PCI.virtual_functions (HEAD) are both internal",
    "dundee_only_on_db": "VMPP (lifecycle removed at clearwater, still a DB table at Dundee) "
    "and VTPM (published only at 22.26.0) are in Dundee's all_relations "
    "but not on its wire; VM.protection_policy and VM.VTPMs are",
    "placeholders": "(subject.roles, subject.roles) and (role.subroles, role.subroles) pair a "
    "field with itself so the Set(Ref _) sanity check (dm_api.ml) passes; both "
    "are ~ignore_foreign_key:true, and role getters answer from the static "
    "RBAC table (xapi_role.ml), not the database",
}


def git(gitdir, *args):
    return subprocess.run(
        ["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True, text=True
    ).stdout


def strip_comments(text):
    """Drop OCaml comments (which nest); string literals outside them are kept whole."""
    out, depth, i = [], 0, 0
    while i < len(text):
        two = text[i : i + 2]
        if two == "(*":
            depth, i = depth + 1, i + 2
        elif two == "*)" and depth:
            depth, i = depth - 1, i + 2
        elif text[i] == '"' and not depth:
            m = STRING.match(text, i)
            end = m.end() if m else len(text)
            out.append(text[i:end])
            i = end
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def parse_relations(texts):
    """[((cls, field), (cls, field)), ...] from the IDL sources of one revision."""
    consts, body = {}, None
    for text in texts:
        text = strip_comments(text)
        consts.update(CONST.findall(text))
        m = re.search(r"let\s+all_relations\s*=\s*\[", text)
        if m:
            depth, i = 1, m.end()
            while depth:
                depth += {"[": 1, "]": -1}.get(text[i], 0)
                i += 1
            body = text[m.end() : i - 1]
    ends = [(consts[c], f) for c, f in END.findall(body)]
    return list(zip(ends[::2], ends[1::2], strict=False))


def read_rev(gitdir, rev):
    names = git(gitdir, "ls-tree", "--name-only", rev, "ocaml/idl/").split()
    texts = [git(gitdir, "show", f"{rev}:{n}") for n in names if n.endswith(".ml")]
    return git(gitdir, "rev-parse", rev).strip(), parse_relations(texts)


class Model:
    """Field types, qualifiers and lifecycles per release, from datamodel.json."""

    def __init__(self, dm):
        self.releases = dm["releases"]
        self.idx = {r: i for i, r in enumerate(self.releases)}
        self.fields = {}
        for cname, c in dm["classes"].items():
            for name, ty, qual, _default, since, removed in c["fields"]:
                lo = max(self.idx.get(since, 10**6), self.idx.get(c["since"], 10**6))
                hi = min(
                    self.idx.get(removed, 10**6),
                    self.idx.get(c["removed"], 10**6),
                    len(self.releases),
                )
                self.fields[(cname, name)] = (ty, qual, set(range(lo, hi)))

    def classify(self, a, b):
        """'one-to-many' with (one end, many end), 'many-to-many', or why not maintained."""
        missing = [".".join(e) for e in (a, b) if e not in self.fields]
        if missing:
            return "not in datamodel: " + ", ".join(missing), None
        ta, tb = self.fields[a][0], self.fields[b][0]
        if ta == f"{b[0]} ref" and tb == f"{a[0]} ref set":
            return "one-to-many", (b, a)
        if tb == f"{a[0]} ref" and ta == f"{b[0]} ref set":
            return "one-to-many", (a, b)
        if ta == f"{b[0]} ref set" and tb == f"{a[0]} ref set":
            return "many-to-many", (a, b)
        return f"not maintained ({ta} / {tb})", None

    def span(self, a, b, one_to_many):
        """(since, removed) over the releases where both ends exist with the right types:
        one-to-many a = one end (read-only ``b ref set``), b = many end (``a ref``);
        many-to-many both ``ref set``."""
        (ta, qa, ra), (tb, _, rb) = self.fields[a], self.fields[b]
        ok = ta == f"{b[0]} ref set" and (
            tb == f"{a[0]} ref" and qa.startswith("RO") if one_to_many else tb == f"{a[0]} ref set"
        )
        rel = sorted(ra & rb) if ok else []
        if not rel:
            return None, None
        assert rel == list(range(rel[0], rel[-1] + 1)), (a, b)
        nxt = rel[-1] + 1
        return self.releases[rel[0]], self.releases[nxt] if nxt < len(self.releases) else None


def derive(dm, dundee, head, revs):
    model = Model(dm)
    d_idx = model.idx["dundee"]
    out = {"relations": [], "many_to_many": [], "other": []}
    for pair in head + [p for p in dundee if p not in head]:
        kind, ends = model.classify(*pair)
        in_dundee = pair in dundee
        if ends is None:
            out["other"].append(
                {
                    "ends": [".".join(e) for e in pair],
                    "why": kind,
                    "dundee": in_dundee,
                    "head": pair in head,
                }
            )
            continue
        (c1, f1), (c2, f2) = ends
        if kind == "one-to-many":
            entry = {"one": c1, "set_field": f1, "many": c2, "ref_field": f2}
            since, removed = model.span(*ends, True)
        else:  # xen-api updates the first field by hand and keeps the second in step
            entry = {"a": c1, "a_field": f1, "b": c2, "b_field": f2}
            since, removed = model.span(*ends, False)
        entry.update(since=since, removed=removed, dundee=in_dundee)
        at_dundee = (
            since is not None
            and model.idx[since] <= d_idx
            and (removed is None or model.idx[removed] > d_idx)
        )
        if in_dundee and not at_dundee:
            gone = [".".join(e) for e in ends if d_idx not in model.fields[e][2]]
            entry["note"] = "in Dundee's all_relations, but not on our Dundee wire: " + ", ".join(
                gone
            )
        elif pair[0] == pair[1]:
            entry["note"] = "a field paired with itself: see notes.placeholders"
        elif at_dundee and not in_dundee:
            entry["note"] = "both ends on our Dundee wire, but not in Dundee's all_relations"
        out["relations" if kind == "one-to-many" else "many_to_many"].append(entry)
    return {
        "source": {"repo": "xapi-project/xen-api", **revs, "datamodel": dm["source"]},
        **out,
        "notes": NOTES,
    }


def check(doc, dm):
    """Problems with ``doc`` against datamodel.json (empty when it is consistent)."""
    model, bad = Model(dm), []
    for key, one_to_many, names in (
        ("relations", True, ("one", "set_field", "many", "ref_field")),
        ("many_to_many", False, ("a", "a_field", "b", "b_field")),
    ):
        for r in doc[key]:
            a, b = (r[names[0]], r[names[1]]), (r[names[2]], r[names[3]])
            if a not in model.fields or b not in model.fields:
                bad.append(f"{a}/{b}: an end is not in the datamodel")
            elif (r["since"], r["removed"]) != model.span(a, b, one_to_many):
                bad.append(
                    f"{a}/{b}: since/removed {r['since']}/{r['removed']}, datamodel "
                    f"says {model.span(a, b, one_to_many)}"
                )
    return bad


def dump(doc):
    """JSON with one line per relation or note."""
    parts = []
    for key, val in doc.items():
        if isinstance(val, list):
            items, brackets = [json.dumps(x) for x in val], "[]"
        else:
            items, brackets = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in val.items()], "{}"
        parts.append(
            f"{json.dumps(key)}: {brackets[0]}\n  " + ",\n  ".join(items) + f"\n {brackets[1]}"
        )
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def main(argv):
    dm = json.loads((DATA / "datamodel.json").read_text())
    dest = DATA / "relations.json"
    if argv[1:] == ["--check"]:
        bad = check(json.loads(dest.read_text()), dm)
        print("\n".join(bad) or f"{dest} agrees with datamodel.json")
        return 1 if bad else 0
    if len(argv) < 2:
        print(__doc__)
        return 2
    gitdir = argv[1]
    d_rev = argv[2] if len(argv) > 2 else "dundee-lcm"
    h_rev = argv[3] if len(argv) > 3 else "HEAD"
    d_sha, dundee = read_rev(gitdir, d_rev)
    h_sha, head = read_rev(gitdir, h_rev)
    revs = {"dundee": f"{d_rev} {d_sha}", "head": f"{h_rev} {h_sha}"}
    doc = derive(dm, dundee, head, revs)
    dest.write_text(dump(doc))
    print(
        f"wrote {len(doc['relations'])} one-to-many, {len(doc['many_to_many'])} "
        f"many-to-many, {len(doc['other'])} other relations to {dest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
