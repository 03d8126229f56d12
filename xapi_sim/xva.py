"""The XVA format: a tar stream holding ``ova.xml`` then each disk as 1 MiB chunks.

From xen-api ``dundee-lcm``: ``ocaml/xapi/importexport.ml`` (the header: an XML-RPC struct
``{version: {hostname, date, product_version, product_brand, build_number, xapi_major,
xapi_minor, export_vsn}, objects: [{class, id, snapshot}]}``, every version field a
string, ``export_vsn`` 2; ``snapshot`` is the object's record as the API marshals it, its
references replaced by the export's own ids ``Ref:N`` or ``OpaqueRef:NULL``),
``export.ml`` (``ova.xml`` first, written by ``Xml.to_bigbuffer``: no XML declaration) and
``stream_vdi.ml``: a disk whose id is ``Ref:N`` is the tar members ``Ref:N/00000000``,
``Ref:N/00000001``, ... each ``chunk_size`` (1 MiB, the last one shorter) followed by
``<name>.checksum``, the SHA-1 of the chunk in hex; a chunk of zeros is skipped unless it
is the first or the last. Disks go in the order of their ids compared as strings; the tar
ends with two zero blocks (no checksum table since Miami).

Pure: tar members as bytes in, pieces of bytes out; a reader over a sequential
``read(n)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from defusedxml import ElementTree as SafeET

from .wire import xmlrpc

XML_FILENAME = "ova.xml"  # Xva.xml_filename
CHUNK = 1024 * 1024  # Stream_vdi.chunk_size
CHECKSUM_EXT = ".checksum"
EXPORT_VSN = 2
BLOCK = 512
END = bytes(2 * BLOCK)


class XvaError(ValueError):
    """Not an XVA this reader accepts (with why)."""


# -- tar -------------------------------------------------------------------------------------


def _octal(n: int, width: int) -> bytes:
    return (f"{n:0{width - 1}o}").encode() + b"\0"


def tar_header(name: str, size: int, mtime: int = 0) -> bytes:
    """A POSIX ustar header for a regular file (mode 0400, owner root, as ocaml-tar's
    ``Header.make`` gives the names xapi writes, all under 100 bytes)."""
    raw = name.encode()
    if len(raw) > 100:
        raise XvaError(f"tar member name too long: {name}")
    h = bytearray(BLOCK)
    h[0 : len(raw)] = raw
    h[100:108] = _octal(0o400, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(mtime, 12)
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = f"{sum(h):06o}".encode() + b"\0 "
    return bytes(h)


def padding(size: int) -> int:
    return -size % BLOCK


def member(name: str, data: bytes) -> bytes:
    return tar_header(name, len(data)) + data + bytes(padding(len(data)))


class TarReader:
    """Tar members read sequentially from ``read(n)``: ``next()`` gives (name, size) of the
    next member or None at the end; then ``data()`` (or ``read``/``skip``) its contents."""

    def __init__(self, read: Callable[[int], bytes]):
        self._read = read
        self.left = 0
        self.pad = 0

    def _exact(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise EOFError("the XVA stream ends early")
        return data

    def next(self) -> tuple[str, int] | None:
        self.skip()
        while True:
            block = self._read(BLOCK)
            if not block:
                return None
            if len(block) != BLOCK:
                raise EOFError("the XVA stream ends inside a tar header")
            if block == bytes(BLOCK):
                return None
            return self._parse(block)

    def _parse(self, h: bytes) -> tuple[str, int]:
        stored = h[148:156].split(b"\0", 1)[0].strip()
        check = sum(h[:148]) + 8 * 32 + sum(h[156:])
        try:
            if int(stored or b"0", 8) != check:
                raise XvaError("a tar header checksum does not match")
            size = int(h[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            raise XvaError("a tar header is malformed") from None
        name = h[0:100].split(b"\0", 1)[0]
        prefix = h[345:500].split(b"\0", 1)[0] if h[257:262] == b"ustar" else b""
        if prefix:
            name = prefix + b"/" + name
        self.left, self.pad = size, padding(size)
        return name.decode("utf-8", "replace"), size

    def read(self, n: int) -> bytes:
        n = min(n, self.left)
        if n <= 0:
            return b""
        data = self._exact(n)
        self.left -= n
        return data

    def data(self) -> bytes:
        return self.read(self.left)

    def skip(self) -> None:
        while self.left:
            self.read(min(self.left, CHUNK))
        if self.pad:
            self._exact(self.pad)
            self.pad = 0


# -- ova.xml ---------------------------------------------------------------------------------

VERSION_KEYS = (
    "hostname",
    "date",
    "product_version",
    "product_brand",
    "build_number",
    "xapi_major",
    "xapi_minor",
    "export_vsn",
)


def ova_xml(version: dict[str, str], objects: list[tuple[str, str, dict[str, Any]]]) -> bytes:
    """``xmlrpc_of_header``: the version struct and the objects (class, id, record)."""
    header = {
        "version": {k: str(version[k]) for k in VERSION_KEYS},
        "objects": [{"class": c, "id": i, "snapshot": rec} for c, i, rec in objects],
    }
    return xmlrpc.encode_value(header).encode()


def parse_ova(data: bytes) -> tuple[dict[str, str], list[tuple[str, str, dict[str, Any]]]]:
    """``header_of_xmlrpc``: (version, objects). Raises :class:`XvaError`."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True)
        value = xmlrpc._value(root, 0)
    except Exception as e:  # noqa: BLE001 -- any parse failure is "not an ova.xml"
        raise XvaError(f"ova.xml is not an XML-RPC value: {type(e).__name__}: {e}") from None
    if not isinstance(value, dict) or "version" not in value or "objects" not in value:
        raise XvaError("ova.xml lacks version or objects")
    version, objects = value["version"], value["objects"]
    if not isinstance(version, dict) or not isinstance(objects, list):
        raise XvaError("ova.xml's version or objects has the wrong type")
    out = []
    for o in objects:
        if not isinstance(o, dict) or not {"class", "id", "snapshot"} <= o.keys():
            raise XvaError("an object of ova.xml lacks class, id or snapshot")
        if not isinstance(o["snapshot"], dict):
            raise XvaError(f"the snapshot of {o['id']} is not a struct")
        out.append((str(o["class"]), str(o["id"]), o["snapshot"]))
    return {k: str(v) for k, v in version.items()}, out


def parse_value(text: str) -> Any:
    """One XML-RPC ``<value>`` (a task's result). Raises :class:`XvaError`."""
    try:
        root = SafeET.fromstring(text.encode(), forbid_dtd=True, forbid_entities=True)
        return xmlrpc._value(root, 0)
    except Exception as e:  # noqa: BLE001 -- any parse failure is "not a value"
        raise XvaError(f"not an XML-RPC value: {e}") from None


# -- disks -----------------------------------------------------------------------------------


def chunk_name(prefix: str, n: int) -> str:
    return f"{prefix}/{n:08d}"


def disk_members(
    prefix: str, size: int, chunks: Iterator[tuple[int, bytes | None]]
) -> Iterator[bytes]:
    """The tar pieces of one disk (``Stream_vdi.send_one``): ``chunks`` gives (offset,
    data or None for a hole) per ``CHUNK``; zero chunks but the first and last are
    skipped."""
    last = (size - 1) // CHUNK if size else -1
    for off, data in chunks:
        n = off // CHUNK
        length = min(CHUNK, size - off)
        if data is None or not any_nonzero(data):
            if n != 0 and n != last:
                continue
            data = bytes(length)
        name = chunk_name(prefix, n)
        yield tar_header(name, length)
        yield data
        if padding(length):
            yield bytes(padding(length))
        yield member(name + CHECKSUM_EXT, hashlib.sha1(data).hexdigest().encode())


def any_nonzero(data: bytes) -> bool:
    return data.count(0) != len(data)
