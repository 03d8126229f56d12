#!/usr/bin/env python3
"""Derive xapi_sim/data/datamodel.json and errors.json from the shared XAPI datamodel.

Reads ../shared/data/xenapi.json, xenapi-errors.json and xenapi-release-info.json (the
xen-api IDL as published in doc/data) and writes a compact, committed copy holding only
what the server needs: per class its fields (type, qualifier, default, lifecycle) and
messages (params, result, errors, lifecycle), the enums, and the release order.

Usage: python scripts/derive_datamodel.py [SHARED_DATA_DIR]
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "xapi_sim" / "data"


def lifecycle(lc):
    """(since, deprecated, removed) release names from a lifecycle record."""
    since = deprecated = removed = None
    for t in lc.get("transitions", []):
        kind, rel = t["transition"], t["release"]
        if kind in ("published", "prototyped", "extended", "changed") and since is None:
            since = rel
        elif kind == "deprecated" and deprecated is None:
            deprecated = rel
        elif kind == "removed":
            removed = rel
    return since, deprecated, removed


def main(argv):
    shared = pathlib.Path(argv[1]) if len(argv) > 1 else ROOT.parent / "shared" / "data"
    model = json.loads((shared / "xenapi.json").read_text())
    errors = json.loads((shared / "xenapi-errors.json").read_text())
    releases = list(json.loads((shared / "xenapi-release-info.json").read_text()))
    source = (shared / "xenapi-SOURCE.txt").read_text().strip()

    classes, enums = {}, {}
    for cls in model:
        since, dep, rem = lifecycle(cls["lifecycle"])
        fields = []
        for f in cls["fields"]:
            fs, fd, fr = lifecycle(f["lifecycle"])
            fields.append([f["name"], f["type"], f["qualifier"], f.get("default"), fs, fr])
        messages = []
        for m in cls["messages"]:
            ms, md, mr = lifecycle(m["lifecycle"])
            params = [[p["name"], p["type"]] for p in m["params"]]
            messages.append(
                [
                    m["name"],
                    params,
                    m["result"][0],
                    bool(m["implicit"]),
                    ms,
                    md,
                    mr,
                    [e["name"] for e in m["errors"]],
                ]
            )
        for e in cls["enums"]:
            enums[e["name"]] = [v["name"] for v in e["values"]]
        classes[cls["name"]] = {
            "since": since,
            "removed": rem,
            "fields": fields,
            "messages": messages,
        }

    OUT.mkdir(parents=True, exist_ok=True)
    dm = {"source": source, "releases": releases, "classes": classes, "enums": enums}
    (OUT / "datamodel.json").write_text(
        json.dumps(dm, separators=(",", ":"), sort_keys=False) + "\n"
    )
    errs = {e["code"]: [e["params"], e["doc"]] for e in errors}
    (OUT / "errors.json").write_text(json.dumps(errs, separators=(",", ":"), indent=None) + "\n")
    print(f"wrote {len(classes)} classes, {len(enums)} enums, {len(errs)} errors")


if __name__ == "__main__":
    main(sys.argv)
