"""HTTP/1.1 request parsing (RFC 9112), pure: bytes in, a parsed head or an ``HttpError`` out.

Used by the front (``wire/front.py``), which hands this module only complete heads (the
bytes up to and including the empty line) and feeds chunked bodies through
``ChunkedDecoder`` as they arrive. Nothing here knows about sockets or threads.

Rules, with the RFC section each follows:

* Request line (RFC 9112 §3): ``method SP request-target SP HTTP-version``, single spaces;
  the method a token; the target origin-form (``/path?query``), absolute-form
  (``http://host/path``) or ``*``; no control characters or spaces in it. A version other
  than ``HTTP/1.x`` is 505; anything malformed is 400. Empty lines before the request line
  are skipped (§2.2); a bare LF ends a line as CRLF does (§2.2).
* Header fields (§5): ``name ":" OWS value OWS``; the name a token with no space before the
  colon (§5.1: 400); obsolete line folding -- a line that starts with SP or HTAB -- is
  refused with 400 (§5.2); a value holding CR, NUL or another control character but HTAB is
  400 (§2.2, RFC 9110 §5.5). At most ``MAX_HEADERS`` fields, else 431.
* Framing (§6): ``Transfer-Encoding`` is a list of transfer codings matched as tokens
  (``xchunked`` is not ``chunked``); ``chunked`` must be the last coding and appear once,
  else 400 (§6.3: the length cannot be determined); a coding this server does not implement
  is 501 (§6.1); ``gzip``/``x-gzip``/``deflate`` under ``chunked`` are decoded. A request
  with both ``Transfer-Encoding`` and ``Content-Length`` is refused (§6.1 allows it; a
  request smuggling vector) and so is ``Transfer-Encoding`` in an HTTP/1.0 request (§6.1:
  faulty framing). ``Content-Length`` must be digits; repeated identical values (as lines or
  a list) are one value (RFC 9110 §8.6), different values are 400. Every framing error closes
  the connection after the reply, so no byte after it is read as another request.
* More than one ``Host`` field is 400 (§3.2). A missing ``Host`` is accepted, as xapi's own
  HTTP server does (``xe`` sends HTTP/1.0 requests without one).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import TypeVar, overload

_D = TypeVar("_D")

MAX_HEADERS = 100  # header fields per request (431 above)
MAX_CONTENT_LENGTH_DIGITS = 19
MAX_CHUNK_LINE = 4096  # chunk-size line with extensions
MAX_TRAILERS = 64 * 1024  # bytes of trailer section

METHODS = ("GET", "POST", "PUT", "OPTIONS")
KNOWN_CODINGS = ("chunked", "gzip", "x-gzip", "deflate")

# RFC 9110 §5.6.2 token characters
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# a well-formed field line in one match (the common case; anything else takes the checks
# below, one by one, for its precise refusal): name, then the value without its OWS
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\x00-\x1f\x7f]|\t)*?)[ \t]*\Z")
# the fields of a head (after its request line) that are all well formed, in one match, and
# each of them, in one findall: the common case; anything else takes the line-by-line path
_TC = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELDS_OK = re.compile(r"(?:" + _TC + r":[^\x00-\x08\x0a-\x1f\x7f]*\r?\n)*\r?\n\Z")
_FIELD_EACH = re.compile(r"(" + _TC + r"):[ \t]*([^\r\n]*?)[ \t]*\r?\n")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])\Z")
# field-value: VCHAR, obs-text, SP, HTAB; everything else (CR, LF, NUL, other CTLs, DEL) bad
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
HEAD_END = re.compile(rb"\r?\n\r?\n")

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    411: "Length Required",
    413: "Request Entity Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request refused at the HTTP level: ``status`` and a short explanation. The
    connection is closed after the reply."""

    def __init__(self, status: int, text: str):
        super().__init__(status, text)
        self.status = status
        self.text = text


def is_token(b: bytes) -> bool:
    return _TOKEN.match(b) is not None


class Headers:
    """Header fields by lower-case name; each name keeps every value in arrival order."""

    __slots__ = ("_fields",)

    def __init__(self) -> None:
        self._fields: dict[str, list[str]] = {}

    def add(self, name: str, value: str) -> None:
        self._fields.setdefault(name, []).append(value)

    def all(self, name: str) -> list[str]:
        return self._fields.get(name.lower(), [])

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: _D) -> str | _D: ...

    def get(self, name: str, default: object = None) -> object:
        """The field's values joined as a list (RFC 9110 §5.3), or ``default``."""
        vals = self._fields.get(name.lower())
        return ", ".join(vals) if vals else default

    def tokens(self, name: str) -> list[str]:
        """The field as a comma-separated list of lower-case tokens (empty elements
        dropped, RFC 9110 §5.6.1)."""
        out: list[str] = []
        for v in self.all(name):
            for part in v.split(","):
                part = part.strip(" \t").lower()
                if part:
                    out.append(part)
        return out

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._fields

    def items(self) -> Iterator[tuple[str, str]]:
        for k, vals in self._fields.items():
            for v in vals:
                yield k, v


class Head:
    """A parsed request head plus its framing."""

    __slots__ = (
        "method",
        "target",
        "path",
        "version",
        "headers",
        "keep_alive",
        "length",
        "chunked",
        "codings",
        "expect_continue",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = ""  # as sent (origin-form; absolute-form reduced to it)
        self.path = ""  # without the query
        self.version = (1, 1)
        self.headers = Headers()
        self.keep_alive = True
        self.length: int | None = None  # Content-Length, when framed by it
        self.chunked = False
        self.codings: list[str] = []  # transfer codings to undo, outermost last
        self.expect_continue = False


def skip_empty_lines(buf: bytes | bytearray) -> int:
    """How many leading bytes of ``buf`` are empty lines before a request line (§2.2)."""
    i = 0
    n = len(buf)
    while i < n:
        if buf[i : i + 2] == b"\r\n":
            i += 2
        elif buf[i : i + 1] == b"\n":
            i += 1
        else:
            break
    return i


def parse_head(data: bytes) -> Head:
    """Parse a complete head (request line, fields, the empty line). Raises HttpError."""
    nl = data.find(b"\n")
    fields = data[nl + 1 :].decode("latin-1")
    if nl > 0 and _FIELDS_OK.match(fields) and fields.count("\n") <= MAX_HEADERS + 1:
        h = Head()
        _request_line(h, data[: nl - 1] if data[nl - 1] == 13 else data[:nl])
        known = h.headers._fields
        for name, value in _FIELD_EACH.findall(fields):
            name = name.lower()
            vals = known.get(name)
            if vals is None:
                known[name] = [value]
            else:
                vals.append(value)
        _framing(h)
        return h
    return _parse_lines(data)


def _parse_lines(data: bytes) -> Head:
    """``parse_head`` line by line, refusing the first fault with its own status."""
    lines = data.split(b"\n")
    # the head ends with an empty line: drop it (and the split's trailing empty string)
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    if not lines:
        raise HttpError(400, "empty request")
    h = Head()
    _request_line(h, lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    add = h.headers.add
    for line in lines[1:]:
        m = _FIELD.match(line)
        if m is not None:
            add(m.group(1).decode("ascii").lower(), m.group(2).decode("latin-1"))
            continue
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete line folding is not accepted")
        name, colon, value = line.partition(b":")
        if not colon:
            raise HttpError(400, "header line without a colon")
        if not is_token(name):
            raise HttpError(400, "bad header field name")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value) or b"\r" in value:
            raise HttpError(400, "control character in a header field value")
        h.headers.add(name.decode("ascii").lower(), value.decode("latin-1"))
    _framing(h)
    return h


def _request_line(h: Head, line: bytes) -> None:
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    m = _VERSION.match(version)
    if not m:
        raise HttpError(400, "malformed HTTP version")
    if m.group(1) != b"1":
        raise HttpError(505, "only HTTP/1.x is served")
    h.version = (1, 0) if m.group(2) == b"0" else (1, 1)
    if not is_token(method):
        raise HttpError(400, "malformed method")
    h.method = method.decode("ascii")
    if _BAD_TARGET.search(target):
        raise HttpError(400, "malformed request target")
    t = target.decode("latin-1")
    if t.startswith("/"):
        pass
    elif t == "*":
        if h.method != "OPTIONS":
            raise HttpError(400, "asterisk-form is for OPTIONS only")
    elif t.lower().startswith(("http://", "https://")):  # absolute-form (§3.2.2)
        rest = t.split("://", 1)[1]
        slash = rest.find("/")
        query = rest.find("?")
        if slash < 0 or (0 <= query < slash):
            t = "/" + (rest[query:] if query >= 0 else "")
        else:
            t = rest[slash:]
    else:
        raise HttpError(400, "malformed request target")
    h.target = t
    h.path = t.split("?", 1)[0]


def _framing(h: Head) -> None:
    hd = h.headers
    fields = hd._fields
    if len(fields.get("host", ())) > 1:
        raise HttpError(400, "more than one Host field")
    conn = hd.tokens("connection") if "connection" in fields else ()
    if h.version == (1, 0):
        h.keep_alive = "keep-alive" in conn and "close" not in conn
    else:
        h.keep_alive = "close" not in conn
    h.expect_continue = (
        "expect" in fields
        and h.version == (1, 1)
        and hd.get("expect", "").strip(" \t").lower() == "100-continue"
    )
    te = fields.get("transfer-encoding")
    cl = fields.get("content-length")
    if cl and not te and len(cl) == 1:
        v = cl[0]
        if v.isdigit() and v.isascii() and len(v) <= MAX_CONTENT_LENGTH_DIGITS:
            h.length = int(v)  # the common case: one plain length
            return
    if te:
        if cl:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        if h.version == (1, 0):
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings: list[str] = []
        for item in hd.tokens("transfer-encoding"):
            name = item.split(";", 1)[0].strip(" \t")
            if not is_token(name.encode("latin-1")):
                raise HttpError(400, "malformed transfer coding")
            codings.append(name)
        if not codings:
            raise HttpError(400, "empty Transfer-Encoding")
        if codings[-1] != "chunked":
            raise HttpError(400, "chunked is not the final transfer coding")
        if codings.count("chunked") > 1:
            raise HttpError(400, "chunked applied more than once")
        unknown = [c for c in codings if c not in KNOWN_CODINGS]
        if unknown:
            raise HttpError(501, f"transfer coding {unknown[0]!r} is not implemented")
        h.chunked = True
        h.codings = codings[:-1]
    elif cl:
        values: set[int] = set()
        for v in cl:
            for part in v.split(","):
                part = part.strip(" \t")
                if (
                    not part
                    or not part.isascii()
                    or not part.isdigit()
                    or len(part) > MAX_CONTENT_LENGTH_DIGITS
                ):
                    raise HttpError(400, "bad Content-Length")
                values.add(int(part))
        if len(values) != 1:
            raise HttpError(400, "conflicting Content-Length values")
        h.length = values.pop()


class ChunkedDecoder:
    """Incremental decoder of a chunked body (RFC 9112 §7.1). ``feed(buf)`` consumes what
    it can from the front of ``buf`` (a bytearray) and returns True once the last chunk and
    the trailer section are in; the body is then ``b"".join(parts)``. Raises HttpError (400
    malformed, 413 over ``limit``)."""

    SIZE, DATA, DATA_END, TRAILER = range(4)

    def __init__(self, limit: int):
        self.limit = limit
        self.state = self.SIZE
        self.left = 0
        self.total = 0
        self.trailer_bytes = 0
        self.parts: list[bytes] = []

    def feed(self, buf: bytearray) -> bool:
        while True:
            if self.state == self.SIZE:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise HttpError(400, "chunk-size line too long")
                    return False
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                size_text = line.split(b";", 1)[0].rstrip(b" \t")
                if (
                    not size_text
                    or len(size_text) > 16
                    or any(c not in b"0123456789abcdefABCDEF" for c in size_text)
                ):
                    raise HttpError(400, "bad chunk size")
                size = int(size_text, 16)
                if size == 0:
                    self.state = self.TRAILER
                    continue
                self.total += size
                if self.total > self.limit:
                    raise HttpError(413, f"body exceeds the limit of {self.limit} bytes")
                self.left = size
                self.state = self.DATA
            elif self.state == self.DATA:
                if not buf:
                    return False
                take = min(self.left, len(buf))
                self.parts.append(bytes(buf[:take]))
                del buf[:take]
                self.left -= take
                if self.left:
                    return False
                self.state = self.DATA_END
            elif self.state == self.DATA_END:
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                elif len(buf) < 2 and bytes(buf[:1]) in (b"", b"\r"):
                    return False
                else:
                    raise HttpError(400, "chunk data not followed by CRLF")
                self.state = self.SIZE
            else:  # TRAILER: field lines up to an empty line; read and ignored
                nl = buf.find(b"\n")
                if nl < 0:
                    if self.trailer_bytes + len(buf) > MAX_TRAILERS:
                        raise HttpError(431, "trailer section too large")
                    return False
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                self.trailer_bytes += nl + 1
                if self.trailer_bytes > MAX_TRAILERS:
                    raise HttpError(431, "trailer section too large")
                if line in (b"", b"\r"):
                    return True
                if line.endswith(b"\r"):
                    line = line[:-1]
                name, colon, _ = line.partition(b":")
                if not colon or not is_token(name):
                    raise HttpError(400, "malformed trailer field")


def decode_codings(body: bytes, codings: list[str], limit: int) -> bytes:
    """Undo the transfer codings applied under ``chunked`` (last applied first), at most
    ``limit`` bytes out (413 beyond: a compression bomb is not inflated)."""
    for coding in reversed(codings):
        wbits = 31 if coding in ("gzip", "x-gzip") else 15
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error as e:
            raise HttpError(400, f"bad {coding} data: {e}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise HttpError(413, f"body exceeds the limit of {limit} bytes")
        if not d.eof:
            raise HttpError(400, f"truncated {coding} data")
        body = out
    return body
