"""Worlds written back out as xapi writes its database, and what playback tells the user.

The dump (``dump`` / ``GET /pool/xmldbdump`` / ``xapi-sim export --format xmldbdump``) is
the inverse of :mod:`playback`'s load: every class of the pool's release, columns from the
datamodel fields plus the xapi-internal columns a loaded row brought with it, in
``dbxml.write``'s order; sessions, tasks, messages and other ``PersistNothing`` classes
without rows, as xapi writes them (``db_xml.ml``, ``pool_db_backup.ml``).
"""

from __future__ import annotations

from collections.abc import Iterator

from . import dbxml
from .playback import Playback, PlaybackError
from .runtime import PoolRuntime
from .world import World

# pool_db_backup.ml (CA-18377): during a rolling upgrade the master answers
# /pool/xmldbdump with the smallest database a Miami host accepts.
MINIMAL_MIAMI_DATABASE = (
    '<database><manifest><pair key="schema_major_vsn" value="5"/><pair key="schema_minor_vsn"'
    ' value="35"/><pair key="generation_count" value="103"/></manifest><table name="SR" />'
    '<table name="pool" /><table name="VBD_metrics"/><table name="console" /><table '
    'name="host" /><table name="VIF_metrics"/><table name="user" /><table name="PBD" />'
    '<table name="pool_patch" /><table name="host_metrics" /><table name="VLAN" /><table '
    'name="Bond" /><table name="VTPM" /><table name="event"/><table name="VBD" /><table '
    'name="VM_guest_metrics" /><table name="VDI" /><table name="VM_metrics"/><table '
    'name="task"/><table name="VM" /><table name="crashdump"/><table name="network" />'
    '<table name="PIF" /><table name="host_patch"/><table name="host_crashdump"/><table '
    'name="SM" /><table name="host_cpu" /><table name="VIF" /><table name="session" />'
    '<table name="PIF_metrics" /></database>'
)


# -- dumping ------------------------------------------------------------------------------


def dump(pool: PoolRuntime) -> Iterator[str]:
    """The pool's database as ``Db_xml.To.database`` writes it (in chunks of text). Rows
    are copied under the pool's lock; encoding happens after it is released."""
    db = pool.db
    world = pool.master.world
    schema = db.schema
    set_fields: dict = {}
    for one, sfield, _many, _rfield in db.relations():
        set_fields.setdefault(one, []).append(sfield)
    with db.reading():
        gen = db.gen
        snap = {}
        for cls, table in db.tables.items():
            if not dbxml.persistent(cls):
                continue
            sf = set_fields.get(cls)
            rows = {
                ref: ({**row, **{f: list(row[f]) for f in sf}} if sf else row)
                for ref, row in table.items()
            }
            snap[cls] = (rows, dict(db.created[cls]), dict(db.changed[cls]))
    internal = Playback.of(world).internal.get(db, {})
    tables = []
    for name in dbxml.table_names(schema):
        if name not in snap:
            tables.append(dbxml.TableOut(name))
            continue
        rows, created, changed = snap[name]
        fields = schema.classes[name].fields
        out = []
        for ref, row in rows.items():
            cols = dbxml.encode_row(name, fields, ref, row)
            extra = internal.get((name, ref))
            if extra:
                cols = {**extra, **cols}
            c = created.get(ref, 0)
            out.append((ref, c, changed.get(ref, c), cols))
        tables.append(dbxml.TableOut(name, out))
    yield from dbxml.write(schema_version(pool), gen, tables)


def schema_version(pool: PoolRuntime) -> tuple[int, int]:
    """The manifest's schema version: the ``db_schema`` the master's release reports in its
    ``software_version`` (from 7.1 on), else the schema of the newest release known not
    after the pool's datamodel release (``dbxml.SCHEMA_VERSIONS``)."""
    text = dict(pool.master.product.software_version).get("db_schema", "")
    major, _, minor = text.partition(".")
    if major.isdigit() and minor.isdigit():
        return int(major), int(minor)
    return dbxml.schema_version_of(pool.db.schema.release)


def dump_bytes(pool: PoolRuntime) -> bytes:
    return "".join(dump(pool)).encode("utf-8")


def xmldbdump_body(pool: PoolRuntime) -> bytes:
    """What ``Pool_db_backup.write_database`` sends: the database, or during a rolling
    upgrade the minimal Miami database (CA-18377)."""
    prow = pool.db.tables["pool"].get(pool.ref)
    if prow is not None and "rolling_upgrade_in_progress" in prow["other_config"]:
        return MINIMAL_MIAMI_DATABASE.encode()
    return dump_bytes(pool)


def find_pool(world: World, key: str | None) -> PoolRuntime:
    """The pool named ``key`` (name_label, uuid or ref); the only pool when ``key`` is
    None. Raises PlaybackError listing the choices."""
    pools = list(world.pools)

    def label(p):
        row = p.db.tables["pool"].get(p.ref) or {}
        return row.get("name_label") or p.master.name_label

    if key is None:
        if len(pools) == 1:
            return pools[0]
        raise PlaybackError(
            "the world has several pools; choose one with --pool: "
            + ", ".join(repr(label(p)) for p in pools)
        )
    for p in pools:
        row = p.db.tables["pool"].get(p.ref) or {}
        if key in (p.ref, row.get("uuid"), row.get("name_label"), p.master.name_label):
            return p
    raise PlaybackError(
        f"no pool {key!r}; the pools are: " + ", ".join(repr(label(p)) for p in pools)
    )


def address_table(world: World) -> list[dict]:
    """Every loaded host: recorded address -> the URL it answers on now."""
    out = []
    for report in Playback.of(world).reports:
        for lh in report.hosts:
            h = world.hosts.get(lh.ref)
            out.append(
                {
                    "file": report.path,
                    "pool": report.pool_name,
                    "name_label": lh.name_label,
                    "recorded_address": lh.recorded_address,
                    "url": h.url if h is not None and h.port else "",
                    "master": lh.master,
                }
            )
    return out


def describe_reports(world: World) -> list[str]:
    """Printable lines: per file its summary, what was not mapped, the notes."""
    lines = []
    for r in Playback.of(world).reports:
        lines.append(f"xapi-sim: loaded {r.summary()}")
        if r.unmapped:
            lines.append("  not mapped (not served):")
            lines.extend("    " + u.line() for u in r.unmapped)
        if r.defaulted:
            tables = len({d.table for d in r.defaulted})
            lines.append(
                f"  defaulted: {len(r.defaulted)} fields of {tables} classes the "
                f"file lacks took the datamodel's defaults"
            )
        for n in r.notes:
            lines.append("  note: " + n)
    return lines
