"""Choosing records from the command line: the one record filter, the VM and host selectors,
and which fields a listing prints.

Mirrors xen-api Dundee ``cli_operations.ml``: ``filter_records_on_fields`` (``k=v`` on a
plain field, ``map:key=v`` on a map, ``set:contains=v`` on a set), ``select_vms`` /
``select_hosts`` (``vm=<uuid or name>``, else every record filtered by the other
parameters), ``get_host_by_name_or_id`` and ``select_fields`` (``params=``).
"""

from __future__ import annotations

from .errors import CliFailure
from .records import Record, make_record

# parameters that are never record filters (cli_operations.ml stdparams)
STDPARAMS = [
    "server",
    "password",
    "port",
    "username",
    "minimal",
    "force",
    "multiple",
    "all",
    "message-priority",
    "trace",
]


def field_type(fieldname, fields):
    """``get_field_type``: ("normal", name) | ("set", name) | ("map", name)."""
    if any(f.name == fieldname for f in fields):
        return "normal", fieldname
    if ":" in fieldname:
        real = fieldname[: fieldname.index(":")]
        found = [f for f in fields if f.name == real]
        if not found:
            raise CliFailure(f"Unknown field '{fieldname}'")
        f = found[0]
        if f.get_set is not None:
            return "set", f.name
        if f.get_map is not None:
            return "map", f.name
        raise CliFailure(f"Field '{f.name}' is not a set or map")
    for kind, attr in (("map", "get_map"), ("set", "get_set")):
        cands = sorted(
            (f for f in fields if getattr(f, attr) is not None), key=lambda f: -len(f.name)
        )
        for f in cands:
            if fieldname.startswith(f.name + "-"):
                return kind, f.name
    raise CliFailure(f"Unknown field '{fieldname}'")


def _member(f, sub, v) -> bool:
    """Whether set field ``f`` contains ``v`` (``sub`` is None) or map field ``f`` maps
    ``sub`` to ``v``."""
    if sub is None:
        members = f.get_set()
        if f.case_insensitive:
            return v.lower() in [m.lower() for m in members]
        return v in members
    m = dict(f.get_map())
    if f.case_insensitive:
        m = {a.lower(): b.lower() for a, b in m.items()}
        sub, v = sub.lower(), v.lower()
    return sub in m and m[sub] == v


def filter_records(records, k, v):
    """``filter_records_on_fields``: keep the records whose field ``k`` renders as ``v``."""
    if not records:
        return []
    kind, s = field_type(k, records[0].fields)
    if kind == "normal":
        out = []
        for r in records:
            f = r.field(k)
            val = f.value()
            if (val.lower() == v.lower()) if f.case_insensitive else (val == v):
                out.append(r)
        return out
    sub = k[len(s) + 1 :]
    if kind == "set" and sub != "contains":
        raise CliFailure("Invalid syntax for set filtering (should be set-param:contains=key)")
    out = []
    for r in records:
        f = r.field(s)
        try:
            if _member(f, None if kind == "set" else sub, v):
                out.append(r)
        except Exception:  # noqa: BLE001
            # records.ml's filter is "with _ -> false": a record whose field cannot be read
            # or compared is simply not selected, which is the answer, not a fault
            continue
    return out


def filter_by(records, params):
    """Every ``(k, v)`` of ``params`` applied in turn with ``filter_records``."""
    for k, v in params:
        records = filter_records(records, k, v)
    return records


def all_records(ctx, cls, only=None) -> list:
    """Every object of ``cls`` as a CLI record (one ``get_all_records_where "true"``);
    ``only``: the fields to build (``make_record``)."""
    allrecs = ctx.call(f"{cls}.get_all_records_where", "true")
    return [make_record(ctx, cls, r, row, only) for r, row in allrecs.items()]


def choose_params(ctx, defaults):
    if ctx.has("params"):
        ps = ctx.get("params")
        return [] if ps == "all" else [p for p in ps.split(",") if p != ""]
    return defaults


def select_fields(ctx, records, default_params):
    names = choose_params(ctx, default_params)
    if not names:
        return [list(r.fields) for r in records]
    return [[f for f in r.fields if f.name in names] for r in records]


# -- selectors -------------------------------------------------------------------------------


def _select(ctx, cls, key, params, ignore):
    """``Cli_operations.select_vms``/``select_hosts``: ``key=<uuid>`` names one object; a
    value that is not a uuid, or no ``key``, filters every record by the parameters."""

    def do_filter(ps):
        skip = STDPARAMS + ignore
        return filter_by(
            all_records(ctx, cls), [(k, v) for k, v in ps if k.split(":", 1)[0] not in skip]
        )

    if ctx.has(key):
        try:
            return [make_record(ctx, cls, ctx.call(f"{cls}.get_by_uuid", ctx.get(key)))]
        except Exception:  # noqa: BLE001 -- "with _ -> do_filter"
            return do_filter([("name-label", v) if k == key else (k, v) for k, v in params])
    return do_filter(params)


def select_vms(ctx, ignore, include_control=False, include_template=False):
    params = list(ctx.params)
    if not include_control:
        params = [("is-control-domain", "false")] + params
    if not include_template:
        params = [("is-a-template", "false")] + params
    return _select(ctx, "VM", "vm", params, ignore)


def select_hosts(ctx, ignore):
    return _select(ctx, "host", "host", list(ctx.params), ignore)


def get_host_by_name_or_id(ctx, name) -> Record:
    for rec in all_records(ctx, "host"):
        if rec.field("name-label").value() == name or rec.field("uuid").value() == name:
            return rec
    raise CliFailure(f"Host {name} not found")
