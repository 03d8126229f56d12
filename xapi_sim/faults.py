"""Injected faults: rules that make matching API calls fail or slow down.

Driven by the control API (``sim.fault_add`` / ``sim.fault_list`` / ``sim.fault_clear``,
docs/control-api.md). A rule is a struct:

=================  =====================================================================
``method``         wire name, exact (``VM.start``) or a glob (``VM.*``, ``*.get_record``);
                   matched against the name without ``Async.`` and the name as called,
                   so ``Async.*`` matches only asynchronous calls
``class``          class of the message (``VM``, ``host``; ``sim`` for the control API)
``object``         a ref, uuid or name_label: the call has a reference parameter naming
                   that object (or is ``get_by_uuid``/``get_by_name_label`` of it)
``host``           a host ref, uuid or name_label: the call arrived at that host's
                   endpoint, or names that host, or names a VM resident on it
``code``           the XAPI error to raise (a code of ``errors.ERRORS``, or
                   ``SR_BACKEND_FAILURE_<n>`` as storage backends report them)
``params``         the error's parameters; their number must match the error's declared
                   parameters unless ``allow_param_mismatch`` is true. ``{self}``
                   (the first argument after the session), ``{arg0}``, ``{arg1}``, ...
                   (the arguments after the session), ``{host}`` (the receiving host's
                   ref) and ``{method}`` (the wire name) are replaced
``probability``    0..1, default 1: chance that a matching call is hit
``count``          hits after which the rule stops (0, the default: no limit)
``delay``          seconds to wait before failing -- or, without ``code``, before running
                   the call normally
``seed``           the rule's random seed (default: derived from the world's seed and the
                   rule id, so a seeded world draws the same sequence on every run)
=================  =====================================================================

Every filter given must match (an empty filter matches everything). Rules are tried in the
order they were added; each that matches and fires sleeps its delay, and the first with a
``code`` raises. ``sim.*`` calls, ``session.login_with_password`` and
``session.slave_local_login_with_password`` are hit only by rules whose ``method`` names
them exactly. Rules live in memory (not in ``--state-dir``), like sessions.

The dispatcher applies the rules after the parameter, session and async-mode checks, right
before the operation -- for ``Async.`` calls inside the task, which then fails with the
chosen error, as an RBAC denial does in XAPI.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
import time

from .errors import ERRORS, Failure

MAX_DELAY = 600.0
KEYS = (
    "method",
    "class",
    "object",
    "host",
    "code",
    "params",
    "allow_param_mismatch",
    "probability",
    "count",
    "delay",
    "seed",
)
PROTECTED = {"session.login_with_password", "session.slave_local_login_with_password"}
_BACKEND = re.compile(r"SR_BACKEND_FAILURE_\d+\Z")
_PLACEHOLDER = re.compile(r"\{(self|host|method|arg\d+)\}")
_GLOB = re.compile(r"[*?\[]")


def _bad(field, reason):
    return Failure("INVALID_VALUE", field, reason)


def error_params(code: str):
    """Declared parameter names of an error code, or None if the code is unknown."""
    if code in ERRORS:
        return list(ERRORS[code][0])
    if _BACKEND.match(code):
        return list(ERRORS["SR_BACKEND_FAILURE"][0])
    return None


def _number(spec, key, default, lo, hi, integer=False):
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _bad(key, f"expected a number, got {v!r}")
    try:
        n = int(v, 10) if integer and isinstance(v, str) else (int(v) if integer else float(v))
    except (ValueError, OverflowError):
        raise _bad(key, f"expected a number, got {v!r}") from None
    if integer and isinstance(v, float) and v != int(v):
        raise _bad(key, f"expected an integer, got {v!r}")
    if not (lo <= n <= hi) or n != n:
        raise _bad(key, f"must be between {lo} and {hi}, got {v!r}")
    return n


def _text(spec, key):
    v = spec.get(key, "")
    if not isinstance(v, str):
        raise _bad(key, f"expected a string, got {v!r}")
    return v


class Rule:
    __slots__ = (
        "id",
        "method",
        "cls",
        "obj",
        "host",
        "code",
        "params",
        "probability",
        "count",
        "delay",
        "seed",
        "hits",
        "seen",
        "rng",
        "allow_mismatch",
    )
    # set by parse_rule (annotations only: the slots hold the values)
    id: str
    method: str
    cls: str
    obj: str
    host: str
    code: str
    params: tuple[str, ...]
    probability: float
    count: int
    delay: float
    seed: int | str
    hits: int
    seen: int
    rng: random.Random
    allow_mismatch: bool

    def as_struct(self) -> dict:
        return {
            "id": self.id,
            "method": self.method,
            "class": self.cls,
            "object": self.obj,
            "host": self.host,
            "code": self.code,
            "params": list(self.params),
            "allow_param_mismatch": self.allow_mismatch,
            "probability": float(self.probability),
            "count": self.count,
            "delay": float(self.delay),
            "seed": str(self.seed),
            "hits": self.hits,
            "seen": self.seen,
        }


def parse_rule(world, spec, rule_id: str) -> Rule:
    """Validate a rule struct (INVALID_VALUE [field, reason] on any problem)."""
    if not isinstance(spec, dict):
        raise _bad("rule", f"expected a struct, got {spec!r}")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise _bad("rule", f"unknown key {unknown[0]!r}; known: {', '.join(KEYS)}")
    r = Rule()
    r.id = rule_id
    r.method = _text(spec, "method")
    r.cls = _text(spec, "class")
    r.obj = _text(spec, "object")
    r.host = _text(spec, "host")
    r.code = _text(spec, "code")
    r.allow_mismatch = spec.get("allow_param_mismatch", False)
    if not isinstance(r.allow_mismatch, bool):
        raise _bad("allow_param_mismatch", f"expected a bool, got {r.allow_mismatch!r}")
    params = spec.get("params", [])
    if not isinstance(params, list) or not all(
        isinstance(p, (str, int, float)) and not isinstance(p, bool) for p in params
    ):
        raise _bad("params", f"expected a list of strings, got {params!r}")
    r.params = tuple(str(p) for p in params)
    r.probability = _number(spec, "probability", 1.0, 0.0, 1.0)
    r.count = _number(spec, "count", 0, 0, 2**62, integer=True)
    r.delay = _number(spec, "delay", 0.0, 0.0, MAX_DELAY)
    if r.code:
        names = error_params(r.code)
        if names is None:
            raise _bad("code", f"unknown error code {r.code!r}")
        if len(r.params) != len(names) and not r.allow_mismatch:
            raise _bad(
                "params",
                f"{r.code} takes {len(names)} parameter(s) "
                f"[{', '.join(names)}], got {len(r.params)}; set "
                f"allow_param_mismatch to send them anyway",
            )
    elif r.params:
        raise _bad("params", "parameters need a code")
    elif r.delay <= 0:
        raise _bad("rule", "a rule needs a code, a delay, or both")
    if (
        r.cls
        and r.cls != "sim"
        and not any(r.cls.lower() in p.schema.lower_names for p in world.pools)
    ):
        raise _bad("class", f"unknown class {r.cls!r}")
    if r.host and _find_host(world, r.host) is None:
        raise _bad("host", f"no host with ref, uuid or name_label {r.host!r}")
    seed = spec.get("seed")
    if seed is not None and not isinstance(seed, (int, str)) or isinstance(seed, bool):
        raise _bad("seed", f"expected an integer or a string, got {seed!r}")
    if seed is None:
        base = world.ids.seed
        seed = f"{base}/{rule_id}" if base is not None else f"{world.ids.random()!r}"
    r.seed = seed
    r.rng = random.Random(str(seed))
    r.hits = r.seen = 0
    return r


def _find_host(world, name):
    for h in world.hosts.values():
        if name in (h.ref, h.uuid, h.name_label):
            return h
    return None


def _names(db, cls, ref):
    """The identities of a row: ref, uuid, name_label."""
    row = db.tables.get(cls, {}).get(ref) if isinstance(ref, str) else None
    if row is None:
        return (ref,)
    return (ref, row.get("uuid"), row.get("name_label"))


class Faults:
    """The fault rules of one world."""

    def __init__(self, world):
        self.world = world
        self.rules: dict = {}
        self.lock = threading.Lock()
        self.next_id = 1

    @classmethod
    def of(cls, world) -> Faults:
        return world.service(cls)

    # -- control API -------------------------------------------------------------------
    def add(self, spec) -> str:
        with self.lock:
            rid = f"fault-{self.next_id}"
            rule = parse_rule(self.world, spec, rid)
            self.next_id += 1
            self.rules[rid] = rule
        return rid

    def list(self) -> list:
        with self.lock:
            return [r.as_struct() for r in self.rules.values()]

    def clear(self, rid: str):
        with self.lock:
            if rid == "":
                self.rules.clear()
            elif rid in self.rules:
                del self.rules[rid]
            else:
                raise _bad("id", f"no fault rule {rid!r}")

    # -- matching ----------------------------------------------------------------------
    def _matches(self, rule, call, called, args) -> bool:
        name = call.name
        if rule.method:
            if name in PROTECTED or name.startswith("sim."):
                if rule.method != name:
                    return False
            elif not (
                fnmatch.fnmatchcase(name, rule.method) or fnmatch.fnmatchcase(called, rule.method)
            ):
                return False
        elif name in PROTECTED or name.startswith("sim."):
            return False
        msg = call.message
        cls = msg.cls if msg is not None else name.partition(".")[0]
        if rule.cls and rule.cls.lower() != cls.lower():
            return False
        if rule.obj or rule.host:
            refs = self._refs(call, args)
            if rule.obj and not self._names_object(call, refs, args, rule.obj):
                return False
            if rule.host and not self._concerns_host(call, refs, rule.host):
                return False
        return True

    def _refs(self, call, args):
        """[(class or None, value)] of the reference-like arguments of a call."""
        msg = call.message
        if msg is None:  # sim.*: untyped; any string may name a host or a VM
            return [(None, a) for a in args if isinstance(a, str)]
        params = msg.params[1:] if call.session is not None and msg.takes_session else msg.params
        return [
            (p.type.name, a)
            for p, a in zip(params, args, strict=False)
            if p.type.kind == "ref" and isinstance(a, str)
        ]

    def _names_object(self, call, refs, args, obj):
        for cls, ref in refs:
            if ref == obj:
                return True
            for c in (cls,) if cls else ("host", "VM"):
                db = call.db if cls else self._db_of(c, ref)
                if db is not None and obj in _names(db, c, ref)[1:]:
                    return True
        msg = call.message
        if msg is not None and msg.name in ("get_by_uuid", "get_by_name_label"):
            return bool(args) and args[0] == obj
        return False

    def _db_of(self, cls, ref):
        for p in self.world.pools:
            if p.db.exists(cls, ref):
                return p.db
        return None

    def _concerns_host(self, call, refs, host):
        h = call.host
        if host in (h.ref, h.uuid, h.name_label):
            return True
        target = _find_host(self.world, host)
        if target is None:
            return False
        for cls, ref in refs:
            if ref == target.ref:
                return True
            if cls in ("VM", None):
                db = call.db if cls else self._db_of("VM", ref)
                row = db.tables["VM"].get(ref) if db is not None else None
                if row is not None and row["resident_on"] == target.ref:
                    return True
        return False

    def apply(self, call, called: str, args):
        """Run the rules for one call: sleep the delays of the rules that fire, raise the
        first chosen error. ``called`` is the method name as sent (with ``Async.``)."""
        fire = []
        with self.lock:
            for rule in self.rules.values():
                if rule.count and rule.hits >= rule.count:
                    continue
                if not self._matches(rule, call, called, args):
                    continue
                rule.seen += 1
                if rule.probability < 1.0 and rule.rng.random() >= rule.probability:
                    continue
                rule.hits += 1
                fire.append(rule)
                if rule.code:
                    break
        for rule in fire:
            if rule.delay:
                time.sleep(rule.delay)
            if rule.code:
                raise Failure(rule.code, *self._params(rule, call, args))

    @staticmethod
    def _params(rule, call, args):
        values = {"self": str(args[0]) if args else "", "host": call.host.ref, "method": call.name}
        values.update((f"arg{i}", str(a)) for i, a in enumerate(args))
        return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), p) for p in rule.params]


def wrap(faults: Faults, handler, called: str):
    """``handler`` with the fault rules applied first (inside the task for Async calls)."""

    def faulted(call, *args):
        faults.apply(call, called, args)
        return handler(call, *args)

    return faulted
