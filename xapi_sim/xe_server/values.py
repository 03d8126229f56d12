"""xe argument values: how the text of a parameter becomes the value an API call takes, and
the enum spellings records show.

Mirrors xen-api Dundee ``cli_operations.ml`` (``bool_of_string``, the ``safe_*`` parsers),
``record_util.ml`` (``bytes_of_string``, ``vm_operation_to_string``/``of_string``,
``on_normal_exit``, ``on_crash_behaviour``...). The OCaml literal syntax underneath
(``bool_of_string``, ``Int64.of_string``, ``float_of_string``) is ``wire/ocaml.py``, shared
with the ``xe`` client.
"""

from __future__ import annotations

import re

from ..datamodel import ENUMS
from ..errors import Failure
from ..wire.ocaml import BadBool, BadInt, bool_of_string, int64_of_string
from .errors import CliFailure


def cli_bool(param, s) -> bool:
    """``Cli_operations.bool_of_string``: true/t/1, false/f/0 (any case)."""
    v = s.lower()
    if v in ("true", "t", "1"):
        return True
    if v in ("false", "f", "0"):
        return False
    raise CliFailure(f"Failed to parse parameter '{param}': expecting 'true' or 'false'")


def safe_i64(fieldname, s) -> int:
    try:
        return int64_of_string(s)
    except BadInt:
        raise CliFailure(f"Failed to parse parameter '{fieldname}': expecting an integer") from None


def safe_bool(fieldname, s) -> bool:
    try:
        return bool_of_string(s)
    except BadBool:
        raise CliFailure(
            f"Failed to parse parameter '{fieldname}': expecting a boolean (true or false)"
        ) from None


_SIZE_SUFFIXES = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def bytes_of_string(fieldname, x) -> int:
    """``Record_util.bytes_of_string``: an integer with an optional KiB/MiB/GiB/TiB suffix."""
    bad = f"Failed to parse field '{fieldname}': expecting an integer (possibly with suffix)"

    def i64(s):
        try:
            return int64_of_string(s)
        except BadInt:
            if s == "":
                raise CliFailure(bad) from None
            if s.isdigit():
                raise CliFailure(
                    f"Failed to parse field '{fieldname}': number too big (maximum = 8388607 TiB)"
                ) from None
            raise CliFailure(bad) from None

    suffixes = [w for w in re.split(r"[\s0-9]+", x) if w]
    if not suffixes:
        return i64(x)
    if len(suffixes) == 1:
        numbers = [w for w in re.split(r"[^0-9]+", x) if w]
        if len(numbers) != 1:
            raise CliFailure(bad)
        mult = _SIZE_SUFFIXES.get(suffixes[0])
        if mult is None:
            raise CliFailure(
                f"Failed to parse field '{fieldname}': Unknown suffix: "
                f"'{suffixes[0]}' (try KiB, MiB, GiB or TiB)"
            )
        return i64(numbers[0]) * mult
    raise CliFailure(bad)


# -- enums (record_util.ml) ------------------------------------------------------------------

_VM_OPS = {"assert_operation_valid": "assertoperationvalid", "data_source_op": "data_sources_op"}


def vm_op_str(op) -> str:
    """``Record_util.vm_operation_to_string``."""
    return _VM_OPS.get(op, op)


def vm_op_of_string(s):
    """``Record_util.string_to_vm_operation``: INVALID_VALUE for anything else."""
    for k, v in _VM_OPS.items():
        if v == s:
            return k
    if s in ENUMS.get("vm_operations", ()) and s not in _VM_OPS:
        return s
    raise Failure("INVALID_VALUE", "blocked_operation", s)


def host_op_str(op) -> str:
    """``Record_util.host_operation_to_string``."""
    return {"vm_start": "VM.start", "vm_resume": "VM.resume", "vm_migrate": "VM.migrate"}.get(
        op, op
    )


def on_normal_exit_str(x) -> str:
    return {"destroy": "Destroy", "restart": "Restart"}.get(x, x)


def on_normal_exit_of_string(s):
    v = s.lower()
    if v in ("destroy", "restart"):
        return v
    raise CliFailure(f"Expected 'destroy' or 'restart', got {s}")


_CRASH = {
    "destroy": "Destroy",
    "coredump_and_destroy": "Core dump and destroy",
    "restart": "Restart",
    "coredump_and_restart": "Core dump and restart",
    "preserve": "Preserve",
    "rename_restart": "Rename restart",
}


def on_crash_str(x) -> str:
    return _CRASH.get(x, x)


def on_crash_of_string(s):
    v = s.lower()
    if v in _CRASH:
        return v
    raise CliFailure(
        "Expected 'destroy', 'coredump_and_destroy','restart', "
        "'coredump_and_restart', 'preserve' or 'rename_restart', got " + s
    )


def tristate_str(x) -> str:
    return {"yes": "true", "no": "false"}.get(x, x)
