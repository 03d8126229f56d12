"""Pure formatting for the ``xe`` server side: records, values, errors, help lists.

Mirrors xen-api Dundee ``cli_printer.ml`` (record layout, ``--minimal``), ``record_util.ml``
and ``records.ml`` (value rendering) and ``cli_util.ml`` (``server_error``). Nothing here
touches a database or a socket: the printer hands ``cliproto`` commands to an ``emit``
callback.

Record layout: with W = 4 + the longest key, the first key is padded on the right to W,
every following key on the left to W, then ``": "`` and the value. A record is sent as one
Print of its lines plus a newline, and the client appends another, so each record is
followed by two empty lines. ``--minimal`` prints only the first field of each record,
comma-separated (commas and backslashes escaped), once the command has finished.
"""

from __future__ import annotations

from ..datamodel import NULL_REF
from ..wire import cliproto

NID = "<not in database>"
UNKNOWN_TIME = "<unknown time>"
EXPENSIVE = "<expensive field>"


# -- values -----------------------------------------------------------------------------------


def bool_str(b) -> str:
    """OCaml ``string_of_bool``."""
    return "true" if b else "false"


def int_str(n) -> str:
    """``Int64.to_string``."""
    return str(int(n))


def float_str(f) -> str:
    """``Records.string_of_float``: three decimals."""
    return f"{float(f):.3f}"


def ocaml_float(f) -> str:
    """OCaml's ``string_of_float`` (``%.12g``, and a trailing dot for integral values)."""
    s = f"{float(f):.12g}"
    if "." not in s and "e" not in s and "n" not in s and "i" not in s:
        s += "."
    return s


def power_state(s: str) -> str:
    """``Record_util.power_to_string``: lower case."""
    return {"ShuttingDown": "shutting down"}.get(s, s.lower())


def set_str(items, sep: str = "; ") -> str:
    return sep.join(str(x) for x in items)


def map_str(m, sep: str = "; ") -> str:
    """``Record_util.s2sm_to_string``: ``k: v; k2: v2``."""
    return sep.join(f"{k}: {v}" for k, v in (m.items() if isinstance(m, dict) else m))


def ref_uuid(lookup, ref) -> str:
    """``Records.get_uuid_from_ref``: the uuid of a referenced object, or ``<not in database>``.

    ``lookup(ref)`` returns (uuid, name_label or None) or None."""
    found = lookup(ref) if ref and ref != NULL_REF else None
    if not found or not found[0]:
        return NID
    return found[0]


def ref_convert(lookup, s: str) -> str:
    """``Cli_util.ref_convert``: a parameter that is a known ref becomes ``uuid (name)``."""
    found = lookup(s) if isinstance(s, str) and s.startswith("OpaqueRef:") else None
    if not found:
        return s
    uuid, name = found
    return uuid + (f" ({name})" if name is not None else "")


def escape_commas(s: str) -> str:
    """``Cli_printer.escape_commas``: ``,`` -> ``\\,`` and ``\\`` -> ``\\\\``."""
    return s.replace("\\", "\\\\").replace(",", "\\,")


# -- records ----------------------------------------------------------------------------------


def field_key(name: str, kind: str, writable: bool, deprecated: bool = False) -> str:
    """The key a field is printed with: name plus ``( RO)``/``( RW)``/``(SRO)``/``(SRW)``/
    ``(MRO)``/``(MRW)`` (``kind`` is "set", "map" or anything else) and `` [DEPRECATED]``."""
    if kind == "set":
        q = " (SRW)" if writable else " (SRO)"
    elif kind == "map":
        q = " (MRW)" if writable else " (MRO)"
    else:
        q = " ( RW)" if writable else " ( RO)"
    return name + q + (" [DEPRECATED]" if deprecated else "")


def record_text(pairs) -> str:
    """``Cli_printer.multi_line_record``: the lines of one record, newline-terminated."""
    pairs = list(pairs)
    width = 4 + max((len(k) for k, _ in pairs), default=0)
    lines = []
    for i, (k, v) in enumerate(pairs):
        key = k.ljust(width) if i == 0 else k.rjust(width)
        lines.append(f"{key}: {v}")
    return "\n".join(lines) + "\n"


def record_block(pairs) -> str:
    """What one record prints as on the terminal (the client adds the final newline)."""
    return record_text(pairs) + "\n" + "\n"


def minimal_line(records) -> str | None:
    """The ``--minimal`` contribution of one table: first values comma-joined, or None."""
    records = [list(r) for r in records]
    if not records or not records[0]:
        return None
    return ",".join(escape_commas(r[0][1]) if r else "" for r in records)


class Printer:
    """``Cli_printer.make_printer``: turns table/list/message/stderr outputs into protocol
    commands handed to ``emit``. In minimal mode tables and lists are buffered and only
    ``flush`` prints (one line, the buffered parts in reverse order, as XAPI does);
    messages and stderr output are dropped."""

    def __init__(self, emit, minimal: bool = False):
        self.emit = emit
        self.minimal = minimal
        self.buffer: list = []

    def table(self, records):
        if self.minimal:
            line = minimal_line(records)
            if line is not None:
                self.buffer.insert(0, line)
            return
        for r in records:
            self.emit(cliproto.Print(record_text(r) + "\n"))

    def lines(self, items):
        items = list(items)
        if self.minimal:
            self.buffer.insert(0, ",".join(escape_commas(s) for s in items))
            return
        for s in items:
            self.emit(cliproto.Print(s))

    def msg(self, text: str):
        if not self.minimal:
            self.emit(cliproto.Print(text))

    def stderr(self, text: str):
        if not self.minimal:
            self.emit(cliproto.PrintStderr(text + "\n"))

    def flush(self):
        if self.minimal:
            self.emit(cliproto.Print(",".join(self.buffer)))


# -- errors -----------------------------------------------------------------------------------


def server_error_lines(code: str, params, errors: dict, lookup=lambda r: None):
    """``Cli_util.get_server_error``: [doc, "name: value", ...] for a datamodel error, or None
    for a code without documentation (then the client prints ``Error code:`` lines)."""
    entry = errors.get(code)
    if entry is None:
        return None
    names, doc = list(entry[0]), entry[1]
    if code == "VMS_FAILED_TO_COOPERATE":
        names = ["VM"] * len(params)
    values = [ref_convert(lookup, p) for p in params]
    out = [doc]
    for i in range(max(len(names), len(values))):
        if i < len(names) and i < len(values):
            out.append(f"{names[i]}: {values[i]}")
        elif i < len(values):
            out.append(f"<extra>: {values[i]}")
        else:
            out.append(f"{names[i]}: <unknown>")
    return out


def server_error_commands(code: str, params, errors: dict, lookup=lambda r: None) -> list:
    """``Cli_util.server_error``: the protocol commands reporting an API error."""
    lines = server_error_lines(code, params, errors, lookup)
    if lines is None:
        return [cliproto.Error(code, [ref_convert(lookup, p) for p in params])]
    return [cliproto.PrintStderr(line + "\n") for line in lines]


def param_error(kind: str, text: str) -> list:
    """``Xapi_cli.param_error``: ``kind: text`` (or just ``text``), then the usage hint."""
    first = f"{kind}: {text}" if kind else text
    return [cliproto.PrintStderr(first + "\n"), cliproto.PrintStderr("For usage run: 'xe help'\n")]


# -- help -------------------------------------------------------------------------------------


def make_list(names) -> list:
    """``Cli_frontend.make_list``: comma-joined names wrapped after 74 columns, indented."""
    names = list(names)
    indent = "    "
    lines = []
    cur = indent + names[0]
    for n in names[1:]:
        if len(cur) + len(n) > 74:
            lines.append(cur)
            cur = indent + n
        else:
            cur = cur + ", " + n
    lines.append(cur)
    return lines
