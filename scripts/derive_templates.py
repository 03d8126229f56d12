#!/usr/bin/env python3
"""Derive xapi_sim/data/templates_<release>.json: the default VM templates a fresh host of
each release carries.

Usage:
  python scripts/derive_templates.py GUEST_TEMPLATES GUEST_TEMPLATES_JSON XEN_API   derive
  python scripts/derive_templates.py --check                  validate the committed JSON

The three arguments are git directories (what ``fetch github:xenserver/guest-templates``,
``fetch github:xenserver/guest-templates-json`` and ``fetch github:xapi-project/xen-api``
give); the revision of each release is pinned in ``RELEASES`` below.

Up to XenServer 7.0 the templates were made by ``create_templates.ml`` (xenserver/
guest-templates, split out of xen-api in 2011), an OCaml program that builds each template
record from a few helper functions and creates it with ``VM.create_from_record``. Rather than
restate those helpers, this script evaluates the file with a small interpreter for the pure
OCaml subset it uses (below), so the derived records are what the program computes.
``Constants.hvm_boot_*`` come from xen-api ``ocaml/idl/constants.ml``.

From 7.1 the templates are JSON files (xenserver/guest-templates-json ``json/*.json``, each
optionally ``derived_from`` a base) that a Python loader turns into an export and imports with
``/import_metadata``; ``JsonGenerator`` applies the same rules (read off
``guesttemplates/blank_template.py`` at the same revision where they vary: the platform
defaults, the restriction order, dropping empty map values).

Not in the data: ``other_config:mac_seed`` (a random UUID: VM.create adds it up to 7.0, the
JSON loader generates one from 7.1) and per-host fields (uuid of OCaml-era templates, refs).
``--check`` needs no checkout: every template's disks spec parses, memory and VCPU
constraints hold, recommendations is a restrictions list, names are unique.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys


class OcamlError(Exception):
    pass


TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<com>\(\*)
  | (?P<str>"(?:[^"\\]|\\.|\\\n)*")
  | (?P<char>'(?:[^'\\]|\\.)')
  | (?P<num>\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?[Ll]?|0x[0-9a-fA-F]+[Ll]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_']*)
  | (?P<op>\*\*|::|:=|->|<-|<>|<=|>=|\|\||&&|;;|\|>|@@|[-+*/=<>@^|;,()\[\]{}~?:.!`'&$%#])
""",
    re.X | re.S,
)

KEYWORDS = {
    "let",
    "in",
    "rec",
    "and",
    "fun",
    "function",
    "match",
    "with",
    "if",
    "then",
    "else",
    "begin",
    "end",
    "type",
    "open",
    "module",
    "exception",
    "of",
    "when",
    "try",
    "assert",
    "true",
    "false",
    "mod",
    "not",
    "struct",
    "sig",
    "val",
}


def _unescape(body):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n == "\n":  # backslash-newline: skip the newline and leading blanks
            i += 2
            while i < len(body) and body[i] in " \t":
                i += 1
            continue
        if n.isdigit():
            out.append(chr(int(body[i + 1 : i + 4])))
            i += 4
            continue
        out.append(
            {
                "n": "\n",
                "t": "\t",
                "r": "\r",
                "b": "\b",
                "\\": "\\",
                '"': '"',
                "'": "'",
                " ": " ",
            }.get(n, "\\" + n)
        )
        i += 2
    return "".join(out)


def tokenize(text):
    """[(kind, value, col0)]: col0 is True for a token in the first column of its line."""
    toks, i = [], 0
    while i < len(text):
        m = TOKEN.match(text, i)
        if not m:
            raise OcamlError(f"cannot tokenize at {text[i : i + 30]!r}")
        kind = m.lastgroup
        if kind == "com":
            depth, j = 1, m.end()
            while depth and j < len(text):
                if text.startswith("(*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*)", j):
                    depth, j = depth - 1, j + 2
                elif text[j] == '"':
                    s = re.compile(r'"(?:[^"\\]|\\.)*"', re.S).match(text, j)
                    j = s.end() if s else j + 1
                else:
                    j += 1
            i = j
            continue
        if kind == "ws":
            i = m.end()
            continue
        val = m.group()
        if kind == "str":
            val = _unescape(val[1:-1])
        elif kind == "char":
            val = _unescape(val[1:-1])
        elif kind == "num":
            v = val.rstrip("Ll").replace("_", "")
            val = (
                float(v) if ("." in v or "e" in v.lower()) and not v.startswith("0x") else int(v, 0)
            )
        elif kind == "ident" and val in KEYWORDS:
            kind = "kw"
        toks.append((kind, val, m.start() == text.rfind("\n", 0, m.start()) + 1))
        i = m.end()
    toks.append(("eof", None, True))
    return toks


# --- values -----------------------------------------------------------------------------


class Ctor:
    """A constructor value (``X32``, ``MiB 512``, `` `system``)."""

    __slots__ = ("name", "arg")

    def __init__(self, name, arg=None):
        self.name, self.arg = name, arg

    def __eq__(self, other):
        return isinstance(other, Ctor) and (self.name, self.arg) == (other.name, other.arg)

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return self.name if self.arg is None else f"{self.name}({self.arg!r})"


class Closure:
    def __init__(self, params, body, env, name="<fun>"):
        self.params, self.body, self.env, self.name = params, body, env, name


class Builtin:
    def __init__(self, fn, arity, name):
        self.fn, self.arity, self.name = fn, arity, name


class Partial:
    def __init__(self, fn, pos, labels):
        self.fn, self.pos, self.labels = fn, pos, labels


class Lazy:
    """A top-level binding whose source is parsed and evaluated on first use."""

    def __init__(self, module, toks):
        self.module, self.toks, self.value, self.busy = module, toks, None, False


# --- parser (to a small tuple AST) ------------------------------------------------------


class Parser:
    def __init__(self, toks):
        self.t, self.i = toks, 0

    def peek(self, k=0):
        return self.t[self.i + k]

    def at(self, *vals):
        kind, val, _ = self.peek()
        return kind in ("op", "kw") and val in vals

    def next(self):
        tok = self.t[self.i]
        self.i += 1
        return tok

    def expect(self, val):
        kind, v, _ = self.next()
        if v != val or kind not in ("op", "kw"):
            raise OcamlError(f"expected {val!r}, got {v!r} near {self.context()}")

    def context(self):
        return " ".join(str(t[1]) for t in self.t[max(0, self.i - 8) : self.i + 8])

    # expressions
    def expr(self):
        """A full expression including sequences ``a; b``."""
        e = self.expr_ns()
        if self.at(";") and not self._seq_stop():
            self.next()
            return ("seq", e, self.expr())
        return e

    def _seq_stop(self):
        k, v, _ = self.peek(1)
        return (
            k in ("op", "kw") and v in ("]", ")", "}", "end", "in", "|", "with", "done")
        ) or k == "eof"

    def expr_ns(self):
        """An expression without a top-level sequence (list elements, record fields)."""
        if self.at("let"):
            return self.let_in()
        if self.at("fun"):
            self.next()
            params = []
            while not self.at("->"):
                params.append(self.param())
            self.next()
            return ("fun", params, self.expr())
        if self.at("function"):
            self.next()
            return (
                "fun",
                [("pos", None, None, ("pvar", "$arg"))],
                ("match", ("var", "$arg"), self.arms()),
            )
        if self.at("match"):
            self.next()
            scrut = self.expr()
            self.expect("with")
            return ("match", scrut, self.arms())
        if self.at("try"):
            self.next()
            body = self.expr()
            self.expect("with")
            return ("try", body, self.arms())
        if self.at("if"):
            self.next()
            c = self.expr()
            self.expect("then")
            a = self.expr_ns()
            b = None
            if self.at("else"):
                self.next()
                b = self.expr_ns()
            return ("if", c, a, b)
        return self.tuple_expr()

    def let_in(self):
        self.expect("let")
        if self.at("rec"):
            self.next()
        pat, params = self.binding_head()
        self.expect("=")
        val = self.expr()
        self.expect("in")
        body = self.expr()
        return ("let", pat, params, val, body)

    def binding_head(self):
        """``name params`` or a pattern; returns (pattern, params)."""
        if self.at("(") and self.peek(1)[0] == "op" and self.peek(2)[1] == ")":
            self.next()
            op = self.next()[1]
            self.next()
            name = ("pvar", op)
        else:
            name = self.pattern()
        params = []
        while not self.at("=", ":"):
            params.append(self.param())
        if self.at(":"):  # return type annotation: skip to '='
            while not self.at("="):
                self.next()
        return name, params

    def param(self):
        if self.at("~", "?"):
            kind = "lab" if self.next()[1] == "~" else "opt"
            if self.at("("):
                self.next()
                name = self.next()[1]
                default = None
                if self.at(":"):
                    while not self.at("=", ")"):
                        self.next()
                if self.at("="):
                    self.next()
                    default = self.expr()
                self.expect(")")
                return (kind, name, default, ("pvar", name))
            name = self.next()[1]
            pat = ("pvar", name)
            if self.at(":"):
                self.next()
                pat = self.simple_pattern()
            return (kind, name, None, pat)
        return ("pos", None, None, self.simple_pattern())

    def arms(self):
        if self.at("|"):
            self.next()
        arms = []
        while True:
            pat = self.pattern()
            guard = None
            if self.at("when"):
                self.next()
                guard = self.expr()
            self.expect("->")
            arms.append((pat, guard, self.expr()))
            if not self.at("|"):
                return arms
            self.next()

    def tuple_expr(self):
        e = self.binop(0)
        if self.at(","):
            items = [e]
            while self.at(","):
                self.next()
                items.append(self.binop(0))
            return ("tuple", items)
        return e

    LEVELS = [
        (("||", "or"), "right"),
        (("&&", "&"), "right"),
        (("=", "<>", "<", ">", "<=", ">=", "==", "!=", "|>", "$"), "left"),
        (("@", "^"), "right"),
        (("::",), "right"),
        (("+", "-"), "left"),
        (("*", "/", "mod", "%"), "left"),
        (("**",), "right"),
    ]

    def binop(self, level):
        if level == len(self.LEVELS):
            return self.unary()
        ops, assoc = self.LEVELS[level]
        left = self.binop(level + 1)
        while self.at(*ops) and not (self.at("|") or self.at(";")):
            op = self.next()[1]
            if assoc == "right":
                return ("binop", op, left, self.binop(level))
            left = ("binop", op, left, self.binop(level + 1))
        return left

    def unary(self):
        if self.at("-"):
            self.next()
            return ("neg", self.unary())
        if self.at("not"):
            self.next()
            return ("app", ("var", "not"), [("pos", None, self.unary())])
        if self.at("assert"):
            self.next()
            return ("assert", self.atom_postfix())
        return self.application()

    def _starts_atom(self):
        kind, val, _ = self.peek()
        if kind in ("str", "num", "char", "ident"):
            return True
        if kind == "kw":
            return val in ("true", "false", "begin")
        return val in ("(", "[", "{", "`", "~", "?", "!")

    def application(self):
        head = self.atom_postfix()
        args = []
        while self._starts_atom():
            if self.at("~", "?"):
                kind = "lab" if self.next()[1] == "~" else "opt"
                name = self.next()[1]
                if self.at(":"):
                    self.next()
                    args.append((kind, name, self.atom_postfix()))
                else:
                    args.append((kind, name, ("var", name)))
            else:
                args.append(("pos", None, self.atom_postfix()))
        if head[0] == "ctor" and head[2] is None and args:
            if len(args) != 1 or args[0][0] != "pos":
                raise OcamlError(f"constructor {head[1]} applied oddly")
            return ("ctor", head[1], args[0][2])
        return ("app", head, args) if args else head

    def atom_postfix(self):
        e = self.atom()
        while self.at(".") and self.peek(1)[0] == "ident":
            self.next()
            e = ("field", e, self.next()[1])
        return e

    def atom(self):
        kind, val, _ = self.next()
        if kind in ("str", "num", "char"):
            return ("const", val)
        if kind == "kw" and val in ("true", "false"):
            return ("const", val == "true")
        if kind == "kw" and val == "begin":
            e = self.expr()
            self.expect("end")
            return e
        if kind == "op" and val == "!":
            return ("deref", self.atom_postfix())
        if kind == "op" and val == "`":
            return ("ctor", "`" + self.next()[1], None)
        if kind == "op" and val == "(":
            if self.at(")"):
                self.next()
                return ("const", ())
            if self.peek()[0] == "op" and self.peek(1)[1] == ")" and self.peek()[1] not in "(":
                op = self.next()[1]
                self.next()
                return ("var", op)
            e = self.expr()
            if self.at(":"):  # type annotation
                depth = 0
                while depth or not self.at(")"):
                    depth += {"(": 1, ")": -1}.get(self.next()[1], 0)
            self.expect(")")
            return e
        if kind == "op" and val == "[":
            items = []
            while not self.at("]"):
                items.append(self.expr_ns())
                if self.at(";"):
                    self.next()
            self.next()
            return ("list", items)
        if kind == "op" and val == "{":
            j = self.i  # a literal starts with ``field =`` or ``Module.field =``
            while (
                self.t[j][0] == "ident" and self.t[j + 1][1] == "." and self.t[j + 2][0] == "ident"
            ):
                j += 2
            base = None
            if not (self.t[j][0] == "ident" and self.t[j + 1][1] == "="):
                base = self.atom_postfix()
                self.expect("with")
            fields = []
            while not self.at("}"):
                name = self.next()[1]
                while self.at("."):  # Module.field
                    self.next()
                    name = self.next()[1]
                self.expect("=")
                fields.append((name, self.expr_ns()))
                if self.at(";"):
                    self.next()
            self.next()
            return ("record", base, fields)
        if kind == "ident":
            if val[0].isupper():
                path = [val]
                while self.at(".") and self.peek(1)[0] == "ident":
                    self.next()
                    path.append(self.next()[1])
                    if path[-1][0].islower():
                        return ("var", ".".join(path))
                if len(path) > 1:
                    return ("ctor", ".".join(path), None)
                return ("ctor", val, None)
            return ("var", val)
        raise OcamlError(f"unexpected {val!r} near {self.context()}")

    # patterns
    def pattern(self):
        alts = [self.tuple_pattern()]
        while self.at("|"):
            self.next()
            alts.append(self.tuple_pattern())
        return alts[0] if len(alts) == 1 else ("por", alts)

    def tuple_pattern(self):
        p = self.cons_pattern()
        if self.at(","):
            items = [p]
            while self.at(","):
                self.next()
                items.append(self.cons_pattern())
            return ("ptuple", items)
        return p

    def cons_pattern(self):
        p = self.ctor_pattern()
        if self.at("::"):
            self.next()
            return ("pcons", p, self.cons_pattern())
        return p

    def ctor_pattern(self):
        kind, val, _ = self.peek()
        if kind == "ident" and val[0].isupper():
            self.next()
            while self.at(".") and self.peek(1)[0] == "ident":
                self.next()
                val = val + "." + self.next()[1]
            if self._starts_simple_pattern():
                return ("pctor", val, self.simple_pattern())
            return ("pctor", val, None)
        return self.simple_pattern()

    def _starts_simple_pattern(self):
        kind, val, _ = self.peek()
        return (
            kind in ("str", "num", "char")
            or (kind == "ident" and val[0].islower())
            or (kind == "kw" and val in ("true", "false"))
            or (kind == "op" and val in ("(", "[", "`"))
            or (kind == "ident" and val == "_")
        )

    def simple_pattern(self):
        kind, val, _ = self.next()
        if kind in ("str", "num", "char"):
            return ("pconst", val)
        if kind == "kw" and val in ("true", "false"):
            return ("pconst", val == "true")
        if kind == "ident" and val == "_":
            return ("pany",)
        if kind == "ident" and val[0].isupper():
            self.i -= 1
            return self.ctor_pattern()
        if kind == "ident":
            return ("pvar", val)
        if kind == "op" and val == "`":
            return ("pctor", "`" + self.next()[1], None)
        if kind == "op" and val == "(":
            if self.at(")"):
                self.next()
                return ("pconst", ())
            p = self.pattern()
            if self.at(":"):
                while not self.at(")"):
                    self.next()
            self.expect(")")
            return p
        if kind == "op" and val == "[":
            items = []
            while not self.at("]"):
                items.append(self.pattern())
                if self.at(";"):
                    self.next()
            self.next()
            return ("plist", items)
        raise OcamlError(f"bad pattern at {val!r} near {self.context()}")


# --- evaluation -------------------------------------------------------------------------


class Env:
    def __init__(self, vars, parent=None):
        self.vars, self.parent = vars, parent

    def lookup(self, name):
        env = self
        while env is not None:
            if name in env.vars:
                v = env.vars[name]
                return v.module.force(v) if isinstance(v, Lazy) else v
            env = env.parent
        raise OcamlError(f"unbound {name}")


def match(pat, v, binds):
    tag = pat[0]
    if tag == "pany":
        return True
    if tag == "pvar":
        binds[pat[1]] = v
        return True
    if tag == "pconst":
        return v == pat[1]
    if tag == "ptuple":
        return (
            isinstance(v, tuple)
            and len(v) == len(pat[1])
            and all(match(p, x, binds) for p, x in zip(pat[1], v, strict=True))
        )
    if tag == "plist":
        return (
            isinstance(v, list)
            and len(v) == len(pat[1])
            and all(match(p, x, binds) for p, x in zip(pat[1], v, strict=True))
        )
    if tag == "pcons":
        return (
            isinstance(v, list)
            and v != []
            and match(pat[1], v[0], binds)
            and match(pat[2], v[1:], binds)
        )
    if tag == "pctor":
        if not isinstance(v, Ctor) or v.name.split(".")[-1] != pat[1].split(".")[-1]:
            return False
        return pat[2] is None or match(pat[2], v.arg, binds)
    if tag == "por":
        return any(match(p, v, binds) for p in pat[1])
    raise OcamlError(f"pattern {tag}")


def _sprintf(fmt, *args):
    out, args = [], list(args)
    for m in re.finditer(r"%(L?[dsbfi]|%)|[^%]+", fmt):
        s = m.group()
        if s == "%%":
            out.append("%")
        elif s.startswith("%"):
            a = args.pop(0)
            out.append(("true" if a else "false") if isinstance(a, bool) else str(a))
        else:
            out.append(s)
    return "".join(out)


def _xml_to_string(x):
    """xml-light's ``Xml.to_string``: attributes in order, empty elements as ``<t .../>``."""
    tag, attrs, children = x.arg if isinstance(x, Ctor) else x

    def esc(s):
        return (
            s.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&quot;")
            .replace("'", "&apos;")
        )

    a = "".join(f' {k}="{esc(v)}"' for k, v in attrs)
    if not children:
        return f"<{tag}{a}/>"
    return f"<{tag}{a}>" + "".join(_xml_to_string(c) for c in children) + f"</{tag}>"


def _printf_n(fmt):
    return fmt.count("%") - 2 * fmt.count("%%")


class Module:
    """One ``.ml`` file: top-level bindings are parsed and evaluated lazily."""

    def __init__(self, text, extra=None):
        self.globals = Env({})
        self.globals.vars.update(self.builtins())
        self.globals.vars.update(extra or {})
        toks = tokenize(text)
        starts = [
            i
            for i, t in enumerate(toks)
            if t[2]
            and t[0] == "kw"
            and t[1] in ("let", "type", "open", "module", "exception", "and")
        ]
        starts.append(len(toks) - 1)
        for a, b in zip(starts, starts[1:], strict=False):
            if toks[a][1] != "let":
                continue
            item = toks[a:b] + [("eof", None, True)]
            j = 1
            if item[j][1] == "rec":
                j += 1
            if item[j][0] == "ident":
                name = item[j][1]
            elif item[j][1] == "(" and item[j + 2][1] == ")":
                name = item[j + 1][1]
            else:
                continue  # let () = ... or a pattern binding: not needed
            if name not in self.globals.vars or isinstance(self.globals.vars[name], Lazy):
                self.globals.vars[name] = Lazy(self, item)

    def force(self, lazy):
        if lazy.value is None:
            if lazy.busy:
                raise OcamlError("recursive top-level binding")
            lazy.busy = True
            p = Parser(lazy.toks)
            p.expect("let")
            if p.at("rec"):
                p.next()
            pat, params = p.binding_head()
            p.expect("=")
            body = p.expr()
            if p.peek()[0] != "eof" and not p.at(";;"):
                raise OcamlError(f"trailing tokens near {p.context()}")
            lazy.value = (
                Closure(params, body, self.globals, pat[1])
                if params
                else self.eval(body, self.globals)
            )
            lazy.busy = False
        return lazy.value

    def get(self, name):
        return self.globals.lookup(name)

    # builtins
    def builtins(self):
        def b(n, arity):
            return lambda fn: Builtin(fn, arity, n)

        listmap = b("List.map", 2)(lambda f, xs: [self.apply(f, [("pos", None, x)]) for x in xs])

        def listiter(f, xs):
            for x in xs:
                self.apply(f, [("pos", None, x)])
            return ()

        def sprintf(fmt):
            n = _printf_n(fmt)
            return Builtin(lambda *a: _sprintf(fmt, *a), n, "sprintf") if n else fmt

        def log(fmt):
            n = _printf_n(fmt)
            return Builtin(lambda *a: (), n, "log") if n else ()

        table = {
            "Int64.mul": b("Int64.mul", 2)(lambda a, c: a * c),
            "Int64.add": b("Int64.add", 2)(lambda a, c: a + c),
            "Int64.of_int": b("Int64.of_int", 1)(lambda a: a),
            "Int64.to_int": b("Int64.to_int", 1)(lambda a: a),
            "Int64.to_string": b("Int64.to_string", 1)(str),
            "Int64.of_string": b("Int64.of_string", 1)(int),
            "string_of_int": b("string_of_int", 1)(str),
            "int_of_string": b("int_of_string", 1)(int),
            "string_of_bool": b("string_of_bool", 1)(lambda x: "true" if x else "false"),
            "string_of_float": b("string_of_float", 1)(repr),
            "not": b("not", 1)(lambda x: not x),
            "ignore": b("ignore", 1)(lambda x: ()),
            "fst": b("fst", 1)(lambda x: x[0]),
            "snd": b("snd", 1)(lambda x: x[1]),
            "List.mem": b("List.mem", 2)(lambda x, xs: x in xs),
            "List.mem_assoc": b("List.mem_assoc", 2)(lambda k, xs: any(p[0] == k for p in xs)),
            "List.assoc": b("List.assoc", 2)(lambda k, xs: next(p[1] for p in xs if p[0] == k)),
            "List.map": listmap,
            "List.iter": b("List.iter", 2)(listiter),
            "List.filter": b("List.filter", 2)(
                lambda f, xs: [x for x in xs if self.apply(f, [("pos", None, x)])]
            ),
            "List.concat": b("List.concat", 1)(lambda ls: [x for xs in ls for x in xs]),
            "List.rev": b("List.rev", 1)(lambda xs: xs[::-1]),
            "List.hd": b("List.hd", 1)(lambda xs: xs[0]),
            "List.length": b("List.length", 1)(len),
            "String.concat": b("String.concat", 2)(lambda sep, xs: sep.join(xs)),
            "Printf.sprintf": b("Printf.sprintf", 1)(sprintf),
            "Xml.to_string": b("Xml.to_string", 1)(_xml_to_string),
            "error": b("error", 1)(log),
            "debug": b("debug", 1)(log),
            "info": b("info", 1)(log),
            "warn": b("warn", 1)(log),
            "Ref.null": "OpaqueRef:NULL",
            "Date.never": "19700101T00:00:00Z",
        }
        return table

    def apply(self, f, args):
        if isinstance(f, Partial):
            return self.apply(f.fn, f.pos + args)
        if isinstance(f, Builtin):
            pos = [a[2] for a in args if a[0] == "pos"]
            if len(pos) < f.arity:
                return Partial(f, args, None)
            res = f.fn(*pos[: f.arity])
            rest = [("pos", None, x) for x in pos[f.arity :]]
            return self.apply(res, rest) if rest else res
        if isinstance(f, Ctor):
            if len(args) != 1:
                raise OcamlError(f"constructor {f.name} with {len(args)} args")
            return Ctor(f.name, args[0][2])
        if not isinstance(f, Closure):
            raise OcamlError(f"applying a non-function {f!r}")
        npos = sum(1 for p in f.params if p[0] == "pos")
        pos = [a for a in args if a[0] == "pos"]
        if len(pos) < npos:
            return Partial(f, args, None)
        labelled = {a[1]: a for a in args if a[0] != "pos"}
        pos_iter = iter(pos)
        binds = {}
        env = Env(binds, f.env)
        for kind, name, default, pat in f.params:
            if kind == "pos":
                if not match(pat, next(pos_iter)[2], binds):
                    raise OcamlError(f"match failure in {f.name}")
            elif name in labelled:
                lk, _, v = labelled.pop(name)
                val = v
                if kind == "opt" and lk == "lab" and default is None:
                    val = Ctor("Some", val)
                binds[name] = val
            elif kind == "opt":
                binds[name] = self.eval(default, env) if default is not None else Ctor("None")
            else:
                raise OcamlError(f"missing ~{name} for {f.name}")
        if labelled:
            raise OcamlError(f"unknown labels {sorted(labelled)} for {f.name}")
        res = self.eval(f.body, env)
        rest = list(pos_iter)
        return self.apply(res, rest) if rest else res

    def eval(self, e, env):
        tag = e[0]
        if tag == "const":
            return e[1]
        if tag == "var":
            return env.lookup(e[1])
        if tag == "ctor":
            name = e[1]
            arg = None if e[2] is None else self.eval(e[2], env)
            if "." in name:  # Module.Name may be a value the caller supplied
                try:
                    v = env.lookup(name)
                except OcamlError:
                    v = None
                if v is not None:
                    return v if e[2] is None else self.apply(v, [("pos", None, arg)])
            return Ctor(name, arg)
        if tag == "app":
            f = self.eval(e[1], env)
            args = [(k, n, self.eval(a, env)) for k, n, a in e[2]]
            return self.apply(f, args)
        if tag == "tuple":
            return tuple(self.eval(x, env) for x in e[1])
        if tag == "list":
            return [self.eval(x, env) for x in e[1]]
        if tag == "record":
            base = dict(self.eval(e[1], env)) if e[1] is not None else {}
            for name, v in e[2]:
                base[name] = self.eval(v, env)
            return base
        if tag == "field":
            rec = self.eval(e[1], env)
            if not isinstance(rec, dict) or e[2] not in rec:
                raise OcamlError(f"no field {e[2]}")
            return rec[e[2]]
        if tag == "binop":
            return self.binop(e[1], e[2], e[3], env)
        if tag == "neg":
            return -self.eval(e[1], env)
        if tag == "if":
            if self.eval(e[1], env):
                return self.eval(e[2], env)
            return self.eval(e[3], env) if e[3] is not None else ()
        if tag == "let":
            _, pat, params, val, body = e
            binds = {}
            new = Env(binds, env)
            if params:
                binds[pat[1]] = Closure(params, val, env, pat[1])
            elif not match(pat, self.eval(val, env), binds):
                raise OcamlError("let pattern failed")
            return self.eval(body, new)
        if tag == "fun":
            return Closure(e[1], e[2], env)
        if tag == "match":
            v = self.eval(e[1], env)
            for pat, guard, body in e[2]:
                binds = {}
                if match(pat, v, binds):
                    new = Env(binds, env)
                    if guard is None or self.eval(guard, new):
                        return self.eval(body, new)
            raise OcamlError(f"Match_failure on {v!r}")
        if tag == "seq":
            self.eval(e[1], env)
            return self.eval(e[2], env)
        if tag == "assert":
            if not self.eval(e[1], env):
                raise OcamlError("Assert_failure")
            return ()
        raise OcamlError(f"cannot evaluate {tag}")

    def binop(self, op, a, b, env):
        if op == "||":
            return self.eval(a, env) or self.eval(b, env)
        if op == "&&":
            return self.eval(a, env) and self.eval(b, env)
        x, y = self.eval(a, env), self.eval(b, env)
        try:
            user = env.lookup(op)
        except OcamlError:
            user = None
        if user is not None:
            return self.apply(user, [("pos", None, x), ("pos", None, y)])
        if op == "::":
            return [x] + y
        if op == "@":
            return x + y
        if op == "^":
            return x + y
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            return int(x / y) if isinstance(x, int) else x / y
        if op == "mod":
            return x % y
        if op in ("=", "=="):
            return x == y
        if op in ("<>", "!="):
            return x != y
        if op == "<":
            return x < y
        if op == ">":
            return x > y
        if op == "<=":
            return x <= y
        if op == ">=":
            return x >= y
        if op == "|>":
            return self.apply(y, [("pos", None, x)])
        raise OcamlError(f"operator {op}")


# --- the template catalogues --------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "xapi_sim" / "data"  # templates_<release>.json

# release -> (kind, revision). "ocaml": xenserver/guest-templates create_templates.ml (the
# generator xapi's firstboot ran up to 7.0); "json": xenserver/guest-templates-json (7.1 on).
RELEASES = {
    "creedence": (
        "ocaml",
        "1851804",
        "last commit of the creedence branch merged as 'creedence/master' (XenServer "
        "6.5 GA, January 2015)",
    ),
    "cream": (
        "ocaml",
        "5019bcd",
        "trunk on 2015-04-21 (XenServer 6.5 SP1 GA May 2015): adds Scientific Linux 5/6/7, "
        "SLED 11 SP3, Windows 10 Preview and the hardware_platform_version field; the tree "
        "equals 4d5ce2d on the side branch",
    ),
    "dundee": (
        "ocaml",
        "cec25c7",
        "CA-210995 of 2016-05-13, the last OCaml-generated set (XenServer 7.0 build "
        "125380c is dated 2016-05-13; the next commits start the JSON rewrite)",
    ),
    "ely": ("json", "v1.1.1", "tag v1.1.1 = tip of release/ely/staging (XenServer 7.1 GA)"),
    "stockholm": (
        "json",
        "v1.9.4",
        "tag v1.9.4 = tip of release/stockholm/lcm (Citrix Hypervisor 8.2 CU1)",
    ),
    "nile": ("json", "v2.0.16", "tag v2.0.16 = tip of release/xs8 (XenServer 8 as updated today)"),
}

# VM fields a template carries, in the order the JSON lists them.
FIELDS = [
    "uuid",
    "reference_label",
    "name_label",
    "name_description",
    "user_version",
    "is_a_template",
    "is_default_template",
    "memory_static_min",
    "memory_dynamic_min",
    "memory_dynamic_max",
    "memory_static_max",
    "memory_target",
    "VCPUs_max",
    "VCPUs_at_startup",
    "VCPUs_params",
    "actions_after_shutdown",
    "actions_after_reboot",
    "actions_after_crash",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_policy",
    "HVM_boot_params",
    "HVM_shadow_multiplier",
    "platform",
    "PCI_bus",
    "other_config",
    "recommendations",
    "blocked_operations",
    "generation_id",
    "hardware_platform_version",
    "has_vendor_device",
    "domain_type",
]
MAPS = {"VCPUs_params", "HVM_boot_params", "platform", "other_config", "blocked_operations"}

# Releases whose VM class has is_default_template (falcon on): the JSON loader calls
# VM.set_is_default_template true, which also writes other_config:default_template=true
# (xen-api xapi_vm_helpers.ml set_is_default_template).
HAS_IS_DEFAULT = {"stockholm", "nile"}


def git(gitdir, *args):
    return subprocess.run(
        ["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True, text=True
    ).stdout


def _amap(pairs, what):
    out = {}
    for k, v in pairs:
        if k in out:
            raise OcamlError(f"duplicate key {k!r} in {what}")
        out[k] = v
    return out


def ocaml_templates(gitdir, rev, constants):
    """Evaluate ``create_all_templates`` at ``rev``: the records it creates, in order.

    ``find_or_create_template`` becomes a collector; ``demo_xgt_template`` creates nothing
    (it needs /opt/xensource/packages/xgt/debian-etch.xgt, which product hosts lack)."""
    text = git(gitdir, "show", f"{rev}:create_templates.ml")
    made = []
    extra = {
        "find_or_create_template": Builtin(
            lambda rec, rpc, s: made.append(rec) or "ref", 3, "find_or_create_template"
        ),
        "demo_xgt_template": Builtin(lambda *a: (), 6, "demo_xgt_template"),
    }
    extra.update({f"Constants.{k}": v for k, v in constants.items()})
    mod = Module(text, extra)
    mod.apply(mod.get("create_all_templates"), [("pos", None, "rpc"), ("pos", None, "s")])
    out = []
    for rec in made:
        t = {}
        for f in FIELDS:
            v = rec.get("vM_" + f) if f != "uuid" else None  # "Invalid": create ignores it
            if v is None:
                continue
            if isinstance(v, Ctor):
                v = v.name.lstrip("`")
            if f in MAPS:
                v = _amap(v, f"{rec['vM_name_label']}.{f}")
            t[f] = v
        out.append(t)
    return out


def xen_api_constants(gitdir, rev):
    text = git(gitdir, "show", f"{rev}:ocaml/idl/constants.ml")
    return dict(re.findall(r'^let\s+(\w+)\s*=\s*"([^"]*)"', text, re.M))


# guest-templates-json: the generator's semantics, as read from guesttemplates/blank_template.py
# at each revision (platform defaults and the restriction order come from the source itself).
PLATFORM_DEFAULT = re.compile(
    r"if defaults or '(\w+)' in data:\s*\n\s*self\.(\w+) = '([^']*)' if "
    r"get_bool_key\(data, '\w+', (True|False)\) else '([^']*)'"
)
RESTRICTION_ORDER = re.compile(r"for field, attr in \((.*?)\):", re.S)
SCALE = {"T": 40, "G": 30, "M": 20, "K": 10}
# json key -> (restriction field, how the value is written)
RESTRICTION_KEYS = {
    "max_memory": ("memory-static-max", "amount"),
    "vcpus_min": ("vcpus-min", "str"),
    "vcpus_max": ("vcpus-max", "str"),
    "has_vendor_device": ("has-vendor-device", "truefalse"),
    "allow_gpu_passthrough": ("allow-gpu-passthrough", "10"),
    "allow_vgpu": ("allow-vgpu", "10"),
    "allow_network_sriov": ("allow-network-sriov", "10"),
    "supports_bios": ("supports-bios", "yesno"),
    "supports_uefi": ("supports-uefi", "yesno"),
    "supports_secure_boot": ("supports-secure-boot", "yesno"),
}
GENERATOR_ONLY = {
    "derived_from",
    "min_memory",
    "max_memory",
    "vcpus_min",
    "vcpus_max",
    "number_of_vbds",
    "number_of_vifs",
    "allow_gpu_passthrough",
    "allow_vgpu",
    "allow_network_sriov",
    "supports_bios",
    "supports_uefi",
    "supports_secure_boot",
    "disks",
    "platform",
    "other_config",
    "has_vendor_device",
}
RECORD_KEYS = {
    "uuid",
    "reference_label",
    "name_label",
    "name_description",
    "VCPUs_max",
    "VCPUs_at_startup",
    "HVM_boot_policy",
    "HVM_boot_params",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_shadow_multiplier",
    "generation_id",
    "domain_type",
    "blocked_operations",
    "user_version",
}


def amount(text):
    m = re.fullmatch(r"(\d+)([TtGgMmKk])?", text)
    if not m:
        raise ValueError(f"invalid amount {text!r}")
    return int(m.group(1)) << SCALE[m.group(2).upper()] if m.group(2) else int(m.group(1))


def truthy(v):
    return v.lower() in ("t", "true", "y", "yes", "1") if isinstance(v, str) else bool(v)


def xml_element(tag, attrs, children=""):
    """minidom's output as the generator's Python (2.7, and 3.6 on XenServer 8's dom0) wrote
    it: attributes sorted by name, empty elements as ``<t a="v"/>``."""
    a = "".join(f' {k}="{v}"' for k, v in sorted(attrs.items()))
    return f"<{tag}{a}>{children}</{tag}>" if children else f"<{tag}{a}/>"


class JsonGenerator:
    def __init__(self, gitdir, rev):
        self.gitdir, self.rev = gitdir, rev
        src = git(gitdir, "show", f"{rev}:guesttemplates/blank_template.py")
        platform_class = src[
            src.index("class Platform") : src.index("class ", src.index("class Platform") + 1)
        ]
        self.platform_defaults = [
            (k, t == "True", yes, no)
            for k, attr, yes, t, no in PLATFORM_DEFAULT.findall(platform_class)
        ]
        m = RESTRICTION_ORDER.search(src)
        self.order = re.findall(r"\('([\w-]+)', '(\w+)'\)", m.group(1))
        self.skip_empty_map_values = re.search(r"if v3:", src) is not None
        for key in RESTRICTION_KEYS:
            if f"'{key}' in data" in src and RESTRICTION_KEYS[key][0] not in dict(self.order):
                raise ValueError(f"{rev}: {key} is read but not written")
        self.files = {}
        for name in git(gitdir, "ls-tree", "--name-only", rev, "json/").split():
            self.files[name.split("/", 1)[1]] = json.loads(git(gitdir, "show", f"{rev}:{name}"))

    def chain(self, fname):
        """[root, ..., fname] following derived_from."""
        data = self.files[fname]
        return (self.chain(data["derived_from"]) if "derived_from" in data else []) + [data]

    def build(self, fname):
        chain = self.chain(fname)
        rec = {
            "user_version": 1,
            "is_a_template": True,
            "VCPUs_max": 1,
            "VCPUs_at_startup": 1,
            "VCPUs_params": {},
            "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart",
            "actions_after_crash": "restart",
            "PCI_bus": "",
            "blocked_operations": {},
            "generation_id": "",
            "hardware_platform_version": 0,
            "has_vendor_device": False,
        }
        platform, other, restr = {}, {}, {}
        for depth, data in enumerate(chain):
            root = depth == 0
            unknown = set(data) - GENERATOR_ONLY - RECORD_KEYS
            if unknown:
                raise ValueError(f"{fname}: keys the generator model does not know: {unknown}")
            if root:
                rec["HVM_boot_params"] = {}
                rec["HVM_shadow_multiplier"] = 1.0
                for k in (
                    "HVM_boot_policy",
                    "PV_bootloader",
                    "PV_kernel",
                    "PV_ramdisk",
                    "PV_args",
                    "PV_bootloader_args",
                    "PV_legacy_args",
                ):
                    rec[k] = ""
            for k, v in data.items():
                if k in RECORD_KEYS:
                    rec[k] = v
            if "min_memory" in data:
                lo = amount(data["min_memory"])
                rec.update(
                    memory_static_min=lo,
                    memory_dynamic_min=2 * lo,
                    memory_dynamic_max=2 * lo,
                    memory_static_max=2 * lo,
                )
            for key, default, yes, no in self.platform_defaults:
                if root or key in data:
                    platform[key] = yes if truthy(data.get(key, default)) else no
            platform.update(data.get("platform", {}))
            if "disks" in data:
                disks = "".join(
                    xml_element(
                        "disk",
                        {
                            "device": str(i),
                            "size": str(amount(d["size"])),
                            "sr": d.get("sr", ""),
                            "bootable": "true" if d.get("bootable", True) else "false",
                            "type": d.get("type", "system"),
                        },
                    )
                    for i, d in enumerate(data["disks"])
                )
                other["disks"] = xml_element("provision", {}, disks)
            other.update(data.get("other_config", {}))
            for key, (field, how) in RESTRICTION_KEYS.items():
                if key in data or (root and key == "has_vendor_device"):
                    v = data.get(key, False)
                    restr[field] = {
                        "amount": lambda x: str(amount(x)),
                        "str": str,
                        "truefalse": lambda x: "true" if truthy(x) else "false",
                        "10": lambda x: "1" if truthy(x) else "0",
                        "yesno": lambda x: "yes" if truthy(x) else "no",
                    }[how](v)
            for key in ("number_of_vbds", "number_of_vifs"):
                if key in data:
                    restr[key] = str(data[key])
        if "uuid" not in rec:
            return None
        if "memory_static_min" not in rec:
            raise ValueError(f"{fname}: no min_memory anywhere in its chain")
        rows = "".join(
            xml_element("restriction", {"field": f, attr: restr[f]})
            for f, attr in self.order
            if f in restr
        )
        rows += "".join(
            xml_element("restriction", {"property": p.replace("_", "-"), "max": restr.get(p, "")})
            for p in ("number_of_vbds", "number_of_vifs")
        )
        rec["recommendations"] = xml_element("restrictions", {}, rows)
        # the loader imports with default_template=false, then sets it true (the platform
        # and other_config maps lose empty values on export from stockholm on)
        other["default_template"] = "true"
        if self.skip_empty_map_values:
            platform = {k: v for k, v in platform.items() if v}
            other = {k: v for k, v in other.items() if v}
            rec["HVM_boot_params"] = {k: v for k, v in rec["HVM_boot_params"].items() if v}
        rec["platform"], rec["other_config"] = platform, other
        return rec

    def templates(self, release):
        out = []
        for fname in sorted(self.files):
            rec = self.build(fname)
            if rec is None:
                continue
            if release in HAS_IS_DEFAULT:
                rec["is_default_template"] = True
            out.append({f: rec[f] for f in FIELDS if f in rec})
        return sorted(out, key=lambda t: t["name_label"])


# --- validation (also what --check runs) --------------------------------------------------

DISK = re.compile(r'<disk( \w+="[^"]*")+/>')


def parse_disks(spec):
    """The provision spec as [{device, size, sr, bootable, type}]; ValueError if malformed."""
    m = re.fullmatch(r"<provision>((?:<disk(?: \w+=\"[^\"]*\")+/>)*)</provision>", spec)
    if not m:
        raise ValueError(f"not a provision spec: {spec!r}")
    disks = []
    for d in DISK.finditer(m.group(1)):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', d.group()))
        if (
            set(attrs) != {"device", "size", "sr", "bootable", "type"}
            or not attrs["size"].isdigit()
            or attrs["bootable"] not in ("true", "false")
        ):
            raise ValueError(f"bad disk {d.group()!r}")
        disks.append(dict(attrs, size=int(attrs["size"]), bootable=attrs["bootable"] == "true"))
    return disks


def check_template(t):
    problems = []
    name = t.get("name_label", "?")
    for f in (
        "name_label",
        "name_description",
        "memory_static_min",
        "memory_dynamic_min",
        "memory_dynamic_max",
        "memory_static_max",
        "VCPUs_max",
        "VCPUs_at_startup",
        "platform",
        "other_config",
        "recommendations",
        "HVM_boot_policy",
        "PV_bootloader",
    ):
        if f not in t:
            problems.append(f"{name}: no {f}")
    if problems:
        return problems
    if not (
        0
        < t["memory_static_min"]
        <= t["memory_dynamic_min"]
        <= t["memory_dynamic_max"]
        <= t["memory_static_max"]
    ):
        problems.append(f"{name}: memory constraints do not hold")
    if not 1 <= t["VCPUs_at_startup"] <= t["VCPUs_max"]:
        problems.append(f"{name}: VCPUs_at_startup > VCPUs_max")
    if "disks" in t["other_config"]:
        try:
            parse_disks(t["other_config"]["disks"])
        except ValueError as e:
            problems.append(f"{name}: {e}")
    if not re.fullmatch(
        r"<restrictions>(<restriction( [\w-]+=\"[^\"]*\")+/?>)*</restrictions>",
        t["recommendations"].replace(" />", "/>"),
    ):
        problems.append(f"{name}: recommendations is not a restrictions list")
    if t["HVM_boot_policy"] and t["PV_bootloader"]:
        problems.append(f"{name}: both HVM and PV boot")
    if t["other_config"].get("default_template") != "true":
        problems.append(f"{name}: not a default template")
    return problems


def check(docs):
    problems = []
    for release, doc in docs.items():
        if doc.get("release") != release:
            problems.append(f"{release}: release key is {doc.get('release')!r}")
        names = [t["name_label"] for t in doc["templates"]]
        if len(set(names)) != len(names):
            problems.append(f"{release}: duplicate name_label")
        for t in doc["templates"]:
            problems += [f"{release}: {p}" for p in check_template(t)]
    return problems


def dump(doc):
    head = {k: v for k, v in doc.items() if k != "templates"}
    body = ",\n  ".join(json.dumps(t, sort_keys=False) for t in doc["templates"])
    text = json.dumps(head, indent=1)[:-2]
    return text + ',\n "templates": [\n  ' + body + "\n ]\n}\n"


def main(argv):
    if argv[1:] == ["--check"]:
        docs = {
            p.stem.split("_", 1)[1]: json.loads(p.read_text())
            for p in sorted(DATA.glob("templates_*.json"))
        }
        problems = check(docs)
        print(
            "\n".join(problems)
            or f"{len(docs)} releases, {sum(len(d['templates']) for d in docs.values())} "
            f"templates: all valid"
        )
        return 1 if problems else 0
    if len(argv) != 4:
        print(__doc__)
        return 2
    gt, gtj, xen_api = argv[1:]
    constants = xen_api_constants(xen_api, "dundee-lcm")
    for release, (kind, rev, why) in RELEASES.items():
        gitdir = gt if kind == "ocaml" else gtj
        sha = git(gitdir, "rev-parse", rev + "^{commit}").strip()
        if kind == "ocaml":
            temps = ocaml_templates(gitdir, sha, constants)
            repo, path = "xenserver/guest-templates", "create_templates.ml"
        else:
            temps = JsonGenerator(gitdir, sha).templates(release)
            repo, path = "xenserver/guest-templates-json", "json/*.json"
        doc = {
            "release": release,
            "source": {"repo": repo, "rev": rev, "commit": sha, "path": path, "why": why},
            "templates": temps,
        }
        problems = check({release: doc})
        if problems:
            raise SystemExit("\n".join(problems))
        (DATA / f"templates_{release}.json").write_text(dump(doc))
        print(f"{release}: {len(temps)} templates from {repo} {rev}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
