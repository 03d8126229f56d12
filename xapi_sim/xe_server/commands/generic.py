"""The generated commands of a CLI class: ``<class>-list``, ``-param-list``, ``-param-get``,
``-param-set``, ``-param-add``, ``-param-remove``, ``-param-clear``.

Mirrors xen-api Dundee ``cli_operations.ml`` ``make_param_funs`` and ``gen_frontend``: the
specs come from the fields of a template record, so what a class offers follows its record
(``records/``) alone.
"""

from __future__ import annotations

from ...datamodel import NULL_REF
from ...wire.ocaml import BadBool, BadFloat, BadInt, BadLiteral
from .. import render as R
from ..errors import CliFailure
from ..records import make_record
from ..selectors import (
    STDPARAMS,
    choose_params,
    field_type,
    filter_by,
    select_fields,
)
from .spec import Cmd

# what a setter's unparsable value must be (cli_operations.ml param_set)
_MUST_BE = {
    BadInt: "an integer",
    BadFloat: "a floating-point number",
    BadBool: "a boolean (true or false)",
}


def with_specified_database(ctx):
    """``with_specified_database``: ``database:vdi-uuid=`` / ``database:filename=`` open
    another database; this simulator has no database VDIs, so the calls fail as XAPI's would
    for an unknown VDI."""
    db_params = {
        k[len("database:") :]: v
        for k, v in ctx.params
        if k.startswith("database:") and len(k) > len("database:")
    }
    if "vdi-uuid" in db_params and "filename" in db_params:
        raise CliFailure("xapi can query a DB vdi or a DB file, but not both.")
    if "vdi-uuid" in db_params:
        vdi = ctx.call("VDI.get_by_uuid", db_params["vdi-uuid"])
        ctx.call("VDI.open_database", vdi)
    elif "filename" in db_params:
        ctx.call("session.create_from_db_file", db_params["filename"])


class ClassCommands:
    """``make_param_funs``: the generic commands of one CLI class."""

    def __init__(self, name, cls, def_filters, def_list_params, plural=None):
        self.name = name  # CLI name: "vm", "host", "template"...
        self.cls = cls  # datamodel class
        self.def_filters = def_filters
        self.def_list_params = def_list_params
        self.plural = plural or name + "s"

    def record_by_uuid(self, ctx, uuid):
        ref = ctx.call(f"{self.cls}.get_by_uuid", uuid)
        return make_record(ctx, self.cls, ref)

    def named_field(self, ctx):
        """The ``param-name=`` field of the ``uuid=`` object."""
        return self.record_by_uuid(ctx, ctx.get("uuid")).field(ctx.get("param-name"))

    def needed_fields(self, ctx, filters):
        """The names of the fields ``list`` prints or filters on, resolved against the
        class's record layout (``field_type``, as the filter resolves them); None -- build
        every field -- for ``params=all`` or a filter naming no field (whose error the
        ordinary path then raises at the same point)."""
        names = choose_params(ctx, self.def_list_params)
        if not names:
            return None
        proto = make_record(None, self.cls, NULL_REF, {}).fields
        need = set(names)
        for k, _ in filters:
            try:
                need.add(field_type(k, proto)[1])
            except CliFailure:
                return None
        return need

    def list(self, ctx):
        """``<class>-list``: every record through the filters, the chosen fields printed.
        Records are made one at a time with only the fields needed, and each is taken
        apart once its line is rendered (its closures refer back to it), so a listing of
        10,000 VMs keeps strings, not 10,000 records, alive for the garbage collector."""
        with_specified_database(ctx)
        filters = list(self.def_filters) + [
            (p, v)
            for p, v in ctx.params
            if p not in ["params"] + STDPARAMS and not p.startswith("database:")
        ]
        only = self.needed_fields(ctx, filters)
        print_all = ctx.bool_param("all")
        allrecs = ctx.call(f"{self.cls}.get_all_records_where", "true")
        lines = []
        for ref, row in allrecs.items():
            rec = make_record(ctx, self.cls, ref, row, only)
            try:
                if filter_by([rec], filters) or print_all:
                    fields = select_fields(ctx, [rec], self.def_list_params)[0]
                    lines.append(
                        [
                            (f.key(), R.EXPENSIVE) if f.expensive else f.printed()
                            for f in fields
                            if not f.hidden
                        ]
                    )
            finally:
                rec.fields.clear()
        ctx.printer.table(lines)

    def param_list(self, ctx):
        with_specified_database(ctx)
        rec = self.record_by_uuid(ctx, ctx.get("uuid"))
        ctx.printer.table([[f.printed() for f in rec.fields if not f.hidden]])

    def param_get(self, ctx):
        with_specified_database(ctx)
        f = self.named_field(ctx)
        if ctx.has("param-key") and f.get_map is not None:
            key = ctx.get("param-key")
            try:
                m = dict(f.get_map())
            except Exception:  # noqa: BLE001
                m = {}
            if key not in m:
                raise CliFailure(f"Key {key} not found in map")
            ctx.printer.lines([m[key]])
            return
        ctx.printer.lines([f.value()])

    def param_set(self, ctx):
        rec = self.record_by_uuid(ctx, ctx.get("uuid"))
        for k, v in ctx.params:
            if k in ["uuid"] + STDPARAMS:
                continue
            kind, s = field_type(k, rec.fields)
            if kind == "map":
                f = rec.field(s)
                key = k[len(s) + 1 :]
                if f.set_in_map is not None:
                    f.set_in_map(key, v)
                    continue
                if f.add_to_map is None:
                    raise CliFailure(f"Map field '{s}' is read-only.")
                if key in dict(f.get_map()):
                    f.remove_from_map(key)
                f.add_to_map(key, v)
            elif kind == "set":
                raise CliFailure("Cannot param-set on set fields")
            else:
                f = rec.field(k)
                if f.set is None:
                    if f.add_to_map is not None:
                        raise CliFailure(
                            f"Field '{k}' is a map or set. use the 'name:key=value' syntax."
                        )
                    raise CliFailure(f"Field '{k}' is read-only.")
                try:
                    f.set(v)
                except BadLiteral as e:
                    raise CliFailure(f"Parameter {k} must be {_MUST_BE[type(e)]}") from None

    def param_add(self, ctx):
        f = self.named_field(ctx)
        extra = [
            (p, v)
            for p, v in ctx.params
            if p not in ["uuid", "param-name", "param-key"] + STDPARAMS
        ]
        if f.add_to_set is not None:
            if not ctx.has("param-key"):
                raise CliFailure(
                    "When adding a key to a set, use the syntax: *-param-add "
                    "param-name=<name> param-key=<key>"
                )
            f.add_to_set(ctx.get("param-key"))
        elif f.add_to_map is not None:
            for k, v in extra:
                f.add_to_map(k, v)
        elif f.get_set is not None or f.get_map is not None:
            raise CliFailure("Parameter is read-only")
        else:
            raise CliFailure("Can only add to parameters of type Set or Map")

    def param_remove(self, ctx):
        f = self.named_field(ctx)
        key = ctx.get("param-key")
        if f.get_set is not None and f.remove_from_set is not None:
            if key not in f.get_set():
                raise CliFailure("Key is not in the set")
            f.remove_from_set(key)
        elif f.get_map is not None and f.remove_from_map is not None:
            if key not in dict(f.get_map()):
                raise CliFailure("Key is not in map")
            f.remove_from_map(key)
        elif f.get_set is not None or f.get_map is not None:
            raise CliFailure("Cannot remove parameters from read-only map")
        else:
            raise CliFailure("Can only remove from parameters of type Set or Map")

    def param_clear(self, ctx):
        f = self.named_field(ctx)
        if f.get_set is not None and f.remove_from_set is not None:
            for m in list(f.get_set()):
                f.remove_from_set(m)
        elif f.get_map is not None and f.remove_from_map is not None:
            for k, _ in list(f.get_map()):
                f.remove_from_map(k)
        elif f.set is not None:
            try:
                f.set("")
            except Exception:  # noqa: BLE001
                raise CliFailure("Cannot clear this parameter") from None
        else:
            raise CliFailure("Can only clear RW parameters")

    def commands(self) -> dict:
        """``gen_frontend``: the specs, from the fields of a template record."""
        proto = [f for f in make_record(None, self.cls, NULL_REF, {}).fields if not f.hidden]
        all_optn = [f.name for f in proto]
        settable = [f.name for f in proto if f.set is not None]
        settable += [f.name + ":" for f in proto if f.add_to_map is not None]
        settable += [f.name + ":" for f in proto if f.set_in_map is not None]
        addable = [f.name for f in proto if f.add_to_set is not None or f.add_to_map is not None]
        clearable = [
            f.name
            for f in proto
            if f.set is not None or f.get_set is not None or f.get_map is not None
        ]
        sm = [f.name + ":contains" for f in proto if f.get_set is not None]
        n = self.name
        std = n in ("vm", "network", "sr")
        out = {
            f"{n}-list": Cmd(
                [],
                ["params", "database:"] + all_optn + sm,
                f"Lists all the {self.plural}, filtering on the optional "
                "arguments. To filter on map parameters, use the syntax "
                "'map-param:key=value'",
                self.list,
                ["Standard"] if std else [],
            ),
            f"{n}-param-list": Cmd(
                ["uuid"],
                ["database:"],
                "Lists all the parameters of the object specified by the uuid.",
                self.param_list,
            ),
            f"{n}-param-get": Cmd(
                ["uuid", "param-name"],
                ["param-key", "database:"],
                "Gets the parameter specified of the object. If the "
                "parameter is a map of key=value pairs, use "
                "'param-key=<key>' to get the value associated with a "
                "particular key.",
                self.param_get,
            ),
        }
        if settable:
            out[f"{n}-param-set"] = Cmd(
                ["uuid"],
                settable,
                "Sets the parameter specified. If param-value is not "
                "given, the parameter is set to a null value. To set a (key,value) pair in a "
                "map parameter, use the syntax 'map-param:key=value'.",
                self.param_set,
            )
        if addable:
            out[f"{n}-param-add"] = Cmd(
                ["uuid", "param-name"],
                ["param-key"],
                "Adds to a set or map parameter. If "
                "the parameter is a set, use param-key=<key to add>. If the parameter is a "
                "map, pass the values to add as 'key=value' pairs.",
                self.param_add,
            )
            out[f"{n}-param-remove"] = Cmd(
                ["uuid", "param-name", "param-key"],
                [],
                "Removes a member or a key,value pair from a set/map respectively.",
                self.param_remove,
            )
        if clearable:
            out[f"{n}-param-clear"] = Cmd(
                ["uuid", "param-name"],
                [],
                "Clears the specified parameter (param-name can be " + ",".join(clearable) + ").",
                self.param_clear,
            )
        return out
