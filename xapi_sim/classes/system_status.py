"""host.get_system_status_capabilities and the status report ``GET /system-status`` serves.

xen-api ``ocaml/xapi/system_status.ml`` (``get_capabilities``: ``xen-bugtool
--capabilities``), ``xapi_host.ml`` ``get_system_status_capabilities`` and
``message_forwarding.ml`` (``do_op_on``: forwarded to the host, HOST_OFFLINE if it is not
live), at each release's source ref; the capability table is xenserver/status-report's
``xen-bugtool`` (``data/bugtool_capabilities.json``, derived by
``scripts/derive_bugtool_caps.py``).

**Capabilities**: the release's built-in ``cap()`` table, then xapi's bugtool plugins
(``load_plugins``: ``xapi``, ``xenopsd``, later ``observer`` and ``xcp-rrdd-plugins``), then
``update_capabilities`` on this host: ``host-crashdump-logs`` and ``xapi-debug`` sized by
their (empty) directories, ``network-status`` scaled by the host's ``eth`` PIFs plus its
running domains' VIFs, ``network-config`` by the PIFs plus the vswitch database overhead,
``fcoe`` by the PIFs, ``xenserver-databases`` by domains, tapdisks and VIFs plus its
overhead (``update_cap_size`` sets min and max alike); to 6.5 ``xenserver-logs`` is sized
by the log files (none here). Printed as ``print_capabilities`` does: a minidom document
``system-status-capabilities`` with one ``capability`` per non-hidden key,
``toprettyxml()`` then ``print``'s newline; xen-bugtool runs under Python 2 in every
emulated release, whose minidom writes attributes sorted by name. Keys come in table order
(Python 2's dict would order them by hash: not reproduced).

**Report** (``xen-bugtool --entries=... --output=...``): unknown entries are dropped, no
entries means every default-checked one; files under ``bug-report-YYYYMMDDHHMMSS/`` and
its ``inventory.xml`` (``make_inventory``: a ``system-summary`` with the date and hostname,
one ``inventory-entry`` per file with its capability, name and md5). Only what the
simulator holds is collected, as the commands that fail add nothing: for
``xenserver-databases`` the pool database as ``xapi-db.xml`` and ``xapi-db-dumped.xml``
(``dump_filtered_xapi_db`` / ``filter_db_pii``: values in the ``secret`` table become
``REMOVED``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
import zipfile
from importlib import resources
from xml.dom import minidom

from ..dispatch import api
from .common import on_host

CAP_XML_ROOT = "system-status-capabilities"
INVENTORY_XML_ROOT = "system-status-inventory"
KB, MB = 1024, 1024 * 1024
NETWORK_CONFIG_OVERHEAD = 10 * MB
DATABASES_SIZE_OVERHEAD = 2 * MB
DATABASES_TIME_OVERHEAD = 40
ATTRS = ("key", "pii", "min-size", "max-size", "min-time", "max-time", "content-type")


def _load() -> dict:
    with resources.files("xapi_sim").joinpath("data/bugtool_capabilities.json").open("rb") as f:
        return json.load(f)["releases"]


TABLES: dict = _load()


def table(host) -> dict:
    """The release's xen-bugtool facts (a played-back host of another release: Dundee's)."""
    return TABLES.get(host.product.profile) or TABLES["dundee"]


def _counts(db, host_ref: str) -> tuple[int, int, int, int]:
    """(eth PIFs, running domains' VIFs, domains, tapdisks) of the host, as
    ``update_capabilities`` counts /sys/class/net, xc's domains and blktap devices."""
    pifs = sum(
        1
        for _, p in db.rows("PIF")
        if p["host"] == host_ref and p["physical"] and p["device"].startswith("eth")
    )
    vifs = doms = vbds = 0
    for vm in db.get("host", host_ref)["resident_VMs"]:
        row = db.tables["VM"].get(vm)
        if row is None or row["power_state"] not in ("Running", "Paused"):
            continue
        doms += 1
        if row["is_control_domain"]:
            continue
        vifs += sum(1 for v in row["VIFs"] if db.get("VIF", v)["currently_attached"])
        for vbd in row["VBDs"]:
            b = db.get("VBD", vbd)
            vbds += b["currently_attached"] and not b["empty"]
    return pifs, vifs, doms, vbds


def capabilities(db, host) -> list[dict]:
    """Every capability of ``host`` after ``update_capabilities``, in table order."""
    t = table(host)
    caps = {c["key"]: dict(c) for c in t["caps"]}
    for p in t["plugins"]:
        caps.setdefault(p["key"], dict(p))
    pifs, vifs, doms, vbds = _counts(db, host.ref)

    def size(key, n):
        if key in caps:
            caps[key]["min_size"] = caps[key]["max_size"] = n

    def secs(key, n):
        if key in caps:
            caps[key]["max_time"] = n

    size("host-crashdump-logs", 0)
    size("xapi-debug", 0)
    if "xenserver_logs_size" in t["rules"]:
        size("xenserver-logs", 0)
    if "network_per_device" in t["rules"]:
        secs("network-status", caps["network-status"]["max_time"] * (pifs + vifs))
        size("network-status", caps["network-status"]["max_size"] * (pifs + vifs))
        net = caps["network-config"]["max_size"] * pifs + NETWORK_CONFIG_OVERHEAD
        size("network-config", net)
    if "fcoe_per_pif" in t["rules"] and "fcoe" in caps:
        secs("fcoe", caps["fcoe"]["max_time"] * pifs)
        size("fcoe", caps["fcoe"]["max_size"] * pifs)
    if "databases_per_device" in t["rules"]:
        c = caps["xenserver-databases"]
        n = doms + vbds + vifs
        secs("xenserver-databases", c["max_time"] * n + DATABASES_TIME_OVERHEAD)
        size("xenserver-databases", c["max_size"] * n + DATABASES_SIZE_OVERHEAD)
    return list(caps.values())


def _pretty(doc: minidom.Document, sort_attrs: bool) -> str:
    """``toprettyxml()`` as Python 2's minidom writes it (attributes sorted) or Python 3's
    (attributes in the order they were set)."""
    if not sort_attrs:
        return doc.toprettyxml()
    for el in doc.getElementsByTagName("*"):
        items = sorted(el.attributes.items())
        for k, _ in items:
            el.removeAttribute(k)
        for k, v in items:
            el.setAttribute(k, v)
    return doc.toprettyxml()


def capabilities_xml(db, host) -> str:
    """What ``xen-bugtool --capabilities`` prints (``print_capabilities``)."""
    doc = minidom.getDOMImplementation().createDocument("ns", CAP_XML_ROOT, None)
    root = doc.documentElement
    assert root is not None
    for c in capabilities(db, host):
        if c["hidden"]:
            continue
        el = doc.createElement("capability")
        values = (c["key"], c["pii"], c["min_size"], c["max_size"], c["min_time"])
        for name, value in zip(ATTRS, (*values, c["max_time"], c["mime"]), strict=True):
            el.setAttribute(name, str(value))
        el.setAttribute("default-checked", "yes" if c["checked"] else "no")
        root.appendChild(el)
    return _pretty(doc, table(host)["python"] == 2) + "\n"


@api("host.get_system_status_capabilities")
def get_system_status_capabilities(call, host):
    h = on_host(call, host)
    return capabilities_xml(call.db, h)


# -- the report ------------------------------------------------------------------------------


def entries_of(db, host, entries: str) -> list[str]:
    """``--entries``: the named keys xen-bugtool knows (``key:verbosity`` allowed), in the
    order given; empty: every default-checked capability."""
    caps = {c["key"]: c for c in capabilities(db, host)}
    if not entries:
        return [k for k, c in caps.items() if c["checked"]]
    out = []
    for item in entries.split(","):
        key = item.split(":")[0]
        if key in caps and key not in out:
            out.append(key)
    return out


_SECRET_VALUE = re.compile(r'(value=")[^"]+(")')


def filter_db_pii(text: str) -> str:
    """``DBFilter``: in the ``secret`` table, each row's ``value`` becomes ``REMOVED``."""
    out, in_secret = [], False
    for piece in re.split(r"(?<=>)", text):
        if piece.startswith("<table ") and 'name="secret"' in piece:
            in_secret = True
        elif piece.startswith("</table>"):
            in_secret = False
        if in_secret and piece.startswith("<row"):
            piece = _SECRET_VALUE.sub(r"\1REMOVED\2", piece)
        out.append(piece)
    return "".join(out)


def collect(database: bytes, keys: list[str]) -> list[tuple[str, str, bytes]]:
    """(capability, file name, contents) of every file the simulator can truly produce for
    the selected ``keys``, in xen-bugtool's collection order; ``database`` is the pool
    database in xapi's XML format."""
    files: list[tuple[str, str, bytes]] = []
    if "xenserver-databases" in keys:
        db = filter_db_pii(database.decode("utf-8")).encode("utf-8")
        files.append(("xenserver-databases", "xapi-db.xml", db))
        files.append(("xenserver-databases", "xapi-db-dumped.xml", db))
    return files


def inventory_xml(subdir: str, hostname: str, when: float, files) -> bytes:
    """``make_inventory`` (Python 2 minidom, attributes sorted)."""
    doc = minidom.getDOMImplementation().createDocument(None, INVENTORY_XML_ROOT, None)
    root = doc.documentElement
    assert root is not None
    s = doc.createElement("system-summary")
    s.setAttribute("date", time.strftime("%c", time.gmtime(when)))
    s.setAttribute("hostname", hostname)
    root.appendChild(s)
    for cap, name, data in files:
        el = doc.createElement("inventory-entry")
        el.setAttribute("capability", cap)
        el.setAttribute("filename", f"{subdir}/{name}")
        el.setAttribute("md5sum", hashlib.md5(data).hexdigest())  # noqa: S324 -- bugtool's
        root.appendChild(el)
    return _pretty(doc, True).encode("utf-8")


def report_members(database: bytes, hostname: str, keys: list[str], when: float):
    """The report's files, inventory last, each ``(path, data)``."""
    subdir = "bug-report-" + time.strftime("%Y%m%d%H%M%S", time.gmtime(when))
    files = collect(database, keys)
    out = [(f"{subdir}/{name}", data) for _, name, data in files]
    out.append((f"{subdir}/inventory.xml", inventory_xml(subdir, hostname, when, files)))
    return subdir, out


def tar_piece(path: str, data: bytes, when: float) -> bytes:
    """One tar member as ``TarOutput.addFile`` writes it (owner root)."""
    ti = tarfile.TarInfo(path)
    ti.size, ti.mtime, ti.uname, ti.gname, ti.mode = len(data), int(when), "root", "root", 0o644
    head = ti.tobuf(format=tarfile.GNU_FORMAT)
    return head + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def archive(members, output: str, when: float) -> bytes:
    """The whole archive for ``--output=tar.bz2`` or ``zip`` (written to a file, then sent)."""
    buf = io.BytesIO()
    if output == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, data in members:
                zf.writestr(path, data)
        return buf.getvalue()
    with tarfile.open(fileobj=buf, mode="w|bz2", format=tarfile.GNU_FORMAT) as tf:
        for path, data in members:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.uname, ti.gname, ti.mode = (
                len(data),
                int(when),
                "root",
                "root",
                0o644,
            )
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
