"""The ``xe`` command table: records as the CLI shows them, and the command implementations.

Mirrors xen-api Dundee (XenServer 7.0, branch ``dundee-lcm``):

* ``records.ml`` -- the CLI record of each class: field names (``name-label``,
  ``cpu_info``, ``last-boot-CPU-flags``...), their order, how each value is rendered, which
  API call sets it, which fields are hidden or expensive;
* ``cli_operations.ml`` -- the generated ``<class>-list/-param-list/-param-get/-param-set/
  -param-add/-param-remove/-param-clear`` commands, record filters, VM and host selectors,
  and the hand-written commands (``vm-start``, ``host-cpu-info``, ``pool-join``...);
* ``cli_frontend.ml`` -- each command's required and optional parameters and help text.

Every operation is an XAPI call made through ``Dispatcher.dispatch`` with the CLI's session
(``Context.call``), so behaviour lives in one place. Only the ref -> uuid/name index used
to print references reads the database directly, as XAPI's ``Ref_index`` does.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field as dc_field
from typing import Callable

from . import cli_render as R
from .wire import cliproto
from .errors import Failure

NULL_REF = "OpaqueRef:NULL"
FUSE_TIME = 10.0   # Xapi_globs.fuse_time: the delay printed by pool-join / pool-eject


# -- CLI-side exceptions (xapi_cli.ml exception_handler) ------------------------------------

class CliError(Exception):
    pass


class ParseError(CliError):
    """``Cli_frontend.ParseError``: ``Syntax error: <text>``."""


class ParamNotFound(CliError):
    """``Cli_frontend.ParamNotFound``: ``Required parameter not found: <p>``."""


class UnknownCommand(CliError):
    """``Xapi_cli.Unknown_command``: ``Unknown command: <name>``."""


class CliFailure(CliError):
    """``Cli_util.Cli_failure`` and ``Record_util.Record_failure``: ``Error: <text>``."""


class MissingParameter(CliError):
    """``Records.CLI_failed_to_find_param``: ``Missing parameter [name]`` (client-rendered)."""


class OcamlFailure(CliError):
    """An OCaml ``Failure`` outside cli_operations: INTERNAL_ERROR ``Failure: <text>``."""


class InternalExn(CliError):
    """Any other OCaml exception: INTERNAL_ERROR [<exception text>] (e.g. ``Not_found``)."""


class UnixError(CliError):
    """``Unix.Unix_error``: INTERNAL_ERROR ``Unix_error: <message>``."""


class MultipleFailure(CliError):
    """``Cli_operations.Multiple_failure``: ``operation failed on <uuid>: <msg>`` lines."""

    def __init__(self, errs):
        super().__init__(errs)
        self.errs = errs


class ExitWithError(CliError):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class _BadBool(Exception):
    """OCaml ``bool_of_string`` raising ``Invalid_argument``."""


class _BadInt(Exception):
    """OCaml ``Int64.of_string`` raising ``Failure "int_of_string"``."""


class _BadFloat(Exception):
    """OCaml ``float_of_string`` raising ``Failure "float_of_string"``."""


# -- context ---------------------------------------------------------------------------------

class Context:
    """One CLI command: where it arrived, its session, parameters, printer and connection."""

    def __init__(self, dispatcher, host, session, params, printer, conn=None):
        self.dispatcher = dispatcher
        self.host = host
        self.session = session
        self.params = params          # [(key, value)] in command-line order
        self.printer = printer
        self.conn = conn

    # API calls ---------------------------------------------------------------------------
    def call(self, method, *args):
        return self.dispatcher.dispatch(self.host, method, [self.session, *args])

    def call_or(self, fallback: Callable, method, *args):
        """An auxiliary call (a record field's value) whose message this simulator may not
        implement: on NOT_IMPLEMENTED -- or the INTERNAL_ERROR the generic getters give for
        custom ``get_*`` messages -- the value is computed by ``fallback`` instead."""
        try:
            return self.call(method, *args)
        except Failure as f:
            if f.code in ("NOT_IMPLEMENTED", "MESSAGE_METHOD_UNKNOWN", "INTERNAL_ERROR"):
                return fallback()
            raise

    # parameters --------------------------------------------------------------------------
    def has(self, key) -> bool:
        return any(k == key for k, _ in self.params)

    def get(self, key, default=None):
        for k, v in self.params:
            if k == key:
                return v
        return default

    def bool_param(self, key, default=False) -> bool:
        if not self.has(key):
            return default
        return cli_bool(key, self.get(key))

    # references --------------------------------------------------------------------------
    def lookup(self, ref):
        """(uuid, name_label or None) of any object of the pool database, or None."""
        if not isinstance(ref, str) or not ref.startswith("OpaqueRef:") or ref == NULL_REF:
            return None
        pool = self.host.pool
        if pool is None:
            return None
        db = pool.db
        for cls, table in db.tables.items():
            row = table.get(ref)
            if row is not None:
                name = row.get("name_label") if "name_label" in db.schema.classes[cls].fields \
                    else None
                return row.get("uuid", ""), name
        return None

    def uuid_of(self, ref) -> str:
        return R.ref_uuid(self.lookup, ref)

    # protocol ----------------------------------------------------------------------------
    def send(self, cmd):
        self.conn.send(cmd)

    def receive(self):
        return self.conn.receive()


# -- conversions (record_util.ml, cli_operations.ml, records.ml) ---------------------------

def cli_bool(param, s) -> bool:
    """``Cli_operations.bool_of_string``: true/t/1, false/f/0 (any case)."""
    v = s.lower()
    if v in ("true", "t", "1"):
        return True
    if v in ("false", "f", "0"):
        return False
    raise CliFailure(f"Failed to parse parameter '{param}': expecting 'true' or 'false'")


def ocaml_bool(s) -> bool:
    """OCaml ``bool_of_string``: exactly "true" or "false"."""
    if s == "true":
        return True
    if s == "false":
        return False
    raise _BadBool()


_INT_RE = re.compile(r"^[-+]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)$")


def ocaml_int(s) -> int:
    """``Int64.of_string``: decimal, or 0x/0o/0b prefixed; underscores allowed."""
    if not _INT_RE.match(s):
        raise _BadInt()
    t = s.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    base = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}.get(t[:2], 10)
    v = sign * int(t[2:] if base != 10 else t, base)
    if not -(1 << 63) <= v < (1 << 63):
        raise _BadInt()
    return v


def ocaml_float_of_string(s) -> float:
    try:
        return float(s.replace("_", ""))
    except ValueError:
        raise _BadFloat() from None


def safe_i64(fieldname, s) -> int:
    try:
        return ocaml_int(s)
    except _BadInt:
        raise CliFailure(f"Failed to parse parameter '{fieldname}': expecting an integer") \
            from None


def safe_bool(fieldname, s) -> bool:
    try:
        return ocaml_bool(s)
    except _BadBool:
        raise CliFailure(f"Failed to parse parameter '{fieldname}': expecting a boolean "
                         "(true or false)") from None


def bytes_of_string(fieldname, x) -> int:
    """``Record_util.bytes_of_string``: an integer with an optional KiB/MiB/GiB/TiB suffix."""
    bad = f"Failed to parse field '{fieldname}': expecting an integer (possibly with suffix)"

    def i64(s):
        try:
            return ocaml_int(s)
        except _BadInt:
            if s == "":
                raise CliFailure(bad) from None
            if s.isdigit():
                raise CliFailure(f"Failed to parse field '{fieldname}': number too big "
                                 "(maximum = 8388607 TiB)") from None
            raise CliFailure(bad) from None

    suffixes = [w for w in re.split(r"[\s0-9]+", x) if w]
    if not suffixes:
        return i64(x)
    if len(suffixes) == 1:
        numbers = [w for w in re.split(r"[^0-9]+", x) if w]
        if len(numbers) != 1:
            raise CliFailure(bad)
        mult = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
                "TiB": 1 << 40}.get(suffixes[0])
        if mult is None:
            raise CliFailure(f"Failed to parse field '{fieldname}': Unknown suffix: "
                             f"'{suffixes[0]}' (try KiB, MiB, GiB or TiB)")
        return i64(numbers[0]) * mult
    raise CliFailure(bad)


_VM_OPS = {"assert_operation_valid": "assertoperationvalid",
           "data_source_op": "data_sources_op"}


def vm_op_str(op) -> str:
    """``Record_util.vm_operation_to_string``."""
    return _VM_OPS.get(op, op)


def vm_op_of_string(s):
    for k, v in _VM_OPS.items():
        if v == s:
            return k
    from .datamodel import ENUMS
    if s in ENUMS.get("vm_operations", ()) and s not in _VM_OPS:
        return s
    raise Failure("INVALID_VALUE", "blocked_operation", s)


def host_op_str(op) -> str:
    return {"vm_start": "VM.start", "vm_resume": "VM.resume",
            "vm_migrate": "VM.migrate"}.get(op, op)


def on_normal_exit_str(x) -> str:
    return {"destroy": "Destroy", "restart": "Restart"}.get(x, x)


def on_normal_exit_of_string(s):
    v = s.lower()
    if v in ("destroy", "restart"):
        return v
    raise CliFailure(f"Expected 'destroy' or 'restart', got {s}")


_CRASH = {"destroy": "Destroy", "coredump_and_destroy": "Core dump and destroy",
          "restart": "Restart", "coredump_and_restart": "Core dump and restart",
          "preserve": "Preserve", "rename_restart": "Rename restart"}


def on_crash_str(x) -> str:
    return _CRASH.get(x, x)


def on_crash_of_string(s):
    v = s.lower()
    if v in _CRASH:
        return v
    raise CliFailure("Expected 'destroy', 'coredump_and_destroy','restart', "
                     "'coredump_and_restart', 'preserve' or 'rename_restart', got " + s)


def tristate_str(x) -> str:
    return {"yes": "true", "no": "false"}.get(x, x)


# -- records ---------------------------------------------------------------------------------

@dataclass
class Field:
    """``Records.field``: how one CLI field is read, written and shown."""

    name: str
    get: Callable[[], str]
    set: Callable | None = None
    get_set: Callable | None = None
    add_to_set: Callable | None = None
    remove_from_set: Callable | None = None
    get_map: Callable | None = None
    add_to_map: Callable | None = None
    remove_from_map: Callable | None = None
    set_in_map: Callable | None = None
    expensive: bool = False
    hidden: bool = False
    deprecated: bool = False
    case_insensitive: bool = False

    def key(self) -> str:
        """``Cli_operations.print_field``'s key."""
        if self.get_set is not None:
            return R.field_key(self.name, "set", self.add_to_set is not None, self.deprecated)
        if self.get_map is not None:
            return R.field_key(self.name, "map", self.add_to_map is not None, self.deprecated)
        return R.field_key(self.name, "", self.set is not None, self.deprecated)

    def value(self) -> str:
        """``safe_get_field``: HANDLE_INVALID shows as ``<invalid reference>``."""
        try:
            return self.get()
        except Failure as f:
            if f.code == "HANDLE_INVALID":
                return "<invalid reference>"
            raise

    def printed(self):
        return self.key(), self.value()


class Record:
    """``Records.record``: a lazily fetched object and its CLI fields."""

    def __init__(self, ctx, cls, ref, row=None):
        self.ctx = ctx
        self.cls = cls
        self.ref = ref
        self._row = row
        self.fields: list = []

    def row(self):
        if self._row is None:
            self._row = self.ctx.call(f"{self.cls}.get_record", self.ref)
        return self._row

    def field(self, name) -> Field:
        found = [f for f in self.fields if f.name == name]
        if len(found) != 1:
            raise MissingParameter(name)
        return found[0]

    def uuid(self) -> str:
        return self.field("uuid").value()


class _Builder:
    """Shorthands for the field definitions of one record."""

    def __init__(self, rec: Record):
        self.rec = rec
        self.ctx = rec.ctx
        self.cls = rec.cls

    def x(self):
        return self.rec.row()

    def add(self, name, get, **kw):
        self.rec.fields.append(Field(name, get, **kw))

    # value readers
    def s(self, f, default=""):
        return lambda: str(self.x().get(f, default))

    def i(self, f):
        return lambda: R.int_str(self.x().get(f, 0))

    def b(self, f):
        return lambda: R.bool_str(self.x().get(f, False))

    def fl(self, f):
        return lambda: R.float_str(self.x().get(f, 0.0))

    def m(self, f):
        return lambda: R.map_str(self.x().get(f, {}))

    def mget(self, f):
        return lambda: list(self.x().get(f, {}).items())

    def r(self, f):
        return lambda: self.ctx.uuid_of(self.x().get(f, NULL_REF))

    def rs(self, f, sep="; "):
        return lambda: sep.join(self.ctx.uuid_of(r) for r in self.x().get(f, []))

    def blobs(self, f):
        return lambda: R.map_str({k: self.ctx.uuid_of(v) for k, v in self.x().get(f, {}).items()})

    def strs(self, f, sep="; "):
        return lambda: sep.join(str(v) for v in self.x().get(f, []))

    # writers
    def setter(self, msg, conv=lambda v: v):
        ref = self.rec.ref
        return lambda v: self.ctx.call(f"{self.cls}.{msg}", ref, conv(v))

    def map_ops(self, f):
        ref = self.rec.ref
        return dict(add_to_map=lambda k, v: self.ctx.call(f"{self.cls}.add_to_{f}", ref, k, v),
                    remove_from_map=lambda k: self.ctx.call(
                        f"{self.cls}.remove_from_{f}", ref, k),
                    get_map=self.mget(f))

    def tags(self):
        ref = self.rec.ref
        return dict(get_set=lambda: list(self.x().get("tags", [])),
                    add_to_set=lambda t: self.ctx.call(f"{self.cls}.add_tags", ref, t),
                    remove_from_set=lambda t: self.ctx.call(f"{self.cls}.remove_tags", ref, t))

    def ref_setter(self, msg, target_cls):
        ref = self.rec.ref

        def set_(v):
            target = NULL_REF if v == "" else self.ctx.call(f"{target_cls}.get_by_uuid", v)
            self.ctx.call(f"{self.cls}.{msg}", ref, target)
        return set_


def _maybe(fn, default):
    """``default nid (may f (xm ()))``."""
    def get():
        v = fn()
        return default if v is None else v
    return get


def _linked_record(ctx, cls, ref_of):
    """A lazily fetched, cached record of a linked object (``xm ()`` / ``xgm ()`` in
    records.ml), or None if it cannot be read (records.ml: "with _ -> None")."""
    cache = []

    def get():
        if not cache:
            try:
                cache.append(ctx.call(f"{cls}.get_record", ref_of()))
            except Exception:   # noqa: BLE001
                cache.append(None)
        return cache[0]
    return get


def vm_record(ctx, ref, row=None) -> Record:
    rec = Record(ctx, "VM", ref, row)
    B = _Builder(rec)
    x = B.x
    metrics = _linked_record(ctx, "VM_metrics", lambda: x()["metrics"])
    guest = _linked_record(ctx, "VM_guest_metrics", lambda: x()["guest_metrics"])

    def mf(f, render, default=R.NID):
        return _maybe(lambda: None if metrics() is None else render(metrics().get(f)), default)

    def gf(f, render, default=R.NID):
        return _maybe(lambda: None if guest() is None else render(guest().get(f)), default)

    def gmap(f):
        return lambda: [] if guest() is None else list((guest().get(f) or {}).items())

    def query(ds):
        return ctx.call("VM.query_data_source", ref, ds)

    def memory_target():
        try:
            try:
                return R.int_str(int(query("memory_target")))
            except Failure as f:
                if f.code == "VM_BAD_POWER_STATE":
                    return "0"
                raise
        except Exception:   # noqa: BLE001
            return "<unknown>"

    def vcpus_utilisation():
        m = metrics()
        n = int(m.get("VCPUs_number", 0)) if m else 0
        return [(str(i), R.float_str(query(f"cpu{i}"))) for i in range(n)]

    def vcpus_util_text():
        try:
            return "; ".join(f"{a}: {b}" for a, b in vcpus_utilisation())
        except Exception:   # noqa: BLE001
            return ""

    def vcpus_util_map():
        try:
            return vcpus_utilisation()
        except Exception:   # noqa: BLE001
            return []

    def devices(msg):
        try:
            return list(ctx.call(f"VM.{msg}", ref))
        except Exception:   # noqa: BLE001
            return []

    def cooperative():
        try:
            return R.bool_str(ctx.call("VM.get_cooperative", ref))
        except Exception:   # noqa: BLE001
            return "true"

    def vcpus_params_add(k, v):
        if k not in ("weight", "cap", "mask"):
            raise CliFailure(f"Failed to add parameter '{k}': expecting 'weight','cap' or "
                             "'mask'")
        ctx.call("VM.add_to_VCPUs_params", ref, k, v)

    def blocked_ops():
        return [(vm_op_str(k), v) for k, v in x().get("blocked_operations", {}).items()]

    def current_ops():
        return [vm_op_str(v) for v in x().get("current_operations", {}).values()]

    def allowed_ops():
        return [vm_op_str(v) for v in x().get("allowed_operations", [])]

    def affinity_set(v):
        target = NULL_REF if v == "" else ctx.call("host.get_by_uuid", v)
        ctx.call("VM.set_affinity", ref, target)

    def appliance_set(v):
        target = NULL_REF if v == "" else ctx.call("VM_appliance.get_by_uuid", v)
        ctx.call("VM.set_appliance", ref, target)

    def bool_plain_set(msg):
        return lambda v: ctx.call(f"VM.{msg}", ref, ocaml_bool(v))

    add = B.add
    add("uuid", B.s("uuid"))
    add("name-label", B.s("name_label"), set=B.setter("set_name_label"))
    add("name-description", B.s("name_description"), set=B.setter("set_name_description"))
    add("user-version", B.i("user_version"),
        set=B.setter("set_user_version", lambda v: safe_i64("user-version", v)))
    add("is-a-template", B.b("is_a_template"),
        set=B.setter("set_is_a_template", lambda v: safe_bool("is-a-template", v)))
    add("is-a-snapshot", B.b("is_a_snapshot"))
    add("snapshot-of", B.r("snapshot_of"))
    add("snapshots", B.rs("snapshots"))
    add("snapshot-time", B.s("snapshot_time"))
    add("transportable-snapshot-id", B.s("transportable_snapshot_id"), hidden=True)
    add("snapshot-info", B.m("snapshot_info"))
    add("parent", B.r("parent"))
    add("children", B.rs("children"))
    add("is-control-domain", B.b("is_control_domain"))
    add("power-state", lambda: R.power_state(x()["power_state"]))
    add("memory-actual", mf("memory_actual", R.int_str))
    add("memory-target", memory_target, expensive=True)
    add("memory-overhead", B.i("memory_overhead"))
    for cli, f in (("memory-static-max", "memory_static_max"),
                   ("memory-dynamic-max", "memory_dynamic_max"),
                   ("memory-dynamic-min", "memory_dynamic_min"),
                   ("memory-static-min", "memory_static_min")):
        add(cli, B.i(f), set=B.setter(f"set_{f}", lambda v, c=cli: bytes_of_string(c, v)))
    add("suspend-VDI-uuid", B.r("suspend_VDI"), set=B.ref_setter("set_suspend_VDI", "VDI"))
    add("suspend-SR-uuid", B.r("suspend_SR"), set=B.ref_setter("set_suspend_SR", "SR"))
    add("VCPUs-params", B.m("VCPUs_params"), add_to_map=vcpus_params_add,
        remove_from_map=lambda k: ctx.call("VM.remove_from_VCPUs_params", ref, k),
        get_map=B.mget("VCPUs_params"))
    add("VCPUs-max", B.i("VCPUs_max"),
        set=B.setter("set_VCPUs_max", lambda v: safe_i64("VCPUs-max", v)))
    add("VCPUs-at-startup", B.i("VCPUs_at_startup"),
        set=B.setter("set_VCPUs_at_startup", lambda v: safe_i64("VCPUs-at-startup", v)))
    add("actions-after-shutdown", lambda: on_normal_exit_str(x()["actions_after_shutdown"]),
        set=B.setter("set_actions_after_shutdown", on_normal_exit_of_string))
    add("actions-after-reboot", lambda: on_normal_exit_str(x()["actions_after_reboot"]),
        set=B.setter("set_actions_after_reboot", on_normal_exit_of_string))
    add("actions-after-crash", lambda: on_crash_str(x()["actions_after_crash"]),
        set=B.setter("set_actions_after_crash", on_crash_of_string))
    add("console-uuids", B.rs("consoles"),
        get_set=lambda: [ctx.uuid_of(c) for c in x().get("consoles", [])])
    add("platform", B.m("platform"), **B.map_ops("platform"))
    add("allowed-operations", lambda: "; ".join(allowed_ops()), get_set=allowed_ops)
    add("current-operations", lambda: "; ".join(current_ops()), get_set=current_ops)
    add("blocked-operations", lambda: R.map_str(blocked_ops()),
        add_to_map=lambda k, v: ctx.call("VM.add_to_blocked_operations", ref,
                                         vm_op_of_string(k), v),
        remove_from_map=lambda k: ctx.call("VM.remove_from_blocked_operations", ref,
                                           vm_op_of_string(k)),
        get_map=blocked_ops)
    add("allowed-VBD-devices", lambda: "; ".join(devices("get_allowed_VBD_devices")),
        expensive=True, get_set=lambda: devices("get_allowed_VBD_devices"))
    add("allowed-VIF-devices", lambda: "; ".join(devices("get_allowed_VIF_devices")),
        expensive=True, get_set=lambda: devices("get_allowed_VIF_devices"))
    add("possible-hosts", lambda: "; ".join(
        ctx.uuid_of(h) for h in ctx.call("VM.get_possible_hosts", ref)), expensive=True)
    add("HVM-boot-policy", B.s("HVM_boot_policy"), set=B.setter("set_HVM_boot_policy"))
    add("HVM-boot-params", B.m("HVM_boot_params"), **B.map_ops("HVM_boot_params"))
    add("HVM-shadow-multiplier", B.fl("HVM_shadow_multiplier"),
        set=B.setter("set_HVM_shadow_multiplier", ocaml_float_of_string))
    for cli, f in (("PV-kernel", "PV_kernel"), ("PV-ramdisk", "PV_ramdisk"),
                   ("PV-args", "PV_args"), ("PV-legacy-args", "PV_legacy_args"),
                   ("PV-bootloader", "PV_bootloader"),
                   ("PV-bootloader-args", "PV_bootloader_args")):
        add(cli, B.s(f), set=B.setter(f"set_{f}"))
    add("last-boot-CPU-flags", B.m("last_boot_CPU_flags"))
    add("last-boot-record", lambda: "'" + str(x().get("last_booted_record", "")) + "'",
        expensive=True)
    add("resident-on", B.r("resident_on"))
    add("affinity", B.r("affinity"), set=affinity_set)
    add("other-config", B.m("other_config"), **B.map_ops("other_config"))
    add("dom-id", B.i("domid"))
    add("recommendations", B.s("recommendations"))
    add("xenstore-data", B.m("xenstore_data"), **B.map_ops("xenstore_data"))
    add("ha-always-run", B.b("ha_always_run"), set=bool_plain_set("set_ha_always_run"),
        deprecated=True)
    add("ha-restart-priority", B.s("ha_restart_priority"),
        set=B.setter("set_ha_restart_priority"))
    add("blobs", B.blobs("blobs"))
    add("start-time", mf("start_time", str, R.UNKNOWN_TIME))
    add("install-time", mf("install_time", str, R.UNKNOWN_TIME))
    add("VCPUs-number", mf("VCPUs_number", R.int_str))
    add("VCPUs-utilisation", vcpus_util_text, get_map=vcpus_util_map, expensive=True)
    add("os-version", gf("os_version", lambda v: R.map_str(v or {})), get_map=gmap("os_version"))
    add("PV-drivers-version", gf("PV_drivers_version", lambda v: R.map_str(v or {})),
        get_map=gmap("PV_drivers_version"))
    add("PV-drivers-up-to-date", gf("PV_drivers_up_to_date", R.bool_str))
    add("memory", gf("memory", lambda v: R.map_str(v or {})), get_map=gmap("memory"))
    add("disks", gf("disks", lambda v: R.map_str(v or {})), get_map=gmap("disks"))
    add("networks", gf("networks", lambda v: R.map_str(v or {})), get_map=gmap("networks"))
    add("PV-drivers-detected", gf("PV_drivers_detected", R.bool_str))
    add("other", gf("other", lambda v: R.map_str(v or {})), get_map=gmap("other"))
    add("live", gf("live", R.bool_str))
    add("guest-metrics-last-updated", gf("last_updated", str))
    add("can-use-hotplug-vbd", gf("can_use_hotplug_vbd", tristate_str))
    add("can-use-hotplug-vif", gf("can_use_hotplug_vif", tristate_str))
    add("cooperative", cooperative, expensive=True, deprecated=True)
    add("tags", B.strs("tags", ", "), **B.tags())
    add("appliance", B.r("appliance"), set=appliance_set)
    for cli, f in (("start-delay", "start_delay"), ("shutdown-delay", "shutdown_delay"),
                   ("order", "order")):
        add(cli, B.i(f), set=B.setter(f"set_{f}", lambda v, c=cli: safe_i64(c, v)))
    add("version", B.i("version"))
    add("generation-id", B.s("generation_id"))
    add("hardware-platform-version", B.i("hardware_platform_version"))
    add("has-vendor-device", B.b("has_vendor_device"),
        set=B.setter("set_has_vendor_device", lambda v: safe_bool("has-vendor-device", v)))
    return rec


def host_record(ctx, ref, row=None) -> Record:
    rec = Record(ctx, "host", ref, row)
    B = _Builder(rec)
    x = B.x
    metrics = _linked_record(ctx, "host_metrics", lambda: x()["metrics"])

    def mf(f, render):
        return _maybe(lambda: None if metrics() is None else render(metrics().get(f, 0)), R.NID)

    def ops(values):
        return [host_op_str(v) for v in values]

    def patches():
        out = []
        for hp in x().get("patches", []):
            pp = ctx.call("host_patch.get_pool_patch", hp)
            out.append(ctx.call("pool_patch.get_uuid", pp))
        return out

    def free_computed():
        def fallback():
            return ctx.call("host_metrics.get_record", x()["metrics"]).get("memory_free", 0)
        return R.int_str(ctx.call_or(fallback, "host.compute_free_memory", ref))

    add = B.add
    add("uuid", B.s("uuid"))
    add("name-label", B.s("name_label"), set=B.setter("set_name_label"))
    add("name-description", B.s("name_description"), set=B.setter("set_name_description"))
    add("allowed-operations", lambda: "; ".join(ops(x()["allowed_operations"])),
        get_set=lambda: ops(x()["allowed_operations"]))
    add("current-operations", lambda: "; ".join(ops(x()["current_operations"].values())),
        get_set=lambda: ops(x()["current_operations"].values()))
    add("enabled", B.b("enabled"))
    add("display", B.s("display", "enabled"))
    add("API-version-major", B.i("API_version_major"))
    add("API-version-minor", B.i("API_version_minor"))
    add("API-version-vendor", B.s("API_version_vendor"))
    add("API-version-vendor-implementation", B.m("API_version_vendor_implementation"),
        get_map=B.mget("API_version_vendor_implementation"))
    add("logging", B.m("logging"), **B.map_ops("logging"))
    add("suspend-image-sr-uuid", B.r("suspend_image_sr"),
        set=B.ref_setter("set_suspend_image_sr", "SR"))
    add("crash-dump-sr-uuid", B.r("crash_dump_sr"), set=B.ref_setter("set_crash_dump_sr", "SR"))
    add("software-version", B.m("software_version"), get_map=B.mget("software_version"))
    add("capabilities", B.strs("capabilities"), get_set=lambda: list(x()["capabilities"]))
    add("other-config", B.m("other_config"), **B.map_ops("other_config"))
    add("cpu_info", B.m("cpu_info"), get_map=B.mget("cpu_info"))
    add("chipset-info", B.m("chipset_info"), get_map=B.mget("chipset_info"))
    add("hostname", B.s("hostname"))
    add("address", B.s("address"))
    add("supported-bootloaders", B.strs("supported_bootloaders"),
        get_set=lambda: list(x()["supported_bootloaders"]))
    add("blobs", B.blobs("blobs"))
    add("memory-overhead", B.i("memory_overhead"))
    add("memory-total", mf("memory_total", R.int_str))
    # host_metrics.memory_free left the API record in tampa; show the computed value then
    add("memory-free", lambda: (R.int_str(metrics()["memory_free"])
                                if metrics() and "memory_free" in metrics()
                                else free_computed()))
    add("memory-free-computed", free_computed, expensive=True)
    add("host-metrics-live", mf("live", R.bool_str))
    add("patches", lambda: ", ".join(patches()), get_set=patches)
    add("ha-statefiles", B.rs("ha_statefiles"))
    add("ha-network-peers", B.rs("ha_network_peers"))
    add("external-auth-type", B.s("external_auth_type"))
    add("external-auth-service-name", B.s("external_auth_service_name"))
    add("external-auth-configuration", B.m("external_auth_configuration"),
        get_map=B.mget("external_auth_configuration"))
    add("edition", B.s("edition"))
    add("license-server", B.m("license_server"), get_map=B.mget("license_server"))
    add("power-on-mode", B.s("power_on_mode"))
    add("power-on-config", B.m("power_on_config"), get_map=B.mget("power_on_config"))
    add("local-cache-sr", B.r("local_cache_sr"))
    add("tags", B.strs("tags", ", "), **B.tags())
    add("ssl-legacy", B.b("ssl_legacy"),
        set=B.setter("set_ssl_legacy", lambda v: safe_bool("ssl-legacy", v)))
    add("guest_VCPUs_params", B.m("guest_VCPUs_params"), **B.map_ops("guest_VCPUs_params"))
    add("virtual-hardware-platform-versions", B.strs("virtual_hardware_platform_versions"),
        get_set=lambda: [str(v) for v in x().get("virtual_hardware_platform_versions", [])])
    return rec


def pool_record(ctx, ref, row=None) -> Record:
    rec = Record(ctx, "pool", ref, row)
    B = _Builder(rec)
    x = B.x

    def license_state():
        def fallback():
            # Xapi_pool.get_license_state: the lowest edition, the earliest expiry
            hosts = ctx.call("host.get_all_records")
            editions = sorted({h["edition"] for h in hosts.values()})
            expiries = sorted(h["license_params"]["expiry"] for h in hosts.values()
                              if "expiry" in h["license_params"])
            return {"edition": editions[0] if editions else "",
                    "expiry": expiries[0] if expiries else "never"}
        return R.map_str(ctx.call_or(fallback, "pool.get_license_state", ref))

    def sr_types():
        def fallback():
            return sorted({row["type"] for row in ctx.call("SM.get_all_records").values()})
        return "; ".join(ctx.call_or(fallback, "SR.get_supported_types"))

    def int_set(msg):
        def set_(v):
            try:
                n = ocaml_int(v)
            except _BadInt:
                raise OcamlFailure("int_of_string") from None
            ctx.call(f"pool.{msg}", ref, n)
        return set_

    add = B.add
    add("uuid", B.s("uuid"))
    add("name-label", B.s("name_label"), set=B.setter("set_name_label"))
    add("name-description", B.s("name_description"), set=B.setter("set_name_description"))
    add("master", B.r("master"))
    add("default-SR", B.r("default_SR"), set=B.ref_setter("set_default_SR", "SR"))
    add("crash-dump-SR", B.r("crash_dump_SR"), set=B.ref_setter("set_crash_dump_SR", "SR"))
    add("suspend-image-SR", B.r("suspend_image_SR"),
        set=B.ref_setter("set_suspend_image_SR", "SR"))
    add("supported-sr-types", sr_types, expensive=True)
    add("other-config", B.m("other_config"), **B.map_ops("other_config"))
    add("allowed-operations", B.strs("allowed_operations"),
        get_set=lambda: list(x()["allowed_operations"]))
    add("current-operations", lambda: "; ".join(x()["current_operations"].values()),
        get_set=lambda: list(x()["current_operations"].values()))
    add("ha-enabled", B.b("ha_enabled"))
    add("ha-configuration", B.m("ha_configuration"))
    add("ha-statefiles", B.rs("ha_statefiles"))
    add("ha-host-failures-to-tolerate", B.i("ha_host_failures_to_tolerate"),
        set=int_set("set_ha_host_failures_to_tolerate"))
    add("ha-plan-exists-for", B.i("ha_plan_exists_for"))
    add("ha-allow-overcommit", B.b("ha_allow_overcommit"),
        set=B.setter("set_ha_allow_overcommit", ocaml_bool))
    add("ha-overcommitted", B.b("ha_overcommitted"))
    add("blobs", B.blobs("blobs"))
    add("wlb-url", B.s("wlb_url"))
    add("wlb-username", B.s("wlb_username"))
    add("wlb-enabled", B.b("wlb_enabled"), set=B.setter("set_wlb_enabled", ocaml_bool))
    add("wlb-verify-cert", B.b("wlb_verify_cert"),
        set=B.setter("set_wlb_verify_cert", ocaml_bool))
    add("gui-config", B.m("gui_config"), **B.map_ops("gui_config"))
    add("health-check-config", B.m("health_check_config"), **B.map_ops("health_check_config"))
    add("vswitch-controller", lambda: x().get("vswitch_controller") or "<not set>", hidden=True)
    add("restrictions", B.m("restrictions"))
    add("tags", B.strs("tags", ", "), **B.tags())
    add("license-state", license_state)
    add("ha-cluster-stack", B.s("ha_cluster_stack"))
    add("guest-agent-config", B.m("guest_agent_config"), **B.map_ops("guest_agent_config"))
    add("cpu_info", B.m("cpu_info"), get_map=B.mget("cpu_info"))
    add("policy-no-vendor-device", B.b("policy_no_vendor_device"),
        set=B.setter("set_policy_no_vendor_device",
                     lambda v: safe_bool("policy-no-vendor-device", v)))
    return rec


def message_record(ctx, ref, row=None) -> Record:
    rec = Record(ctx, "message", ref, row)
    B = _Builder(rec)
    B.add("uuid", B.s("uuid"))
    B.add("name", B.s("name"))
    B.add("priority", B.i("priority"))
    B.add("class", B.s("cls"))
    B.add("obj-uuid", B.s("obj_uuid"))
    B.add("timestamp", B.s("timestamp"))
    B.add("body", B.s("body"))
    return rec


def host_cpu_record(ctx, ref, row=None) -> Record:
    rec = Record(ctx, "host_cpu", ref, row)
    B = _Builder(rec)
    x = B.x

    def utilisation():
        try:
            return R.float_str(ctx.call("host.query_data_source", x()["host"],
                                        f"cpu{x()['number']}"))
        except Exception:   # noqa: BLE001
            return "<unknown>"

    B.add("uuid", B.s("uuid"))
    B.add("host-uuid", B.r("host"))
    B.add("number", B.i("number"))
    B.add("vendor", B.s("vendor"))
    B.add("speed", B.i("speed"))
    B.add("model", B.i("model"))
    B.add("family", B.i("family"))
    B.add("modelname", B.s("modelname"))
    B.add("stepping", B.s("stepping"))
    B.add("flags", B.s("flags"))
    B.add("utilisation", utilisation, expensive=True)
    return rec


RECORDS = {"VM": vm_record, "host": host_record, "pool": pool_record,
           "message": message_record, "host_cpu": host_cpu_record}


def make_record(ctx, cls, ref, row=None) -> Record:
    return RECORDS[cls](ctx, ref, row)


# -- filters (cli_operations.ml) -------------------------------------------------------------

STDPARAMS = ["server", "password", "port", "username", "minimal", "force", "multiple", "all",
             "message-priority", "trace"]


def _field_type(fieldname, fields):
    """``get_field_type``: ("normal", name) | ("set", name) | ("map", name)."""
    if any(f.name == fieldname for f in fields):
        return "normal", fieldname
    if ":" in fieldname:
        real = fieldname[:fieldname.index(":")]
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
        cands = sorted((f for f in fields if getattr(f, attr) is not None),
                       key=lambda f: -len(f.name))
        for f in cands:
            if fieldname.startswith(f.name + "-"):
                return kind, f.name
    raise CliFailure(f"Unknown field '{fieldname}'")


def filter_records(records, k, v):
    """``filter_records_on_fields``: keep the records whose field ``k`` renders as ``v``."""
    if not records:
        return []
    kind, s = _field_type(k, records[0].fields)
    out = []
    if kind == "normal":
        for r in records:
            f = r.field(k)
            val = f.value()
            if (val.lower() == v.lower()) if f.case_insensitive else (val == v):
                out.append(r)
        return out
    sub = k[len(s) + 1:]
    if kind == "set" and sub != "contains":
        raise CliFailure("Invalid syntax for set filtering (should be set-param:contains=key)")
    for r in records:
        f = r.field(s)
        try:
            if kind == "set":
                members = f.get_set()
                if f.case_insensitive:
                    members, vv = [m.lower() for m in members], v.lower()
                else:
                    vv = v
                if vv in members:
                    out.append(r)
            else:
                m = dict(f.get_map())
                kk, vv = sub, v
                if f.case_insensitive:
                    m = {a.lower(): b.lower() for a, b in m.items()}
                    kk, vv = kk.lower(), vv.lower()
                if kk in m and m[kk] == vv:
                    out.append(r)
        except Exception:   # noqa: BLE001 -- "with _ -> false"
            pass
    return out


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


def _stem(p):
    return p.split(":", 1)[0]


# -- command specs ---------------------------------------------------------------------------

@dataclass
class Cmd:
    reqd: list
    optn: list
    help: str
    impl: Callable
    flags: list = dc_field(default_factory=list)
    with_fd: bool = False


VM_SELECTORS_INFO = (
    " The simplest way to select the VM on which the operation is to be performed is by "
    "supplying the argument 'vm=<name or uuid>'. VMs can also be specified by filtering the "
    "full list of VMs on the values of fields. For example, specifying 'power-state=halted' "
    "will select all VMs whose power-state field is equal to 'halted'. Where multiple VMs are "
    "matching, the option '--multiple' must be specified to perform the operation. The full "
    "list of fields that can be matched can be obtained by the command 'xe vm-list "
    "params=all'. If no parameters to select VMs are given, the operation will be performed "
    "on all VMs.")
HOST_SELECTORS_INFO = (
    " The simplest way to select the host on which the operation is to be performed is by "
    "supplying the argument 'host=<name or uuid>'. Hosts can also be specified by filtering "
    "the full list of hosts on the values of fields. For example, specifying 'enabled=true' "
    "will select all hosts whose 'enabled' field is equal to 'true'. Where multiple hosts are "
    "matching, and the operation can be performed on multiple hosts, the option '--multiple' "
    "must be specified to perform the operation. The full list of fields that can be matched "
    "can be obtained by the command 'xe host-list params=all'. If no parameters to select "
    "hosts are given, the operation will be performed on all hosts.")


# -- generated commands (make_param_funs) ----------------------------------------------------

class ClassCommands:
    """``make_param_funs``: the generic commands of one CLI class."""

    def __init__(self, name, cls, def_filters, def_list_params, plural=None):
        self.name = name                    # CLI name: "vm", "host", "template"...
        self.cls = cls                      # datamodel class
        self.def_filters = def_filters
        self.def_list_params = def_list_params
        self.plural = plural or name + "s"

    def records_all(self, ctx):
        allrecs = ctx.call(f"{self.cls}.get_all_records_where", "true")
        return [make_record(ctx, self.cls, r, row) for r, row in allrecs.items()]

    def record_by_uuid(self, ctx, uuid):
        ref = ctx.call(f"{self.cls}.get_by_uuid", uuid)
        return make_record(ctx, self.cls, ref)

    def list(self, ctx):
        with_specified_database(ctx)
        all_recs = self.records_all(ctx)
        filters = [(p, v) for p, v in ctx.params
                   if p not in ["params"] + STDPARAMS and not p.startswith("database:")]
        records = all_recs
        for k, v in list(self.def_filters) + filters:
            records = filter_records(records, k, v)
        print_all = ctx.bool_param("all")
        chosen = select_fields(ctx, all_recs if print_all else records, self.def_list_params)
        table = []
        for fields in chosen:
            row = []
            for f in fields:
                if f.hidden:
                    continue
                if f.expensive:
                    row.append((f.key(), R.EXPENSIVE))
                else:
                    row.append(f.printed())
            table.append(row)
        ctx.printer.table(table)

    def param_list(self, ctx):
        with_specified_database(ctx)
        rec = self.record_by_uuid(ctx, ctx.get("uuid"))
        ctx.printer.table([[f.printed() for f in rec.fields if not f.hidden]])

    def param_get(self, ctx):
        with_specified_database(ctx)
        rec = self.record_by_uuid(ctx, ctx.get("uuid"))
        f = rec.field(ctx.get("param-name"))
        if ctx.has("param-key") and f.get_map is not None:
            key = ctx.get("param-key")
            try:
                m = dict(f.get_map())
            except Exception:   # noqa: BLE001
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
            kind, s = _field_type(k, rec.fields)
            if kind == "map":
                f = rec.field(s)
                key = k[len(s) + 1:]
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
                        raise CliFailure(f"Field '{k}' is a map or set. use the "
                                         "'name:key=value' syntax.")
                    raise CliFailure(f"Field '{k}' is read-only.")
                try:
                    f.set(v)
                except _BadInt:
                    raise CliFailure(f"Parameter {k} must be an integer") from None
                except _BadFloat:
                    raise CliFailure(f"Parameter {k} must be a floating-point number") from None
                except _BadBool:
                    raise CliFailure(f"Parameter {k} must be a boolean (true or false)") \
                        from None
                except OcamlFailure as e:
                    if str(e) == "int_of_string":
                        raise CliFailure(f"Parameter {k} must be an integer") from None
                    raise

    def param_add(self, ctx):
        rec = self.record_by_uuid(ctx, ctx.get("uuid"))
        f = rec.field(ctx.get("param-name"))
        extra = [(p, v) for p, v in ctx.params
                 if p not in ["uuid", "param-name", "param-key"] + STDPARAMS]
        if f.add_to_set is not None:
            if not ctx.has("param-key"):
                raise CliFailure("When adding a key to a set, use the syntax: *-param-add "
                                 "param-name=<name> param-key=<key>")
            f.add_to_set(ctx.get("param-key"))
        elif f.add_to_map is not None:
            for k, v in extra:
                f.add_to_map(k, v)
        elif f.get_set is not None or f.get_map is not None:
            raise CliFailure("Parameter is read-only")
        else:
            raise CliFailure("Can only add to parameters of type Set or Map")

    def param_remove(self, ctx):
        rec = self.record_by_uuid(ctx, ctx.get("uuid"))
        f = rec.field(ctx.get("param-name"))
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
        rec = self.record_by_uuid(ctx, ctx.get("uuid"))
        f = rec.field(ctx.get("param-name"))
        if f.get_set is not None and f.remove_from_set is not None:
            for m in list(f.get_set()):
                f.remove_from_set(m)
        elif f.get_map is not None and f.remove_from_map is not None:
            for k, _ in list(f.get_map()):
                f.remove_from_map(k)
        elif f.set is not None:
            try:
                f.set("")
            except Exception:   # noqa: BLE001
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
        clearable = [f.name for f in proto
                     if f.set is not None or f.get_set is not None or f.get_map is not None]
        sm = [f.name + ":contains" for f in proto if f.get_set is not None]
        n = self.name
        std = n in ("vm", "network", "sr")
        out = {
            f"{n}-list": Cmd([], ["params", "database:"] + all_optn + sm,
                             f"Lists all the {self.plural}, filtering on the optional "
                             "arguments. To filter on map parameters, use the syntax "
                             "'map-param:key=value'", self.list, ["Standard"] if std else []),
            f"{n}-param-list": Cmd(["uuid"], ["database:"], "Lists all the parameters of the "
                                   "object specified by the uuid.", self.param_list),
            f"{n}-param-get": Cmd(["uuid", "param-name"], ["param-key", "database:"],
                                  "Gets the parameter specified of the object. If the "
                                  "parameter is a map of key=value pairs, use "
                                  "'param-key=<key>' to get the value associated with a "
                                  "particular key.", self.param_get),
        }
        if settable:
            out[f"{n}-param-set"] = Cmd(
                ["uuid"], settable, "Sets the parameter specified. If param-value is not "
                "given, the parameter is set to a null value. To set a (key,value) pair in a "
                "map parameter, use the syntax 'map-param:key=value'.", self.param_set)
        if addable:
            out[f"{n}-param-add"] = Cmd(
                ["uuid", "param-name"], ["param-key"], "Adds to a set or map parameter. If "
                "the parameter is a set, use param-key=<key to add>. If the parameter is a "
                "map, pass the values to add as 'key=value' pairs.", self.param_add)
            out[f"{n}-param-remove"] = Cmd(
                ["uuid", "param-name", "param-key"], [], "Removes a member or a key,value "
                "pair from a set/map respectively.", self.param_remove)
        if clearable:
            out[f"{n}-param-clear"] = Cmd(
                ["uuid", "param-name"], [], "Clears the specified parameter (param-name can "
                "be " + ",".join(clearable) + ").", self.param_clear)
        return out


def with_specified_database(ctx):
    """``with_specified_database``: ``database:vdi-uuid=`` / ``database:filename=`` open
    another database; this simulator has no database VDIs, so the calls fail as XAPI's would
    for an unknown VDI."""
    db_params = {k[len("database:"):]: v for k, v in ctx.params
                 if k.startswith("database:") and len(k) > len("database:")}
    if "vdi-uuid" in db_params and "filename" in db_params:
        raise CliFailure("xapi can query a DB vdi or a DB file, but not both.")
    if "vdi-uuid" in db_params:
        vdi = ctx.call("VDI.get_by_uuid", db_params["vdi-uuid"])
        ctx.call("VDI.open_database", vdi)
    elif "filename" in db_params:
        ctx.call("session.create_from_db_file", db_params["filename"])


# -- selectors -------------------------------------------------------------------------------

def _select(ctx, cls, record, key, params, ignore):
    """``Cli_operations.select_vms``/``select_hosts``: ``key=<uuid>`` names one object; a
    value that is not a uuid, or no ``key``, filters every record by the parameters."""
    def do_filter(ps):
        allrecs = ctx.call(f"{cls}.get_all_records_where", "true")
        records = [record(ctx, r, row) for r, row in allrecs.items()]
        for k, v in ps:
            if _stem(k) in STDPARAMS + ignore:
                continue
            records = filter_records(records, k, v)
        return records

    if ctx.has(key):
        try:
            return [record(ctx, ctx.call(f"{cls}.get_by_uuid", ctx.get(key)))]
        except Exception:   # noqa: BLE001 -- "with _ -> do_filter"
            return do_filter([("name-label", v) if k == key else (k, v) for k, v in params])
    return do_filter(params)


def select_vms(ctx, ignore, include_control=False, include_template=False):
    params = list(ctx.params)
    if not include_control:
        params = [("is-control-domain", "false")] + params
    if not include_template:
        params = [("is-a-template", "false")] + params
    return _select(ctx, "VM", vm_record, "vm", params, ignore)


def select_hosts(ctx, ignore):
    return _select(ctx, "host", host_record, "host", list(ctx.params), ignore)


def get_host_by_name_or_id(ctx, name) -> Record:
    allrecs = ctx.call("host.get_all_records_where", "true")
    for r, row in allrecs.items():
        rec = host_record(ctx, r, row)
        if rec.field("name-label").value() == name or rec.field("uuid").value() == name:
            return rec
    raise CliFailure(f"Host {name} not found")


def _error_text(ctx, exn) -> str:
    """What ``do_multiple`` records for one failed object."""
    if isinstance(exn, Failure):
        lines = R.server_error_lines(exn.code, exn.params, _errors(), ctx.lookup)
        if lines is None:
            return string_of_exn(exn)
        return lines[0] + "\n" + "\n".join(lines[1:])
    return string_of_exn(exn)


def printexc(exn) -> str:
    """OCaml ``Printexc.to_string`` of the exception an error stands for."""
    if isinstance(exn, Failure):
        return f"Server_error({exn.code}, [ {'; '.join(exn.params)} ])"
    if isinstance(exn, CliFailure):
        return f'Cli_util.Cli_failure("{exn.args[0]}")'
    if isinstance(exn, OcamlFailure):
        return f'Failure("{exn.args[0]}")'
    if isinstance(exn, InternalExn):
        return exn.args[0]
    return f"{type(exn).__name__}: {exn}"


def string_of_exn(exn) -> str:
    """``ExnHelper.string_of_exn``: ``CODE: [ p1; p2 ]`` of ``error_of_exn``."""
    if isinstance(exn, Failure):
        code, params = exn.code, exn.params
    else:
        code, params = "INTERNAL_ERROR", [printexc(exn)]
    return f"{code}: [ {'; '.join(params)} ]"


def _errors():
    from .errors import ERRORS
    return ERRORS


def do_multiple(ctx, op, records):
    fails, results = [], []
    for rec in records:
        try:
            results.append(op(rec))
        except Exception as e:   # noqa: BLE001
            fails.insert(0, (rec.field("uuid").value(), _error_text(ctx, e)))
    if fails:
        raise MultipleFailure(fails)
    return results


def _format_message(msg) -> str:
    return (f"Message: time={msg['timestamp']} priority={int(msg['priority'])} "
            f"name='{msg['name']}'")


def wrap_op(ctx, op):
    """Run ``op`` on a VM, then print the VM's new messages more urgent than
    ``message-priority`` (default 5) on stderr."""
    try:
        pri = int(ctx.get("message-priority", "5"))
    except ValueError:
        pri = 5

    def wrapped(rec):
        now = time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime())
        result = op(rec)
        try:
            msgs = ctx.call("message.get", "VM", rec.field("uuid").value(), now)
        except Exception:   # noqa: BLE001 -- "with _ -> []"
            msgs = {}
        for m in msgs.values():
            if int(m["priority"]) < pri:
                ctx.printer.stderr(_format_message(m) + "\n")
        return result
    return wrapped


def do_vm_op(ctx, op, ignore, include_control=False, include_template=False, multiple=True):
    op = wrap_op(ctx, op)
    try:
        vms = select_vms(ctx, ignore, include_control, include_template)
        if not vms:
            raise CliFailure("No matching VMs found")
        if len(vms) == 1:
            return [op(vms[0])]
        if multiple and ctx.bool_param("multiple"):
            return do_multiple(ctx, op, vms)
        raise CliFailure("Multiple matches VMs found. Operation can only be performed on one "
                         "VM at a time" if not multiple else
                         "Multiple matches VMs found. --multiple required to complete the "
                         "operation")
    except MissingParameter as e:
        raise CliFailure(f"Parameter '{e.args[0]}' is not a field of the VM class. Failed to "
                         "select VM for operation.") from None


def do_host_op(ctx, op, ignore, multiple=True):
    hosts = select_hosts(ctx, ignore)
    if not hosts:
        raise CliFailure("No matching hosts found")
    if len(hosts) == 1:
        return [op(1, hosts[0])]
    if multiple and ctx.bool_param("multiple"):
        return do_multiple(ctx, lambda h: op(len(hosts), h), hosts)
    raise CliFailure("Multiple matching hosts found. Operation can only be performed on one "
                     "host at a time" if not multiple else
                     "Multiple matching hosts found. --multiple required to complete the "
                     "operation")


# -- tasks -----------------------------------------------------------------------------------

def wait_for_task(ctx, task, on_update=None):
    """``Cli_util.track`` + ``result_from_task``: wait until the task leaves ``pending``
    (calling ``on_update(progress)`` whenever its progress changes, and once at the end),
    then raise its error (or TASK_CANCELLED)."""
    delay = 0.002
    last = 0.0
    while True:
        rec = ctx.call("task.get_record", task)
        status = rec["status"]
        if on_update is not None and (rec["progress"] != last or status != "pending"):
            last = rec["progress"]
            on_update(float(last))
        if status != "pending":
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    if status in ("cancelling", "cancelled"):
        raise Failure("TASK_CANCELLED", task)
    if status == "failure":
        info = ctx.call("task.get_error_info", task)
        if info:
            raise Failure(info[0], *info[1:])
        raise OcamlFailure(f"Task failed but no error recorded: {task}")


def _bar(progress: float) -> str:
    pct = int(progress * 100)
    return "\r %3d%% %s %s" % (pct, "|/-\\"[pct % 4], "#" * int(progress * 70))


def waiter(ctx, task):
    """``Cli_operations.waiter``: wait (with a progress bar on stderr when ``progress`` is
    given), then destroy the task."""
    try:
        if ctx.has("progress"):
            wait_for_task(ctx, task, lambda p: ctx.printer.stderr(_bar(p)))
            ctx.printer.stderr("\n")
        else:
            wait_for_task(ctx, task)
    finally:
        try:
            ctx.call("task.destroy", task)
        except Failure:
            pass


# -- VM commands -----------------------------------------------------------------------------

def _assert_exception_text(ctx, e) -> str:
    """``print_assert_exception``."""
    if isinstance(e, Failure):
        p = e.params

        def arg(n):
            return p[n - 1] if len(p) >= n else "<server did not provide reference>"
        simple = {"HOST_DISABLED": "Host disabled (use 'xe host-enable' to re-enable)",
                  "HOST_NOT_LIVE": "Host down",
                  "HOST_NOT_ENOUGH_FREE_MEMORY": "Not enough free memory",
                  "VM_HVM_REQUIRED": "HVM not supported"}
        if e.code in simple:
            return simple[e.code]
        if e.code == "HOST_NOT_ENOUGH_PCPUS" and len(p) == 2:
            return f"Not enough CPUs (VM needs {p[0]}, but host has {p[1]})"
        if e.code == "VM_REQUIRES_SR":
            return "VM requires access to SR: " + R.ref_convert(ctx.lookup, arg(2))
        if e.code == "VM_REQUIRES_NET":
            return "VM requires access to network: " + R.ref_convert(ctx.lookup, arg(2))
        if e.code == "HOST_CANNOT_ATTACH_NETWORK":
            return "Host cannot attach to network: " + R.ref_convert(ctx.lookup, arg(2))
        if e.code == "INVALID_VALUE" and len(p) == 2:
            return f"Field has invalid value: {p[0]} = {p[1]}"
    return printexc(e)


def _hook_no_hosts_available(ctx, vm_ref, f):
    try:
        return f()
    except Failure as e:
        if e.code == "NO_HOSTS_AVAILABLE":
            ctx.printer.lines(["There are no suitable hosts to start this VM on.",
                               "The following table provides per-host reasons for why the VM "
                               "could not be started:", ""])
            table = []
            for h in ctx.call("host.get_all"):
                name = ctx.call("host.get_name_label", h)
                try:
                    ctx.call("VM.assert_can_boot_here", vm_ref, h)
                    table.append((name, "OK"))
                except Exception as ex:   # noqa: BLE001
                    table.append((name, f"Cannot start here [{_assert_exception_text(ctx, ex)}]"))
            ctx.printer.table([table])
        raise


def vm_start(ctx):
    force = ctx.bool_param("force")
    paused = ctx.bool_param("paused")

    def op(rec):
        vm = rec.ref
        if ctx.has("on"):
            host = get_host_by_name_or_id(ctx, ctx.get("on"))
            task = ctx.call("Async.VM.start_on", vm, host.ref, paused, force)
        else:
            task = ctx.call("Async.VM.start", vm, paused, force)
        return _hook_no_hosts_available(ctx, vm, lambda: waiter(ctx, task))
    do_vm_op(ctx, op, ["on", "paused", "progress"])


def vm_suspend(ctx):
    do_vm_op(ctx, lambda rec: waiter(ctx, ctx.call("Async.VM.suspend", rec.ref)), ["progress"])


def vm_resume(ctx):
    force = ctx.bool_param("force")

    def op(rec):
        if ctx.has("on"):
            host = get_host_by_name_or_id(ctx, ctx.get("on"))
            return waiter(ctx, ctx.call("Async.VM.resume_on", rec.ref, host.ref, False, force))
        return _hook_no_hosts_available(
            ctx, rec.ref,
            lambda: waiter(ctx, ctx.call("Async.VM.resume", rec.ref, False, force)))
    do_vm_op(ctx, op, ["on", "progress"])


def vm_shutdown(ctx):
    msg = "Async.VM.hard_shutdown" if ctx.bool_param("force") else "Async.VM.clean_shutdown"
    do_vm_op(ctx, lambda rec: waiter(ctx, ctx.call(msg, rec.ref)), ["progress"])


def vm_reboot(ctx):
    msg = "VM.hard_reboot" if ctx.bool_param("force") else "VM.clean_reboot"
    do_vm_op(ctx, lambda rec: ctx.call(msg, rec.ref), [])


SXM_PARAMS = ["remote-master", "remote-username", "vif", "remote-password", "remote-network",
              "vdi"]


def vm_migrate(ctx):
    ctx.params = [("host", v) if k in ("host-uuid", "host-name") else (k, v)
                  for k, v in ctx.params]
    options = {}
    for k in ("force", "live", "copy"):
        v = ctx.get(k, "false")
        options[k] = R.bool_str(cli_bool(k, v))
    if ctx.has("remote-master") and ctx.has("remote-username") and ctx.has("remote-password"):
        return _vm_migrate_sxm(ctx, options)
    if not ctx.has("host"):
        raise CliFailure("No destination host specified")
    host = get_host_by_name_or_id(ctx, ctx.get("host")).ref
    do_vm_op(ctx, lambda rec: ctx.call("VM.pool_migrate", rec.ref, host, options),
             ["host", "host-uuid", "host-name", "live"], include_control=True)


def _vm_migrate_sxm(ctx, options):
    """Cross-pool (storage) migration: log in to the remote master, ask the destination host
    to receive, then ``VM.migrate_send``. The remote pool is reached through the simulated
    network (the world's host at that address)."""
    ctx.printer.msg("Performing a Storage XenMotion migration. Your VM's VDIs will be "
                    "migrated with the VM.")
    ip = ctx.get("remote-master")
    remote_host = ctx.host.world.host_by_address(ip)
    if remote_host is None or remote_host.state != "up":
        raise UnixError("Connection refused")
    remote = Context(ctx.dispatcher, remote_host, None, ctx.params, ctx.printer, ctx.conn)
    remote.session = remote.dispatcher.dispatch(
        remote_host, "session.login_with_password",
        [ctx.get("remote-username"), ctx.get("remote-password"), "1.3", "xapi/2.5"])
    try:
        hosts = remote.call("host.get_all_records")
        if ctx.has("host"):
            want = ctx.get("host")
            found = [(r, h) for r, h in hosts.items()
                     if want in (h["hostname"], h["name_label"], h["uuid"])]
            if not found:
                raise CliFailure(f"Failed to find host: {want}")
            host, host_rec = found[0]
        else:
            host, host_rec = next(iter(hosts.items()))
        nets = remote.call("network.get_all_records")
        if ctx.has("remote-network"):
            want = ctx.get("remote-network")
            found = [(r, n) for r, n in nets.items()
                     if want in (n["bridge"], n["name_label"], n["uuid"])]
            if not found:
                raise CliFailure(f"Failed to find network: {want}")
            network, net_rec = found[0]
        else:
            mgmt = [p for p in host_rec["PIFs"] if remote.call("PIF.get_management", p)]
            if not mgmt:
                raise CliFailure(f"Could not find management PIF on host {host_rec['uuid']}")
            network = remote.call("PIF.get_network", mgmt[0])
            net_rec = remote.call("network.get_record", network)
        vif_map = {ctx.call("VIF.get_by_uuid", k[len("vif:"):]):
                   remote.call("network.get_by_uuid", v)
                   for k, v in ctx.params if k.startswith("vif:") and len(k) > 4}
        vdi_map = {ctx.call("VDI.get_by_uuid", k[len("vdi:"):]):
                   remote.call("SR.get_by_uuid", v)
                   for k, v in ctx.params if k.startswith("vdi:") and len(k) > 4}
        try:
            pools = remote.call("pool.get_all")
            ctx.printer.msg("Selecting remote pool's default SR for migrating VDIs")
            default_sr = remote.call("pool.get_default_SR", pools[0])
        except Exception:   # noqa: BLE001
            default_sr = None
        ignore = ["host", "host-uuid", "host-name", "live", "force", "copy"] + SXM_PARAMS
        if default_sr is not None:
            vms = select_vms(ctx, ignore, include_template=True)
            if not vms:
                raise CliFailure("No matching VMs found")
            for vbd in ctx.call("VM.get_VBDs", vms[0].ref):
                if not ctx.call("VBD.get_empty", vbd):
                    vdi = ctx.call("VBD.get_VDI", vbd)
                    vdi_map.setdefault(vdi, default_sr)
        ctx.params = [(k, v) for k, v in ctx.params
                      if len(k) < 5 or k[:4] not in ("vif:", "vdi:")]
        ctx.printer.msg(f"Will migrate to remote host: {host_rec['name_label']}, using remote "
                        f"network: {net_rec['name_label']}. Here is the VDI mapping:")
        for vdi, sr in vdi_map.items():
            ctx.printer.msg(f"VDI {ctx.call('VDI.get_uuid', vdi)} -> SR "
                            f"{remote.call('SR.get_uuid', sr)}")
        token = remote.call("host.migrate_receive", host, network, options)
        new_vm = do_vm_op(ctx, lambda rec: ctx.call("VM.migrate_send", rec.ref, token, True,
                                                    vdi_map, vif_map, options),
                          ignore, include_template=True)[0]
        if cli_bool("copy", ctx.get("copy", "false")):
            ctx.printer.lines([remote.call("VM.get_uuid", new_vm)])
    finally:
        try:
            remote.call("session.logout")
        except Failure:
            pass


# -- host commands ---------------------------------------------------------------------------

def host_disable(ctx):
    do_host_op(ctx, lambda n, h: ctx.call("host.disable", h.ref), [])


def host_enable(ctx):
    def op(n, h):
        ctx.call("host.remove_from_other_config", h.ref, "MAINTENANCE_MODE")
        ctx.call("host.enable", h.ref)
    do_host_op(ctx, op, [])


def host_shutdown(ctx):
    do_host_op(ctx, lambda n, h: ctx.call("host.shutdown", h.ref), [])


def host_reboot(ctx):
    do_host_op(ctx, lambda n, h: ctx.call("host.reboot", h.ref), [])


def host_evacuate(ctx):
    network = NULL_REF
    if ctx.has("network-uuid"):
        network = ctx.call("network.get_by_uuid", ctx.get("network-uuid"))
    batch = 0
    if ctx.has("batch-size"):
        try:
            batch = ocaml_int(ctx.get("batch-size"))
        except _BadInt:
            raise OcamlFailure("int_of_string") from None
    do_host_op(ctx, lambda n, h: ctx.call("host.evacuate", h.ref, network, batch),
               ["network-uuid", "batch-size"], multiple=False)


def host_get_vms_which_prevent_evacuation(ctx):
    host = ctx.call("host.get_by_uuid", ctx.get("uuid"))
    vms = ctx.call("host.get_vms_which_prevent_evacuation", host)
    for vm, error in vms.items():
        reason = ",".join(error)
        rec = vm_record(ctx, vm)
        rec.fields.append(Field("reason", lambda r=reason: r))
        selected = select_fields(ctx, [rec], ["uuid", "name-label", "reason"])[0]
        ctx.printer.table([[f.printed() for f in selected]])


def _host_of(ctx):
    if ctx.has("uuid"):
        return ctx.call("host.get_by_uuid", ctx.get("uuid"))
    return ctx.call("session.get_this_host", ctx.session)


def host_cpu_info(ctx):
    info = ctx.call("host.get_cpu_info", _host_of(ctx))
    ctx.printer.table([list(info.items())])


def host_get_cpu_features(ctx):
    info = ctx.call("host.get_cpu_info", _host_of(ctx))
    if "features" not in info:
        raise InternalExn("Not_found")
    ctx.printer.msg(info["features"])


# -- pool commands ---------------------------------------------------------------------------

def pool_join(ctx):
    args = (ctx.get("master-address"), ctx.get("master-username"), ctx.get("master-password"))
    try:
        if ctx.bool_param("force"):
            ctx.call("pool.join_force", *args)
        else:
            ctx.call("pool.join", *args)
        ctx.printer.lines(["Host agent will restart and attempt to join pool in "
                           f"{R.ocaml_float(FUSE_TIME)} seconds..."])
    except Failure as f:
        if f.code != "JOINING_HOST_CONNECTION_FAILED":
            raise
        ctx.printer.lines(["Host cannot contact destination host: connection refused.",
                           "Check destination host has services running and accessible from "
                           "this host."])


def _user_says_yes(ctx) -> bool:
    ctx.send(cliproto.Print("Type 'yes' to continue"))
    ctx.send(cliproto.Prompt())
    m = ctx.receive()
    if not isinstance(m, cliproto.Chunk):
        raise OcamlFailure("Protocol error")
    data = ctx.conn.read_raw(m.length)
    if not isinstance(ctx.receive(), cliproto.End):
        raise OcamlFailure("Protocol error")
    response = data.decode(cliproto.ENCODING, cliproto.ERRORS)
    ok = response.strip(" \t\n\r").lower() == "yes"
    if not ok:
        ctx.send(cliproto.Print(f"Aborted (you typed: '{response}')"))
    return ok


def pool_eject(ctx):
    host = ctx.call("host.get_by_uuid", ctx.get("host-uuid"))
    force = ctx.bool_param("force")

    def go():
        ctx.call("pool.eject", host)
        ctx.printer.lines(["Specified host will attempt to restart as a master of a new pool "
                           f"in {R.ocaml_float(FUSE_TIME)} seconds..."])
    if force:
        return go()
    warnings = []
    try:
        srs = []
        for pbd in ctx.call("host.get_PBDs", host):
            try:
                sr = ctx.call("PBD.get_SR", pbd)
                others = [ctx.call("PBD.get_host", p) for p in ctx.call("SR.get_PBDs", sr)]
                if not [o for o in others if o != host]:
                    srs.append(sr)
            except Exception:   # noqa: BLE001
                pass
        for sr in srs:
            try:
                for vdi in ctx.call("SR.get_VDIs", sr):
                    try:
                        warnings.insert(0, f"VDI: {ctx.call('VDI.get_uuid', vdi)} "
                                           f"({ctx.call('VDI.get_name_label', vdi)})")
                    except Exception:   # noqa: BLE001
                        pass
            except Exception:   # noqa: BLE001
                pass
    except Exception:   # noqa: BLE001
        warnings = []
    ctx.send(cliproto.Print("WARNING: Ejecting a host from the pool will reinitialise that "
                            "host's local SRs."))
    ctx.send(cliproto.Print("WARNING: Any data contained with the local SRs will be lost."))
    if warnings:
        ctx.send(cliproto.Print("The following VDI objects will be destroyed:"))
        for w in warnings:
            ctx.send(cliproto.Print(w))
    if _user_says_yes(ctx):
        go()


# -- events ----------------------------------------------------------------------------------

# event-wait classes with a CLI record here (XAPI also knows vdi, sr, network, vif, pif, vbd,
# pbd, task, subject, role and secret)
EVENT_CLASSES = {"vm": "VM", "host": "host", "pool": "pool"}


class _Finished(Exception):
    pass


def event_wait(ctx):
    classname = ctx.get("class")
    filters = []
    for k, v in ctx.params:
        if k in ["class"] + STDPARAMS:
            continue
        if v.startswith("/="):
            filters.append((False, k, v[2:]))
        else:
            filters.append((True, k, v))

    def matches(rec: Record) -> bool:
        names = {f.name: f for f in rec.fields}
        for eq, k, v in filters:
            if k not in names:
                raise CliFailure(f"key missing: {k}")
            val = names[k].value()
            if (v == val) != eq:
                return False
        return True

    cls = EVENT_CLASSES.get(classname)
    if cls is None:
        raise CliFailure(f"Cli listening for class '{classname}' not currently implemented")
    classes = [classname]
    ctx.call("event.register", classes)

    def poll():
        return any(matches(make_record(ctx, cls, r)) for r in ctx.call(f"{cls}.get_all"))
    try:
        if poll():
            return
        while True:
            try:
                events = ctx.call("event.next")
                for ev in events:
                    if ev.get("class") != classname or "snapshot" not in ev:
                        continue
                    if matches(make_record(ctx, cls, ev["ref"], ev["snapshot"])):
                        raise _Finished()
            except Failure as f:
                if f.code != "EVENTS_LOST":
                    raise
                ctx.call("event.unregister", classes)
                ctx.call("event.register", classes)
                if poll():
                    return
    except _Finished:
        return
    finally:
        try:
            ctx.call("event.unregister", classes)
        except Failure:
            pass


# -- the table -------------------------------------------------------------------------------

GENERATED = [
    ClassCommands("pool", "pool", [], ["uuid", "name-label", "name-description", "master",
                                       "default-SR"]),
    ClassCommands("vm", "VM", [("is-a-template", "false")], ["name-label", "uuid",
                                                             "power-state"]),
    ClassCommands("template", "VM", [("is-a-template", "true"), ("is-a-snapshot", "false")],
                  ["name-label", "name-description", "uuid"]),
    ClassCommands("snapshot", "VM", [("is-a-snapshot", "true")],
                  ["name-label", "name-description", "uuid", "snapshot_of", "snapshot_time"]),
    ClassCommands("host", "host", [], ["uuid", "name-label", "name-description"]),
    ClassCommands("host-cpu", "host_cpu", [], ["uuid", "number", "vendor", "speed",
                                               "utilisation"]),
    ClassCommands("message", "message", [], []),
]


def _build_table() -> dict:
    t = {
        "pool-join": Cmd(["master-address", "master-username", "master-password"], ["force"],
                         "Instruct host to join an existing pool.", pool_join),
        "pool-eject": Cmd(["host-uuid"], [], "Instruct host to leave an existing pool.",
                          pool_eject, with_fd=True),
        "host-disable": Cmd([], [], "Disable the XE host.", host_disable, ["Host_selectors"]),
        "host-enable": Cmd([], [], "Enable the XE host.", host_enable, ["Host_selectors"]),
        "host-shutdown": Cmd([], [], "Shutdown the XE host.", host_shutdown,
                             ["Host_selectors"]),
        "host-reboot": Cmd([], [], "Reboot the XE host.", host_reboot, ["Host_selectors"]),
        "host-cpu-info": Cmd([], ["uuid"], "Lists information about the host's physical CPUs.",
                             host_cpu_info),
        "host-get-cpu-features": Cmd([], ["uuid"], "Prints a hexadecimal representation of "
                                     "the host's physical-CPU features.",
                                     host_get_cpu_features),
        "host-evacuate": Cmd([], ["network-uuid", "batch-size"],
                             "Migrate all VMs off a host.", host_evacuate, ["Host_selectors"]),
        "host-get-vms-which-prevent-evacuation": Cmd(
            ["uuid"], [], "Return a list of VMs which prevent the evacuation of a specific "
            "host and display reasons for each one.", host_get_vms_which_prevent_evacuation),
        "vm-start": Cmd([], ["force", "on", "paused"],
                        "Start the selected VM(s). Where pooling is enabled, the host on which "
                        "to start can be specified with the 'on' parameter that takes a uuid. "
                        "The optional parameter '--force' will bypass any "
                        "hardware-compatibility warnings.", vm_start,
                        ["Standard", "Vm_selectors"]),
        "vm-suspend": Cmd([], [], "Suspend the selected VM(s).", vm_suspend,
                          ["Standard", "Vm_selectors"]),
        "vm-resume": Cmd([], ["force", "on"], "Resume the selected VM(s).", vm_resume,
                         ["Standard", "Vm_selectors"]),
        "vm-shutdown": Cmd([], ["force"], "Shutdown the selected VM(s). The optional argument "
                           "--force will forcibly shut down the VM.", vm_shutdown,
                           ["Standard", "Vm_selectors"]),
        "vm-reboot": Cmd([], ["force"], "Reboot the selected VM(s).", vm_reboot,
                         ["Standard", "Vm_selectors"]),
        "vm-migrate": Cmd([], ["live", "host", "host-uuid", "remote-master", "remote-username",
                               "remote-password", "remote-network", "force", "copy", "vif:",
                               "vdi:"],
                          "Migrate the selected VM(s). The parameter '--live' will migrate the "
                          "VM without shutting it down. The 'host' parameter matches can be "
                          "either the name or the uuid of the host. If you are migrating a VM "
                          "to a remote pool, you will need to specify the remote-master, "
                          "remote-username, and remote-password parameters. remote-master is "
                          "the network address of the master host. To migrate to a particular "
                          "host within a remote pool, you may additionally specify the host or "
                          "host-uuid parameters. Also for cross-pool migration, setting "
                          "'copy=true' will enable the copy mode so that a stopped vm can be "
                          "copied, instead of migrating, to the destination pool. The vif and "
                          "vdi mapping parameters take the form 'vif:<source vif uuid>=<dest "
                          "network uuid>' and 'vdi:<source vdi uuid>=<dest sr uuid>'. "
                          "Unfortunately, destination uuids cannot be tab-completed.",
                          vm_migrate, ["Standard", "Vm_selectors"]),
        "event-wait": Cmd(["class"], [], "Wait for the event that satisfies the conditions "
                          "given on the command line.", event_wait),
    }
    for g in GENERATED:
        t.update(g.commands())
    return t


_TABLE = None


def table() -> dict:
    global _TABLE
    if _TABLE is None:
        _TABLE = _build_table()
    return _TABLE


# -- help (cli_frontend.ml rio_help) ---------------------------------------------------------

HELP_EXCLUDE = ["server", "username", "password", "port", "minimal", "all"]


def help_command(printer, params, argv0="xe"):
    cmds = table()
    asked = [k for k, _ in params if k not in HELP_EXCLUDE]
    if asked:
        for name in asked:
            spec = cmds.get(name)
            if spec is None:
                printer.lines([f"Unknown command '{name}'"])
                continue
            vm_sel = "Vm_selectors" in spec.flags
            host_sel = "Host_selectors" in spec.flags
            optional = list(spec.optn) + (["<vm-selectors>"] if vm_sel else []) + \
                (["<host-selectors>"] if host_sel else [])
            desc = spec.help + (VM_SELECTORS_INFO if vm_sel else "") + \
                (HOST_SELECTORS_INFO if host_sel else "")
            printer.table([[("command name        ", name),
                            ("reqd params     ", ", ".join(spec.reqd)),
                            ("optional params ", ", ".join(optional)),
                            ("description     ", desc)]])
        return
    names = sorted(n for n, c in cmds.items() if "Hidden" not in c.flags)
    usage = (f"Usage: {argv0} <command> [-s server] [-pw passwd] [-p port] [-u user] "
             "[-pwf password-file]\n  [command specific arguments]\n\n"
             f"To get help on a specific command: {argv0} help <command>\n")
    if dict(params).get("all") == "true":
        host_cmds = [n for n in names if n.startswith("host-")]
        other = [n for n in names if not n.startswith("host-")]
        vm_cmds = [n for n in other if n.startswith("vm-")]
        other = [n for n in other if not n.startswith("vm-")]
        if printer.minimal:
            printer.lines(names)
            return
        printer.lines([usage + "\nFull command list\n-----------------"])
        printer.lines(R.make_list(host_cmds))
        printer.lines(R.make_list([""]))
        printer.lines(R.make_list(vm_cmds))
        printer.lines(R.make_list([""]))
        printer.lines(R.make_list(other))
        return
    std = [n for n in names if "Standard" in cmds[n].flags]
    if printer.minimal:
        printer.lines(std)
        return
    printer.lines([usage + f"To get a full listing of commands: {argv0} help --all\n\n"
                   "Common command list\n-------------------"])
    printer.lines(R.make_list(std))
