"""Playback: real pool databases loaded as pools of a world, and worlds written back out.

``xapi-sim serve --xapi-db FILE`` (repeatable) reads a database a real XenServer wrote -- a
status report's ``xapi-db.xml``, an ``xe pool-dump-database`` file, a ``/pool/xmldbdump``
download or ``state.db`` -- with :mod:`dbxml`, and makes it a pool of the world:

* **Release.** The manifest's schema version says which release wrote the file
  (``dbxml.release_for_schema``). The pool runs the closest release the simulator models:
  files up to 6.5 SP1 (cream) run as cream, files from 7.0 (dundee) on as dundee; a file
  between the two runs as the one of its hosts' product line (6.5.x: cream).
* **Rows.** Every table of the emulated release's datamodel is loaded generically, row by
  row, with its recorded reference. Columns map to fields by xapi's column names
  (``name__label`` -> ``name_label``, ``dbxml.field_of_column``) and values convert by the
  field's type (``dbvalues.from_db``). What cannot be mapped is *kept aside and not served*,
  and reported precisely (table.field, why, how many rows): a column the API datamodel never
  had (fields internal to xapi such as ``host.boot_free_mem``), a field removed by the
  emulated release (its datamodel lifecycle), a field or class added after it, a value that
  does not convert (a bad element of a set or map drops that element only). Fields the
  emulated release has and the file lacks get the datamodel's defaults (listed as
  defaulted). No field was renamed between releases (the datamodel's lifecycles record
  additions and removals only), so no rename mapping exists.
* **Dangling references** are cleared as xapi's master clears them at its start
  (``Dbsync_master`` and one ``Db_gc`` pass: ``_master_start``), and reported.
* **Never read:** passwords (``secret.value`` is loaded empty; root's password is
  ``--password``'s), sessions and tasks (xapi persists neither: clients log in again).
  Roles are xapi's static ones (``rbac_static.ml``), added as the simulator models them.
* **Hosts.** Each host row becomes a simulated host with its recorded uuid, name and
  ``software_version`` (verbatim when its product line is the emulated one, e.g. any 7.0
  build; otherwise the modelled product, reported). Its hardware comes from ``cpu_info``:
  the nearest CPU model of the catalogue (``levelling/cpus.py``: same vendor, fewest
  differing feature bits, then family/model) plus an ``overrides`` map carrying the recorded
  keys the emulated release reports, so the host's xapi start writes back exactly the
  recorded ``cpu_info`` (``xapi_start.py``); memory from ``host_metrics.memory_total``,
  sockets and cores from ``cpu_info``. Every host then boots (the xapi start routine, as a
  scenario's hosts do), keeping its VMs, their power states, residence and
  ``last_boot_CPU_flags``.
* **Addresses.** Each host keeps its recorded address until the simulator gives it an
  endpoint on loopback, as for scenarios; ``recorded_address`` maps one to the other.
* **Generations.** Rows keep the generations the file recorded (``__ctime``/``__mtime``,
  at least 1 so that ``event.from`` with an empty token sees every object), and the
  database continues from the manifest's ``generation_count``.

The dump back out, the address table and the printed reports are in :mod:`playback_dump`.
"""

from __future__ import annotations

import logging
import uuid as uuid_mod

import attrs

from . import datamodel, db_gc, dbvalues, dbxml
from .datamodel import NULL_REF, RELEASE_INDEX, Schema
from .install_network import MAX_NICS
from .playback_hw import (  # noqa: F401
    ALL_CPU_INFO_KEYS,
    CPU_INFO_KEYS,
    DEFAULT_MEMORY,
    MODELLED,
    emulated_release,
    hardware_for,
    nearest_cpu,
    product_for,
)
from .rows import _ROLES
from .runtime import HostRuntime, PoolRuntime
from .store import Database
from .world import World

log = logging.getLogger(__name__)

NOT_LOADED = {
    "session": "sessions do not outlive xapi (PersistNothing): clients log in again",
    "task": "tasks do not outlive xapi (PersistNothing)",
}
NOT_IN_API = "not in the API datamodel (internal to xapi): kept aside, not served"


class PlaybackError(ValueError):
    """A file that cannot become a pool: one line, naming the file."""


@attrs.define
class Unmapped:
    """What could not be mapped, for one table.field (``*``: the whole table)."""

    table: str
    field: str
    reason: str
    rows: int = 0

    def line(self) -> str:
        return (
            f"{self.table}.{self.field}: {self.reason} ({self.rows} row"
            f"{'' if self.rows == 1 else 's'})"
        )


@attrs.define
class LoadedHost:
    name_label: str
    uuid: str
    ref: str
    recorded_address: str
    master: bool


@attrs.define
class LoadReport:
    """What loading one file did."""

    path: str
    file_release: str | None
    schema_version: tuple | None
    release: str  # the emulated release
    pool_ref: str = ""
    pool_name: str = ""
    hosts: list = attrs.Factory(list)  # [LoadedHost]
    file_counts: dict = attrs.Factory(dict)  # table -> rows in the file
    loaded_counts: dict = attrs.Factory(dict)  # class -> rows loaded
    unmapped: list = attrs.Factory(list)  # [Unmapped]
    defaulted: list = attrs.Factory(list)  # [Unmapped]: fields the file lacked
    notes: list = attrs.Factory(list)  # hardware, product and other decisions

    def unmapped_lines(self) -> list[str]:
        return [u.line() for u in self.unmapped]

    def summary(self) -> str:
        n = self.loaded_counts
        written = (
            f"written by {self.file_release} (schema "
            f"{'.'.join(map(str, self.schema_version or ()))})"
            if self.file_release
            else "of an unknown release (no manifest)"
        )
        return (
            f"{self.path}: pool {self.pool_name!r} -- {n.get('host', 0)} hosts, "
            f"{n.get('VM', 0)} VMs, {n.get('SR', 0)} SRs; {written}, emulated as "
            f"{self.release} ({MODELLED[self.release]})"
        )

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "file_release": self.file_release,
            "schema_version": list(self.schema_version) if self.schema_version else None,
            "release": self.release,
            "pool": self.pool_name,
            "pool_ref": self.pool_ref,
            "hosts": [attrs.asdict(h) for h in self.hosts],
            "file_counts": self.file_counts,
            "loaded_counts": self.loaded_counts,
            "unmapped": [attrs.asdict(u) for u in self.unmapped],
            "defaulted": [attrs.asdict(u) for u in self.defaulted],
            "notes": list(self.notes),
        }


class Playback:
    """Per-world record of what was loaded (``World.service``): the reports, and the
    xapi-internal columns of loaded rows, written back by dumps."""

    def __init__(self, world):
        self.reports: list[LoadReport] = []
        self.internal: dict = {}  # Database -> {(cls, ref): {column: text}}

    @classmethod
    def of(cls, world) -> Playback:
        return world.service(cls)


# -- loading -----------------------------------------------------------------------------


class _Tally:
    """Unmapped/defaulted entries aggregated by (table, field, reason)."""

    def __init__(self):
        self.counts: dict = {}

    def add(self, table, field, reason):
        key = (table, field, reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def entries(self) -> list:
        return [Unmapped(t, f, r, n) for (t, f, r), n in sorted(self.counts.items())]


def _unknown_column(cls: str | None, table: str, column: str, release: str) -> tuple:
    """(field name, reason, internal?) of a column the emulated release does not have."""
    field = column.replace("__", "_", 1) if "__" in column else column
    life = datamodel.field_lifecycle(cls or table, field)
    if life is None:
        return field, NOT_IN_API, True
    since, removed = life
    if removed and RELEASE_INDEX.get(removed, 10**6) <= RELEASE_INDEX[release]:
        return field, f"removed in {removed}: dropped", False
    return field, f"added in {since}, after {release}: kept aside, not served", False


def _class_reason(table: str, release: str) -> str:
    c = datamodel._RAW["classes"].get(table)
    if c is None:
        return "no such class in the API datamodel: kept aside, not served"
    if c["removed"] and RELEASE_INDEX.get(c["removed"], 10**6) <= RELEASE_INDEX[release]:
        return f"class removed in {c['removed']}: dropped"
    return f"class added in {c['since']}, after {release}: kept aside, not served"


def _convert(dbf, schema, release, file_release, report):
    """{cls: {ref: (row, ctime, mtime)}}, {(cls, ref): internal columns}."""
    unmapped, defaulted = _Tally(), _Tally()
    out: dict = {}
    internal: dict = {}
    file_idx = RELEASE_INDEX.get(file_release) if file_release else None
    for table, rows in dbf.tables.items():
        report.file_counts[table] = len(rows)
        cls = table if table in schema.classes else schema.lower_names.get(table.lower())
        if cls is None:
            for _ in rows:
                unmapped.add(table, "*", _class_reason(table, release))
            continue
        if cls in NOT_LOADED:
            for _ in rows:
                unmapped.add(cls, "*", NOT_LOADED[cls])
            continue
        c = schema.classes[cls]
        fields = c.fields
        target = out.setdefault(cls, {})
        for raw in rows:
            row = c.defaults()
            present = set()
            for col, text in raw.columns.items():
                if col == "_ref":
                    continue
                wire = dbxml.field_of_column(col, fields)
                if wire is None:
                    name, reason, is_internal = _unknown_column(cls, table, col, release)
                    unmapped.add(cls, name, reason)
                    if is_internal:
                        internal.setdefault((cls, raw.ref), {})[col] = text
                    continue
                f = fields[wire]
                dropped: list = []
                try:
                    value = dbvalues.from_db(f.type, text, dropped)
                except dbvalues.DbValueError as e:
                    unmapped.add(cls, wire, f"bad value, datamodel default used: {e}")
                    continue
                for why in dropped[:1]:
                    unmapped.add(cls, wire, f"element dropped: {why}")
                row[wire] = value
                present.add(wire)
            if cls == "secret" and row.get("value"):
                row["value"] = ""
                unmapped.add(cls, "value", "never read: passwords stay out of playback")
            for name, _f in fields.items():
                if name in present:
                    continue
                life = datamodel.field_lifecycle(cls, name)
                since = life[0] if life else None
                if file_idx is not None and since and RELEASE_INDEX.get(since, 0) > file_idx:
                    why = f"added in {since}, after {file_release}: default"
                else:
                    why = "not in the file: default"
                defaulted.add(cls, name, why)
            if raw.ref in target:
                unmapped.add(cls, "*", "duplicate reference: the last row wins")
            target[raw.ref] = (row, raw.ctime, raw.mtime)
    report.unmapped = unmapped.entries()
    report.defaulted = defaulted.entries()
    return out, internal


# -- what a master's start does to a database it loads ---------------------------------------


def _master_start(rows: dict, world, release: str, tally: _Tally) -> None:
    """Dangling references as xapi's master clears them when it starts on a database:
    ``Dbsync_master.reset_vms_running_on_missing_hosts`` and
    ``ensure_vm_metrics_records_exist``, then one pass of the database GC
    (``Db_gc.single_pass``, Dundee: VDIs, PIFs, VBDs, crashdumps, VIFs, PBDs, VGPUs, PGPUs,
    host patches, host CPUs, host metrics, consoles, in that order). What goes is reported
    as not mapped."""

    def t(cls):
        return rows.get(cls, {})

    def valid(cls, ref):
        return ref in t(cls)

    schema = Schema.for_release(release)
    for ref, (row, *_x) in list(t("VM").items()):
        if valid("host", row["resident_on"]):
            continue
        if row["is_control_domain"]:
            del rows["VM"][ref]
            tally.add(
                "VM",
                "*",
                "control domain of a host not in the pool: deleted "
                "(Dbsync_master.reset_vms_running_on_missing_hosts)",
            )
        elif row["power_state"] == "Running":
            _force_halted(rows, ref, row)
            tally.add(
                "VM",
                "power_state",
                "Running on a host not in the pool: Halted "
                "(Dbsync_master.reset_vms_running_on_missing_hosts)",
            )
    for ref, (row, *_x) in t("VM").items():
        if not valid("VM_metrics", row["metrics"]):
            uid = _derived_uuid("VM_metrics", row["uuid"] or ref)
            m = schema.classes["VM_metrics"].defaults()
            m["uuid"] = uid
            rows.setdefault("VM_metrics", {})["OpaqueRef:" + uid] = (m, 0, 0)
            row["metrics"] = "OpaqueRef:" + uid
            tally.add(
                "VM",
                "metrics",
                "no VM_metrics row: one made (Dbsync_master.ensure_vm_metrics_records_exist)",
            )

    db_gc.single_pass(_LoadedTables(rows), tally.add)


class _LoadedTables:
    """:class:`db_gc.Tables` over rows being loaded (``{class: {ref: (row, ctime, mtime)}}``)."""

    def __init__(self, rows: dict):
        self._rows = rows

    def rows(self, cls):
        return [(ref, row) for ref, (row, *_x) in self._rows.get(cls, {}).items()]

    def exists(self, cls, ref):
        return ref in self._rows.get(cls, ())

    def remove(self, cls, ref):
        del self._rows[cls][ref]

    def update(self, cls, ref, **fields):
        self._rows[cls][ref][0].update(fields)


def _force_halted(rows, ref, row):
    """``Xapi_vm_lifecycle.force_state_reset ~value:`Halted`` on loaded rows."""
    row.update(
        power_state="Halted",
        resident_on=NULL_REF,
        scheduled_to_be_resident_on=NULL_REF,
        domid=-1,
        current_operations={},
    )
    for cls in ("VBD", "VIF"):
        for r, *_x in rows.get(cls, {}).values():
            if r["VM"] == ref:
                r["currently_attached"] = False


def _software_version(row) -> dict:
    sv = row.get("software_version")
    return sv if isinstance(sv, dict) else {}


def load(world: World, path: str) -> LoadReport:
    """Load the database file ``path`` as a new pool of ``world`` (its hosts boot); returns
    the report. Raises :class:`PlaybackError` (one line) if the file cannot be a pool."""
    try:
        return _load(world, path)
    except PlaybackError:
        raise
    except Exception as e:  # a file this loader did not foresee: logged, one line
        log.exception("loading %s failed", path)
        raise PlaybackError(f"{path}: cannot be loaded ({type(e).__name__}: {e})") from None


def _load(world: World, path: str) -> LoadReport:
    try:
        dbf = dbxml.read(path)
    except dbxml.NotADatabase as e:
        raise PlaybackError(str(e)) from None
    vsn = dbf.schema_version()
    file_release = dbxml.release_for_schema(*vsn) if vsn else None
    if not dbf.tables.get("host"):
        raise PlaybackError(f"{path}: no host in this database")
    master_ref = _master_ref(dbf)
    master_raw = next((r for r in dbf.tables["host"] if r.ref == master_ref), dbf.tables["host"][0])
    sv_text = master_raw.columns.get("software_version", "")
    try:
        master_sv = dict(dbvalues.unmarshal_map(sv_text)) if sv_text else {}
    except dbvalues.DbValueError:
        master_sv = {}
    release = emulated_release(
        file_release, master_sv.get("product_version", ""), master_sv.get("product_brand", "")
    )
    schema = Schema.for_release(release)
    report = LoadReport(path, file_release, vsn, release)
    report.notes.extend(dbf.notes)
    if not vsn:
        report.notes.append(
            "no schema version in the manifest: release taken from the master's product_version"
        )
    rows, internal = _convert(dbf, schema, release, file_release, report)
    _check_collisions(world, path, rows)
    _complete(world, rows, report, release)
    tally = _Tally()
    _master_start(rows, world, release, tally)
    report.unmapped = sorted(
        report.unmapped + tally.entries(), key=lambda u: (u.table, u.field, u.reason)
    )
    db = Database(schema, world.txm)
    pool_ref = next(iter(rows["pool"]))
    prow = rows["pool"][pool_ref][0]
    with world.txm.transaction():
        hosts = [
            _host_runtime(world, ref, row, rows, release, report, master=ref == prow["master"])
            for ref, (row, _c, _m) in rows["host"].items()
        ]
        with db.lock:
            # xapi's tables are maps ordered by reference: relation sets fill in that order
            for cls in sorted(rows, key=lambda c: (c != "host", c)):
                for ref in sorted(rows[cls]):
                    db.add(cls, ref, rows[cls][ref][0])
            db.rebuild_relations()
        master = world.hosts[prow["master"]]
        pool = PoolRuntime(db, pool_ref, master)
        for h in hosts:
            h.pool = pool
        world.add_pool(pool)
    _restore_generations(db, rows, dbf.generation())
    report.pool_ref = pool_ref
    report.pool_name = prow["name_label"]
    report.hosts = [
        LoadedHost(h.name_label, h.uuid, h.ref, h.recorded_address, h is master)
        for h in [master] + [x for x in hosts if x is not master]
    ]
    building, world.building = world.building, True
    try:
        for h in [master] + [x for x in hosts if x is not master]:
            world.xapi_start(h)
        for h in hosts:
            world.update_host_memory(h)
    finally:
        world.building = building
    report.loaded_counts = {cls: db.count(cls) for cls in sorted(db.tables) if db.count(cls)}
    state = Playback.of(world)
    state.internal[db] = internal
    state.reports.append(report)
    return report


def _master_ref(dbf) -> str | None:
    for raw in dbf.tables.get("pool", ()):
        m = raw.columns.get("master")
        if m:
            return m
    return None


def _check_collisions(world, path, rows):
    for ref, (row, _c, _m) in rows.get("host", {}).items():
        for h in world.hosts.values():
            if h.ref == ref or h.uuid == row["uuid"]:
                raise PlaybackError(
                    f"{path}: host {row['name_label']!r} ({row['uuid']}) "
                    f"is already in the world (the same pool loaded twice?)"
                )
    for p in world.pools:
        for ref in rows.get("pool", {}):
            if p.ref == ref:
                raise PlaybackError(f"{path}: pool {ref} is already in the world")


def _derived_uuid(what: str, base: str) -> str:
    """The uuid of a row playback makes, derived from what it completes (so loading the
    same file, or its dump, again gives the same row)."""
    return str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, f"xapi-sim-playback:{what}:{base}"))


def _complete(world, rows, report, release):
    """What the simulator needs that a file may lack: one pool row naming a master that
    exists, a host_metrics row per host, the static roles."""
    schema = Schema.for_release(release)
    hosts = rows.get("host", {})
    pools = rows.setdefault("pool", {})
    if len(pools) > 1:
        keep = next(
            (r for r, (row, *_x) in pools.items() if row["master"] in hosts), next(iter(pools))
        )
        report.notes.append(f"{len(pools)} pool rows: kept {keep}, the others dropped")
        for r in [r for r in pools if r != keep]:
            del pools[r]
    if not pools:
        first = next(iter(hosts))
        uid = _derived_uuid("pool", hosts[first][0]["uuid"])
        ref = "OpaqueRef:" + uid
        row = schema.classes["pool"].defaults()
        row.update(uuid=uid, master=first)
        pools[ref] = (row, 0, 0)
        report.notes.append("no pool row: one made, its master the first host")
    pref = next(iter(pools))
    prow = pools[pref][0]
    if prow["master"] not in hosts:
        first = next(iter(hosts))
        report.notes.append(
            f"pool.master {prow['master']} is not a host of the file: "
            f"{hosts[first][0]['name_label']!r} is the master"
        )
        prow["master"] = first
    metrics = rows.setdefault("host_metrics", {})
    for _ref, (row, *_x) in hosts.items():
        if row["metrics"] not in metrics:
            uid = _derived_uuid("host_metrics", row["uuid"])
            mref = row["metrics"] if row["metrics"] != NULL_REF else "OpaqueRef:" + uid
            m = schema.classes["host_metrics"].defaults()
            m.update(uuid=uid, live=True)
            metrics[mref] = (m, 0, 0)
            row["metrics"] = mref
            report.notes.append(f"host {row['name_label']!r}: no host_metrics row, one made")
    roles = rows.setdefault("role", {})
    for name, desc in _ROLES:
        uid = str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "xapi-role:" + name))
        ref = "OpaqueRef:" + uid
        if ref not in roles:
            r = schema.classes["role"].defaults()
            r.update(uuid=uid, name_label=name, name_description=desc, subroles=[])
            roles[ref] = (r, 0, 0)


def _host_runtime(world, ref, row, rows, release, report, master) -> HostRuntime:
    """The simulated host of a host row. Its row's ``software_version`` becomes what the
    host's xapi writes at its start (as after an upgrade and a reboot), so the pool's
    rolling-upgrade state is the same whatever order the hosts boot in."""
    sv = _software_version(row)
    product, note = product_for(sv, release, exact=master)
    row["software_version"] = product.software_version_map(row["name_label"])
    cpu_rows = [r for r, *_x in rows.get("host_cpu", {}).values() if r["host"] == ref]
    mrow = rows.get("host_metrics", {}).get(row["metrics"], (None,))[0]
    memory = mrow["memory_total"] if mrow is not None else None
    devices = [
        r["device"] for r, *_x in rows.get("PIF", {}).values() if r["host"] == ref and r["physical"]
    ]
    index = [int(d[3:]) for d in devices if d.startswith("eth") and d[3:].isdigit()]
    nics = min(max(index, default=3) + 1, MAX_NICS)
    hw, notes = hardware_for(row["cpu_info"], cpu_rows, memory, product.release, nics)
    name = row["name_label"]
    if note:
        report.notes.append(f"host {name!r}: {note}")
    report.notes.extend(f"host {name!r}: {n}" for n in notes)
    h = HostRuntime(world, ref, row["uuid"], name, product, hw)
    h.address = row["address"]
    h.recorded_address = row["address"]
    h.state = "up"
    world._register_host(h)
    return h


def _restore_generations(db: Database, rows: dict, generation: int) -> None:
    """Give loaded rows the generations the file recorded (at least 1, so that
    ``event.from`` with an empty token reports every object) and continue the database's
    count from the manifest's. Called right after the load committed, before anyone else
    can see the database."""
    with db.reading():
        top = db.gen
        for cls, table in rows.items():
            if cls not in db.tables:
                continue
            stamps = []
            for ref, (_row, ctime, mtime) in table.items():
                if ref in db.tables[cls]:
                    created = max(1, ctime)
                    stamps.append((max(created, mtime), created, ref))
            stamps.sort()
            db.created[cls] = {ref: c for _m, c, ref in stamps}
            db.changed[cls] = {ref: m for m, _c, ref in stamps}
            if stamps:
                top = max(top, stamps[-1][0])
        db.gen = max(top, generation)


def load_world(
    paths, seed=None, user="root", password="xenroot", world=None, **world_kw
) -> tuple[World, list]:
    """A world holding one pool per file (or ``world`` with them added)."""
    if world is None:
        world = World(seed=seed, user=user, password=password, **world_kw)
    reports = [load(world, p) for p in paths]
    return world, reports
