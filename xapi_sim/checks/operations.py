"""What the per-class checks share (pure).

* :class:`ErrorTable` -- the ``Hashtbl`` of ``valid_operations`` in
  ``xapi_host_helpers.ml``, ``xapi_pool_helpers.ml``, ``xapi_sr_operations.ml``,
  ``xapi_vbd_helpers.ml``, ``xapi_vif_helpers.ml`` (Dundee): every operation starts with no
  error, ``set_errors`` records an error only for operations that have none yet, so the
  first rule that objects wins; ``assert_operation_valid`` raises the operation's error and
  ``update_allowed_operations`` keeps the operations without one.
* ``power_to_string`` and the ``*_operation_to_string`` tables of Dundee's
  ``ocaml/client_records/record_util.ml``, which xapi uses to build error parameters.
* ``setify``/``intersect``/``set_difference``: stdext ``Listext.List`` (order-preserving;
  ``setify`` keeps the *last* occurrence of a repeated element).
* ``current_ops``: a ``current_operations`` map as xapi's ``(task * op) list``. xapi's
  ``Db.*.add_to_current_operations`` prepends (``db_cache_types.ml`` ``add_to_map``), so the
  newest entry comes first; :func:`added` builds maps the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# A row as the store holds it (read only here); an operation's error ``(code, params)``;
# a ``valid_operations`` table: op -> None or its error.
Row = Mapping[str, Any]
OpError = tuple[str, list[str]]
Table = dict[str, OpError | None]

OTHER_OPERATION_IN_PROGRESS = "OTHER_OPERATION_IN_PROGRESS"

# Record_util.power_to_string
_POWER = {
    "Halted": "halted",
    "Paused": "paused",
    "Running": "running",
    "Suspended": "suspended",
    "ShuttingDown": "shutting down",
    "Migrating": "migrating",
}


def power_to_string(state: str) -> str:
    return _POWER[state]


class ErrorTable:
    """``valid_operations``' table: op -> None or (code, params); first error wins."""

    def __init__(self, ops: Iterable[str]):
        self.table: Table = {op: None for op in ops}

    def set_errors(self, code: str, params: Iterable[object], ops: Iterable[str]) -> None:
        for op in ops:
            if self.table[op] is None:
                self.table[op] = (code, [str(p) for p in params])

    def allowed(self) -> list[str]:
        """``update_allowed_operations``: the operations without an error, in the order
        xapi's ``Hashtbl.fold (fun k v acc -> if v = None then k :: acc else acc)``
        produces (:func:`hashtbl_fold_order`)."""
        return [op for op in hashtbl_fold_order(tuple(self.table)) if self.table[op] is None]


# -- the order of a hash table of polymorphic variants (OCaml 4.02, as Dundee's xapi) ------
#
# The valid_operations tables are ``Hashtbl.create 10`` (16 buckets, seed 0) filled with
# ``Hashtbl.replace`` in the ``all_operations`` order; ``Hashtbl.fold`` walks the buckets
# in index order, each from its most recently added key, and prepending to the
# accumulator reverses that walk. A constant constructor `` `name`` is the immediate
# integer ``Btype.hash_variant "name"``; ``Hashtbl.hash`` of an immediate is the runtime's
# MurmurHash3-style ``caml_hash`` (``byterun/hash.c``: ``caml_hash_mix_intnat``, ``MIX``,
# ``FINAL_MIX``) of its tagged word. For a live enabled host this yields
# ``VM.migrate; provision; VM.resume; evacuate; VM.start``, the order real XenServer
# ``xe host-param-list`` prints.

_M32 = 0xFFFFFFFF


def hash_variant(name: str) -> int:
    """``Btype.hash_variant``: 223-polynomial over the bytes, 31 bits, signed."""
    acc = 0
    for ch in name.encode():
        acc = 223 * acc + ch
    acc &= (1 << 31) - 1
    return acc - (1 << 31) if acc > 0x3FFFFFFF else acc


def _rotl32(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


def caml_hash_int(n: int) -> int:
    """``Hashtbl.hash`` of an OCaml int (64-bit runtime, seed 0)."""
    d = (2 * n + 1) & ((1 << 64) - 1)  # the tagged word
    if d >> 63:
        d -= 1 << 64
    k = ((d >> 32) ^ (d >> 63) ^ d) & _M32
    k = (k * 0xCC9E2D51) & _M32
    k = _rotl32(k, 15)
    k = (k * 0x1B873593) & _M32
    h = _rotl32(0 ^ k, 13)
    h = (h * 5 + 0xE6546B64) & _M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h & 0x3FFFFFFF


def hashtbl_fold_order(ops: Iterable[str], buckets: int = 16) -> list[str]:
    """The keys of a ``Hashtbl.create 10`` filled with ``ops`` (in order), as
    ``Hashtbl.fold`` prepending to a list returns them."""
    table: list[list[str]] = [[] for _ in range(buckets)]
    for op in ops:
        bucket = table[caml_hash_int(hash_variant(op)) & (buckets - 1)]
        if op not in bucket:
            bucket.insert(0, op)
    walk = [op for bucket in table for op in bucket]
    walk.reverse()
    return walk


def unknown_operation(module: str, op_string: str) -> OpError:
    """``throw_error``'s answer for an operation the table does not know."""
    return ("INTERNAL_ERROR", [f"{module}.assert_operation_valid unknown operation: {op_string}"])


def table_error(
    table: Mapping[str, OpError | None], op: str, module: str, strings: Mapping[str, str]
) -> OpError | None:
    """``assert_operation_valid`` from a ``valid_operations`` table: the op's entry, or
    ``throw_error``'s answer for an op the table does not know."""
    if op not in table:
        return unknown_operation(module, strings.get(op, op))
    return table[op]


def allowed_in(table: Mapping[str, OpError | None], all_ops: Iterable[str]) -> list[str]:
    """``update_allowed_operations`` from a ``valid_operations`` table, in xapi's
    hash-table order."""
    return [op for op in hashtbl_fold_order(all_ops) if table[op] is None]


def current_ops(mapping: Mapping[str, str]) -> list[tuple[str, str]]:
    """A ``current_operations`` map as xapi's ``(task, op)`` list, newest first."""
    return list(mapping.items())


def added(mapping: Mapping[str, str], key: str, op: str) -> dict[str, str]:
    """``add_to_current_operations``: the new pair in front (``add_to_map`` prepends)."""
    out = {key: op}
    out.update((k, v) for k, v in mapping.items() if k != key)
    return out


def removed(mapping: Mapping[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in mapping.items() if k != key}


def setify(xs: Iterable[T]) -> list[T]:
    """``Listext.List.setify``: duplicates removed, each kept at its last position."""
    items = list(xs)
    return [x for i, x in enumerate(items) if x not in items[i + 1 :]]


def intersect(xs: Iterable[T], ys: Collection[T]) -> list[T]:
    return [x for x in xs if x in ys]


def set_difference(xs: Iterable[T], ys: Collection[T]) -> list[T]:
    return [x for x in xs if x not in ys]


def ocaml_int_of_string(s: str) -> int:
    """OCaml's ``int_of_string``: optional sign, decimal or ``0x``/``0o``/``0b`` digits,
    ``_`` separators after the first digit; anything else fails (ValueError)."""
    if not isinstance(s, str) or not s:
        raise ValueError(s)
    t = s
    sign = 1
    if t[0] in "+-":
        sign = -1 if t[0] == "-" else 1
        t = t[1:]
    base = 10
    if len(t) > 1 and t[0] == "0" and t[1] in "xXoObBuU":
        base = {"x": 16, "o": 8, "b": 2, "u": 10}[t[1].lower()]
        t = t[2:]
    if not t or t[0] == "_":
        raise ValueError(s)
    digits = "0123456789abcdef"[:base]
    if any(c != "_" and c.lower() not in digits for c in t):
        raise ValueError(s)
    return sign * int(t.replace("_", ""), base)


# Record_util.host_operation_to_string / pool_ / sr_ / vdi_ / vbd_ / vif_operation_to_string
HOST_OPERATION_STRINGS = {
    "provision": "provision",
    "evacuate": "evacuate",
    "shutdown": "shutdown",
    "reboot": "reboot",
    "power_on": "power_on",
    "vm_start": "VM.start",
    "vm_resume": "VM.resume",
    "vm_migrate": "VM.migrate",
}
POOL_OPERATION_STRINGS = {"ha_enable": "ha_enable", "ha_disable": "ha_disable"}
SR_OPERATION_STRINGS = {
    "scan": "scan",
    "destroy": "destroy",
    "forget": "forget",
    "plug": "plug",
    "unplug": "unplug",
    "update": "update",
    "vdi_create": "VDI.create",
    "vdi_introduce": "VDI.introduce",
    "vdi_destroy": "VDI.destroy",
    "vdi_resize": "VDI.resize",
    "vdi_clone": "VDI.clone",
    "vdi_snapshot": "VDI.snapshot",
    "pbd_create": "PBD.create",
    "pbd_destroy": "PBD.destroy",
}
VDI_OPERATION_STRINGS = {
    op: op
    for op in (
        "scan",
        "clone",
        "copy",
        "resize",
        "resize_online",
        "destroy",
        "force_unlock",
        "snapshot",
        "forget",
        "update",
        "generate_config",
        "blocked",
    )
}
VBD_OPERATION_STRINGS = {
    op: op
    for op in ("attach", "eject", "insert", "plug", "unplug", "unplug_force", "pause", "unpause")
}
VIF_OPERATION_STRINGS = {op: op for op in ("attach", "plug", "unplug", "unplug_force")}
