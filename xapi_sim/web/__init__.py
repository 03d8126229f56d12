"""The live page of the simulated world, served at ``/sim/`` on every endpoint.

Plain HTML, CSS and JavaScript modules shipped in this directory: no build step, nothing
fetched from elsewhere, so it works offline. The page talks to the emulator only as any
client does -- the public JSON-RPC API (``/jsonrpc``) and the control API (``sim.*``) --
after a login form; docs/page.md describes it.

``reply`` turns a ``GET`` path under ``/sim`` into complete HTTP reply bytes. Only the files
listed at import are served, looked up by name in a dict: a path naming anything else
(``..``, an encoded slash, a subdirectory) is a 404, never a file-system lookup. Every reply
carries an ``etag`` (the content's hash) and ``cache-control: no-cache``, so a browser keeps
its copy and revalidates it (``304 Not Modified``) on each load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PREFIX = "/sim"
_DIR = Path(__file__).resolve().parent
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
# The page's own files only; connect-src allows the other hosts' endpoints of the world.
_SECURITY = (
    b"x-content-type-options: nosniff\r\n"
    b"referrer-policy: no-referrer\r\n"
    b"content-security-policy: default-src 'self'; connect-src 'self' http: https:; "
    b"img-src 'self' data:; frame-ancestors 'none'\r\n"
)


def _load() -> dict[str, tuple[bytes, bytes, bytes]]:
    """name -> (content type, body, etag) of every servable file in this directory."""
    out = {}
    for f in sorted(_DIR.iterdir()):
        ctype = _TYPES.get(f.suffix)
        if ctype is not None and f.is_file():
            body = f.read_bytes()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"'
            out[f.name] = (ctype, body, etag)
    return out


FILES = _load()


def handles(path: str) -> bool:
    """Whether a GET path (query removed) belongs to the page."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def _head(status: bytes, close: bool, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\n"
        + (b"connection: close\r\n" if close else b"connection: keep-alive\r\n")
        + extra
    )


def reply(path: str, if_none_match: str | None, close: bool) -> bytes:
    """The reply to ``GET path`` (query removed; ``handles(path)`` true)."""
    if path == PREFIX:
        body = b'<a href="/sim/">/sim/</a>'
        return (
            _head(b"301 Moved Permanently", close, b"location: /sim/\r\n")
            + b"content-type: text/html; charset=utf-8\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
    name = path[len(PREFIX) + 1 :] or "index.html"
    entry = FILES.get(name)
    if entry is None:
        body = b"<html><body><h1>HTTP 404</h1>not found</body></html>"
        return (
            _head(b"404 Not Found", close)
            + b"content-type: text/html; charset=utf-8\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
    ctype, body, etag = entry
    common = b"etag: " + etag + b"\r\ncache-control: no-cache\r\n" + _SECURITY
    if if_none_match is not None and etag in [t.strip().encode() for t in if_none_match.split(",")]:
        return _head(b"304 Not Modified", close) + common + b"content-length: 0\r\n\r\n"
    return (
        _head(b"200 OK", close)
        + b"content-type: "
        + ctype
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + common
        + b"\r\n"
        + body
    )
