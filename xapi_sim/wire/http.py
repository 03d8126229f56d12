"""The HTTP shell: one listener per simulated host, served by the simulator's HTTP front.

Mirrors ``ocaml/libs/http-lib/http_svr.ml`` as clients see it: XML-RPC on every POST path but
``/jsonrpc`` (longest-prefix match, so ``/``, ``/RPC2``, ``/json`` and XO's ``/xmlrpc`` all
work), JSON-RPC on ``/jsonrpc``, the thin-CLI protocol on ``/cli``, ``PUT /import_metadata``
(cross-pool migration, ``HostServer.http_handlers``); HTTP 200 for every API result, HTTP
500 with ``connection: close`` for unparseable bodies; lower-case headers; keep-alive unless
the client asks to close (HTTP/1.0: unless it asks to keep alive); ``OPTIONS`` answers the
CORS preflight; a tar on ``/import_metadata`` is xapi's XVA metadata (``handlers/xva.py``),
not the migration hand-over. ``GET /sim/`` serves the simulator's own page (``xapi_sim/web``,
not part of XAPI). Every other ``GET`` and ``PUT`` goes to the handler registry
(``routes.py``: ``/export``, ``/import``, ``/export_raw_vdi``, ``/pool/xmldbdump``,
``/rrd_updates``, ...; the handlers are in ``handlers/``), 404 if none matches; other
methods 501. Bodies above ``MAX_BODY`` are refused with 413 without being read -- except
for a streaming handler, which reads its body itself --; heads above ``MAX_HEAD`` with 431.
The request parsing rules (RFC 9112: framing, smuggling, obsolete folding) are in
``httpparse.py``.

Every endpoint speaks plain HTTP and HTTPS on the same port, told apart by the first byte
of the connection, as every XenServer host serves HTTPS (``HostServer.tls``: the host's
certificate, ``tls.py``).

Connections are served by ``front.Front`` -- one selector loop and a bounded worker pool per
simulator, no thread per connection: an idle or half-sent connection costs a socket and a
few hundred bytes. A connection waiting for its next request is closed after the idle
timeout (``IDLE_TIMEOUT``); once a request has begun, its head and body must arrive within
the request timeout (``REQUEST_TIMEOUT``), however slowly the bytes trickle in, and within
the idle timeout of the previous byte -- else 408 and close. Both can be set per world
(``world.idle_timeout``, ``world.request_timeout``) or per listener
(``HostServer.idle_timeout``/``request_timeout``); they are read when a connection is
accepted. Replies and long calls are not bound by them. A listener holding
``MAX_CONNECTIONS`` connections stops accepting until one closes; more wait in the accept
queue.
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
from collections.abc import Callable

from .. import handlers, web  # noqa: F401 -- handlers registers the HTTP handlers
from ..dispatch import Bare, Deferred
from ..errors import Failure, NotQuick, internal
from . import jsonrpc, routes, xmlrpc
from .httpparse import METHODS, REASONS, HttpError, decode_codings  # noqa: F401
from .values import Shared

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
MAX_HEAD = 64 * 1024  # request line and header fields (431 above)
IDLE_TIMEOUT = 300.0  # seconds a connection may wait for its next request
REQUEST_TIMEOUT = 60.0  # seconds to receive a request's head and body once it has begun
MAX_CONNECTIONS = 4096  # per listener; more wait in the accept queue
ACCEPT_QUEUE = 1024  # listen backlog: a burst of connects waits here, not in SYN retries

_COMMON = (
    b"cache-control: no-cache, no-store\r\n"
    b"access-control-allow-origin: *\r\n"
    b"access-control-allow-headers: X-Requested-With\r\n"
)


def reply_head(status: bytes, ctype: bytes, length: int, close: bool) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + ctype
        + b"\r\ncontent-length: "
        + str(length).encode()
        + b"\r\n"
        + (b"connection: close\r\n" if close else b"connection: keep-alive\r\n")
        + _COMMON
        + b"\r\n"
    )


def reply_bytes(status: bytes, ctype: bytes, body: bytes, close: bool) -> bytes:
    return reply_head(status, ctype, len(body), close) + body


BIG_REPLY = 64 * 1024  # bodies this large go out as pieces after the head, never copied


def error_reply(code: int, text: str) -> bytes:
    """An HTML error reply that closes the connection."""
    body = f"<html><body><h1>HTTP {code}</h1>{_html(text)}</body></html>".encode()
    status = f"{code} {REASONS.get(code, 'Error')}".encode()
    return reply_bytes(status, b"text/html", body, True)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _not_bound(data: bytes | list | None, close: bool) -> None:
    raise RuntimeError("a handler replied before the front bound its connection")


class HostServer:
    """A simulated host's listening socket and what its requests need (host, dispatcher,
    TLS source, handlers); served by the simulator's ``Front``."""

    idle_timeout = None  # per-listener overrides of the world's / module's timeouts
    request_timeout = None

    def __init__(self, addr, host, dispatcher, tls=None):
        self.host = host
        self.dispatcher = dispatcher
        self.tls = tls  # TlsSource / FixedTls, or None: plain HTTP only
        self.cli_handler = None
        self.http_handlers = {}
        self.handler_class = Handler
        self.front = None
        self.nconns = 0
        self.full = False
        self.accepting = False
        self.closed = False
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(ACCEPT_QUEUE)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.server_address = sock.getsockname()

    def timeouts(self):
        """(idle, request) timeouts in seconds for a new connection."""
        world = getattr(self.host, "world", None)
        idle = self.idle_timeout or getattr(world, "idle_timeout", None) or IDLE_TIMEOUT
        req = self.request_timeout or getattr(world, "request_timeout", None) or REQUEST_TIMEOUT
        return float(idle), float(req)

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass  # the peer already closed it: closed either way


class Handler:
    """One complete request, served on a worker thread: ``handle(respond)`` calls
    ``respond(reply bytes or None, close)`` once (``None``: close without a reply)."""

    def __init__(self, server, conn, head, body):
        self.server = server
        self.conn = conn
        self.head = head
        self.body = body
        self.command = head.method
        self.path = head.target
        self.headers = head.headers
        self.request_version = f"HTTP/{head.version[0]}.{head.version[1]}"
        self.client_address = conn.client_address
        self.close_connection = not head.keep_alive
        # on the front's loop thread (``serving.serve_inline``): only a quick read may run,
        # anything else raises NotQuick before it has done anything
        self.inline = False
        self._decoded = None  # the call as decoded by an inline attempt, for the worker
        # respond(reply bytes, a list of pieces, or None; close)
        self._respond: Callable[[bytes | list | None, bool], None] = _not_bound

    def handle(self, respond):
        self._respond = respond
        if self.inline and (
            self.command != "POST" or self.path.startswith("/cli") or self.head.codings
        ):
            raise NotQuick
        if self.head.codings and self.body is not None:
            try:
                self.body = decode_codings(self.body, self.head.codings, MAX_BODY)
            except HttpError as e:
                return self._error(e.status, e.text)
        method = getattr(self, "do_" + self.command)
        method()

    # -- plumbing ------------------------------------------------------------------------
    def _send(self, status: bytes, ctype: bytes, body, close=False):
        """Reply with ``body``: bytes, or a list of pieces (a bulk reply as its encoder
        made it: sent in turn after the head, not joined -- and the bytes of one event
        batch shared by many waiters are never copied per connection)."""
        if close:
            self.close_connection = True
        close = self.close_connection
        if isinstance(body, list):
            size = sum(len(p) for p in body)
            if size >= BIG_REPLY:
                return self._respond([reply_head(status, ctype, size, close), *body], close)
            body = b"".join(body)  # small: one send (and one segment) for head and body
        if len(body) >= BIG_REPLY:
            return self._respond([reply_head(status, ctype, len(body), close), body], close)
        self._respond(reply_bytes(status, ctype, body, close), close)

    def _error(self, code: int, text: str):
        self.close_connection = True
        self._respond(error_reply(code, text), True)

    def _drop(self):
        """Close without a reply (the host went down meanwhile)."""
        self.close_connection = True
        self._respond(None, True)

    # -- methods -------------------------------------------------------------------------
    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/cli"):
            return self._cli()
        if self.server.host.state != "up":
            return self._drop()
        if path.startswith("/jsonrpc"):
            self._jsonrpc(self.body)
        else:
            self._xmlrpc(self.body)

    def do_OPTIONS(self):
        self._send(b"200 OK", b"text/plain", b"")

    def do_GET(self):
        path = self.path.partition("?")[0]
        if web.handles(path):  # the page of the world (xapi_sim/web), not part of XAPI
            close = self.close_connection
            return self._respond(web.reply(path, self.headers.get("if-none-match"), close), close)
        self._route()

    def _route(self):
        """A handler of the registry (``routes.py``: ``/export``, ``/import``, ...), the
        longest registered prefix of the path, as ``Http_svr`` matches; else 404."""
        route = routes.find(self.command, self.path.partition("?")[0])
        if route is None:
            return self._error(404, "not found")
        if self.server.host.state != "up" or self.server.host.pool is None:
            return self._drop()
        if route.stream and self.body is None and self.head.codings:
            return self._error(501, "transfer codings other than chunked are not served here")
        routes.serve(self, route, self._respond)

    def do_PUT(self):
        """Non-RPC HTTP handlers: this server's own (``PUT /import_metadata``, used by a
        source pool to hand a migrating VM over, as XAPI's pools do), then the registry."""
        path, _, query = self.path.partition("?")
        handler = self.server.http_handlers.get(path)
        if handler is None or (self.body is not None and self.body[257:262] == b"ustar"):
            # a tar on /import_metadata is xapi's XVA metadata, not the migration hand-over
            return self._route()
        try:
            status, ctype, out = handler(self.server.host, urllib.parse.parse_qs(query), self.body)
        except Exception as e:  # noqa: BLE001 -- never drop the connection without a reply
            log.exception("PUT %s failed", path)
            return self._error(500, f"{type(e).__name__}: {e}")
        self._send(status, ctype, out)

    def _call(self, method, params):
        """(ok, value) or (False, failure description) for one API call; the value may be
        a ``Deferred`` (a parked long-poll), whose answer comes later, from any thread."""
        try:
            return True, self.server.dispatcher.dispatch(
                self.server.host, method, params, defer_ok=True, inline=self.inline
            )
        except Failure as f:
            return False, f.description
        except NotQuick:
            raise
        except Exception as e:  # noqa: BLE001 -- a bug must still be an API error
            log.exception("%s raised", method)
            return False, internal(f"{type(e).__name__}: {e}").description

    def _xmlrpc(self, body):
        if self._decoded is not None:
            method, params = self._decoded
        else:
            try:
                method, params = self._decoded = xmlrpc.decode_call(body)
            except xmlrpc.XmlRpcParseError as e:
                return self._error(500, f"Xmlrpc.Parse_error({e})")
        ok, value = self._call(method, params)
        if ok and isinstance(value, Deferred):
            return value.start(lambda ok, v: self._xmlrpc_reply(method, ok, v))
        self._xmlrpc_reply(method, ok, value)

    def _xmlrpc_reply(self, method, ok, value):
        out: bytes | list[bytes]
        if ok and type(value) is Shared:
            # one event batch for many waiters: the whole reply, head and all, is the same
            # bytes for every waiter of that keep-alive state (XML-RPC carries no call id)
            close = self.close_connection
            whole = value.cached("xml-http-close" if close else "xml-http")
            if whole is not None:
                return self._respond(whole, close)
            parts = xmlrpc.encode_success_parts(value)
            if sum(len(p) for p in parts) < BIG_REPLY:
                whole = value.encoded(
                    "xml-http-close" if close else "xml-http",
                    lambda _v: reply_bytes(b"200 OK", b"text/xml", b"".join(parts), close),
                )
                return self._respond(whole, close)
        try:
            if ok and isinstance(value, Bare):
                out = xmlrpc.encode_bare(value.value)
            elif ok:
                out = xmlrpc.encode_success_parts(value)
            else:
                out = xmlrpc.encode_failure(value)
        except Exception as e:  # noqa: BLE001 -- a value we cannot encode is our bug
            log.exception("cannot encode the result of %s", method)
            out = xmlrpc.encode_failure(internal(f"{type(e).__name__}: {e}").description)
        self._send(b"200 OK", b"text/xml", out)

    def _jsonrpc(self, body):
        if self._decoded is not None:
            version, rid, method, params = self._decoded
        else:
            try:
                version, rid, method, params = self._decoded = jsonrpc.decode_call(body)
            except jsonrpc.JsonRpcParseError as e:
                return self._error(500, f"Jsonrpc.Malformed_method_request({e})")
        ok, value = self._call(method, params)
        if ok and isinstance(value, Deferred):
            return value.start(lambda ok, v: self._jsonrpc_reply(method, version, rid, ok, v))
        self._jsonrpc_reply(method, version, rid, ok, value)

    def _jsonrpc_reply(self, method, version, rid, ok, value):
        out: bytes | list[bytes]
        try:
            if ok:
                out = jsonrpc.encode_success_parts(
                    version, rid, value.value if isinstance(value, Bare) else value
                )
            else:
                out = jsonrpc.encode_failure(version, rid, value)
        except Exception as e:  # noqa: BLE001 -- a value we cannot encode is our bug
            log.exception("cannot encode the result of %s", method)
            out = jsonrpc.encode_failure(
                version, rid, internal(f"{type(e).__name__}: {e}").description
            )
        self._send(b"200 OK", b"application/json", out)

    def _cli(self):
        """The thin-CLI exchange is interactive: the connection is taken over (blocking, the
        idle timeout per receive) for the rest of it, then closed. No HTTP status line."""
        handler = self.server.cli_handler
        if handler is None:
            return self._error(404, "no cli")
        try:
            rfile, wfile = self.conn.takeover(self.conn.idle)
        except OSError:
            return self._drop()
        try:
            handler(self.server.host, self.body, rfile, wfile)
        except OSError:
            pass  # the client went away or stalled past the idle timeout
        finally:
            self._drop()


def bind_server(address: str, port: int, host, dispatcher, tls=None) -> HostServer:
    return HostServer((address, port), host, dispatcher, tls)


def loopback_alias_works(address: str, port: int = 0) -> bool:
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((address, port))
        s.close()
        return True
    except OSError:
        return False
