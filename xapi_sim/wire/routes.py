"""XAPI's non-RPC HTTP handlers: one registry and the rules every handler shares.

Register a handler with one line, in its own module::

    @handlers.get("/rrd_updates")
    def rrd_updates(req): ...

``req`` is a :class:`Request`. Paths match as ``Http_svr`` matches them: the longest
registered prefix of the request's path (so ``/export_raw_vdi`` and ``/export`` coexist).
A ``stream=True`` handler is called as soon as the request head is in: it reads the body
incrementally (``req.body``: Content-Length or chunked, any size) and writes its reply in
pieces (``req.send_head`` then ``req.write``), with memory bounded whatever the size. Any
other handler sees a body of at most ``http.MAX_BODY`` bytes, read by the front.

The shared rules, from xen-api ``dundee-lcm`` ``ocaml/xapi/xapi_http.ml`` and
``ocaml/libs/http-lib/http_svr.ml``:

- **Authentication** (``assert_credentials_ok``, ``req.authenticate(realm)``): a
  ``session_id`` in a cookie or the query (cookie pairs first) that exists in the pool's
  database; else ``pool_secret`` (never valid here); else ``Authorization: Basic``, checked
  by a login on the master. Failing: 401 with ``WWW-Authenticate: Basic realm="<realm>"``; a
  malformed ``Authorization`` header: 500 ``Unknown authorization header``.
- **Tasks** (``with_context``, ``with req.context(label) as task``): the client's
  ``task_id`` (cookie or query) is the handler's task -- progress and result set on it,
  completed ``success`` (progress 1) or ``failure`` with the error when the handler ends
  (``exec_with_forwarded_task``); without one a task named ``label`` exists while the
  handler runs and is destroyed after it (``exec_with_new_task``). An unauthenticated
  request fails the task with ``SESSION_AUTHENTICATION_FAILED`` and answers 401.
- **Redirects** (``Importexport.return_302_redirect``, ``req.redirect(host)``): ``302
  Found`` with ``Location:`` the same path and query on the host that holds the data.
- **Errors** (``Http_svr.handle_one``): :class:`Forbidden` 403, :class:`Missing` 404,
  :class:`BadRequest` 400, a ``Failure`` or any other exception 500 with its description as
  "Additional information" (after a reply head has gone out, the page follows it on the
  wire, as xapi's does). Every handler closes the connection after its reply unless it says
  otherwise (``req.close = False``, only once its body was read whole).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from .. import sessions
from ..errors import Failure, internal
from ..tasks import Tasks
from .httpparse import ChunkedDecoder, HttpError

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024  # what one read of a streamed body asks the socket for at most
PROGRESS_INTERVAL = 10.0  # seconds between task progress updates (stream_vdi.ml)


class Route:
    __slots__ = ("method", "path", "fn", "stream")

    def __init__(self, method: str, path: str, fn: Callable[[Request], None], stream: bool):
        self.method, self.path, self.fn, self.stream = method, path, fn, stream


ROUTES: dict[tuple[str, str], Route] = {}


def route(method: str, path: str, *, stream: bool = False):
    """Register ``fn(req)`` for ``method`` on ``path`` (and the paths it prefixes)."""

    def deco(fn):
        ROUTES[(method, path)] = Route(method, path, fn, stream)
        return fn

    return deco


def get(path: str, *, stream: bool = False):
    return route("GET", path, stream=stream)


def put(path: str, *, stream: bool = False):
    return route("PUT", path, stream=stream)


def find(method: str, path: str) -> Route | None:
    """``Http_svr``'s longest-prefix match among the handlers of ``method``."""
    best = None
    for (m, p), r in ROUTES.items():
        if m == method and path.startswith(p) and (best is None or len(p) > len(best.path)):
            best = r
    return best


# -- errors --------------------------------------------------------------------------------


class Unauthorised(Exception):
    def __init__(self, realm: str):
        super().__init__(realm)
        self.realm = realm


class Forbidden(Exception):
    pass


class Missing(Exception):
    pass


class BadRequest(Exception):
    pass


class UnknownAuth(Exception):
    """``Http.UnknownAuth``: an Authorization header that is not ``Basic user:password``."""


class ClientGone(Exception):
    """The client closed or stalled past the idle timeout: nothing more can be said."""


_ESCAPES = {"<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;", "&": "&amp;"}


def escape(text: str) -> str:
    """``Http_svr.escape``."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def page(status: str, body: str, extra: str = "") -> bytes:
    """``Http_svr.response_error_html``: an HTML page that closes the connection."""
    data = body.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/html\r\nconnection: close\r\n"
        f"cache-control: no-cache, no-store\r\n{extra}content-length: {len(data)}\r\n\r\n"
    ).encode() + data


def page_401(realm: str) -> bytes:
    return page(
        "401 Unauthorised",
        "<html><body><h1>HTTP 401 unauthorised</h1>Please check your "
        "credentials and retry.</body></html>",
        f'www-authenticate: Basic realm="{realm}"\r\n',
    )


def page_403() -> bytes:
    return page(
        "403 Forbidden",
        "<html><body><h1>HTTP 403 forbidden</h1>Access to the requested resource "
        "is forbidden.</body></html>",
    )


def page_400() -> bytes:
    return page(
        "400 Bad Request",
        "<html><body><h1>HTTP 400 bad request</h1>The HTTP request was malformed. "
        "Please correct and retry.</body></html>",
    )


def page_404() -> bytes:
    return (
        b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncache-control: no-cache, no-store\r\n"
        b"content-length: 0\r\n\r\n"
    )


def page_500(extra: str) -> bytes:
    """``Http_svr.response_internal_error`` with its "Additional information"."""
    return page(
        "500 Internal Error",
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected "
        "error occurred; please wait a while and try again. If the problem "
        "persists, please contact your support representative.<h1> Additional "
        f"information </h1>{extra}</body></html>",
    )


def describe(e: BaseException) -> str:
    """``Printexc.to_string`` of what a handler raised, as xapi prints it."""
    if isinstance(e, Failure):
        return f"Server_error({e.description[0]}, [ {'; '.join(e.description[1:])} ])"
    return f"{type(e).__name__}: {e}"


# -- credentials ---------------------------------------------------------------------------


def http_params(headers, query: str) -> list[tuple[str, str]]:
    """``req.cookie @ req.query``: cookie pairs first, so a cookie's ``session_id`` wins."""
    out = []
    for value in headers.all("cookie"):
        for part in value.split(";"):
            k, eq, v = part.strip().partition("=")
            if eq:
                out.append((k, v))
    out.extend(urllib.parse.parse_qsl(query, keep_blank_values=True))
    return out


def basic(value: str) -> tuple[str, str]:
    """``Http.authorization_of_string``: ``Basic`` and base64 of exactly one ``:``."""
    if not value.startswith("Basic "):
        raise UnknownAuth(value)
    try:
        text = base64.b64decode(value[len("Basic ") :], validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise UnknownAuth(value) from None
    parts = text.split(":")
    if len(parts) != 2:
        raise UnknownAuth(value)
    return parts[0], parts[1]


def credentials_ok(host, headers, params: list[tuple[str, str]]) -> bool:
    """``Xapi_http.assert_credentials_ok``: a ``session_id`` that exists in the pool's
    database (its ``last_active`` refreshed, as ``with_context`` does); else a
    ``pool_secret`` (none is ever valid here); else ``Authorization: Basic``, checked by a
    login on the master (a failure waits like ``login_with_password``). Only root logs in
    to the simulator, so the RBAC check always passes. Raises :class:`UnknownAuth`."""
    world, db = host.world, host.db
    keys = [k for k, _ in params]
    if "session_id" in keys:
        ref = next(v for k, v in params if k == "session_id")
        row = db.tables["session"].get(ref)
        if row is None:
            return False
        sessions.touch(world, db, ref, row)
        return True
    if "pool_secret" in keys:
        return False
    auth = headers.get("authorization")
    if auth is None:
        return False
    user, pwd = basic(auth)
    try:
        sessions.authenticate(world, host.pool.master, user, pwd)
    except Failure:
        return False
    return True


class HandlerTask:
    """The task of ``Xapi_http.with_context`` (see the module docstring)."""

    def __init__(self, host, params: list[tuple[str, str]], label: str):
        self.world, self.db, self.pool = host.world, host.db, host.pool
        self.label = label
        self.ref = next((v for k, v in params if k == "task_id"), None)
        self.own = self.ref is None
        self.failure: Failure | None = None
        self.result = ""
        self._last = 0.0

    def fail(self, failure: Failure) -> None:
        """``TaskHelper.failed``: the task fails now, before the handler answers -- a client
        reading the task as soon as it has the answer sees the failure."""
        self.failure = failure
        db = self.db
        with db.lock:
            row = db.tables["task"].get(self.ref)
            if row is not None and row["status"] == "pending":
                Tasks.of(self.world).complete(db, self.ref, failure=failure)

    def _update(self, **fields) -> None:
        db = self.db
        with db.lock:
            row = db.tables["task"].get(self.ref)
            if row is not None and row["status"] == "pending":
                db.update("task", self.ref, **fields)

    def progress(self, fraction: float, force: bool = False) -> None:
        """``TaskHelper.set_progress`` (at most every ``PROGRESS_INTERVAL`` unless forced)."""
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self._update(progress=max(0.0, min(1.0, fraction)))

    def other_config(self, key: str, value: str) -> None:
        """``TaskHelper.add_to_other_config``."""
        db = self.db
        with db.lock:
            row = db.tables["task"].get(self.ref)
            if row is not None:
                db.update("task", self.ref, other_config={**row["other_config"], key: value})

    def __enter__(self):
        if self.own:
            self.ref = Tasks.of(self.world).create(self, self.label)
        return self

    def __exit__(self, et, ev, tb):
        failure = self.failure
        if et is not None and failure is None and issubclass(et, Unauthorised):
            failure = Failure("SESSION_AUTHENTICATION_FAILED")  # with_context's 401
        if et is not None and failure is None and not issubclass(et, ClientGone):
            failure = ev if isinstance(ev, Failure) else internal(describe(ev))
        if et is not None and issubclass(et, ClientGone) and failure is None:
            failure = Failure("CLIENT_ERROR", str(ev))
        db = self.db
        try:
            with db.lock:
                row = db.tables["task"].get(self.ref)
                if row is not None and failure is None and row["status"] == "pending":
                    db.update(
                        "task",
                        self.ref,
                        allowed_operations=[],
                        progress=1.0,
                        finished=self.world.clock.now_ts(),
                        status="success",
                        result=self.result,
                    )
                elif row is not None and row["status"] == "pending":
                    Tasks.of(self.world).complete(db, self.ref, failure=failure)
                if self.own and db.exists("task", self.ref):
                    db.remove("task", self.ref)
        except Exception:  # noqa: BLE001 -- the reply is more important than the task
            log.exception("could not end the task of an HTTP handler")
        return False


# -- the request ---------------------------------------------------------------------------


class Body:
    """A request body read incrementally: ``read(n)`` returns up to ``n`` bytes, ``b""``
    at the end. From bytes the front already read, or from the taken-over connection
    (Content-Length or chunked; ``100 Continue`` sent on the first read when asked for)."""

    def __init__(self, req: Request, data: bytes | None):
        self.req = req
        self.data = memoryview(data) if data is not None else None
        head = req.head
        self.left = head.length if data is None and not head.chunked else None
        self.decoder = ChunkedDecoder(1 << 62) if data is None and head.chunked else None
        self.pending: list[bytes] = []
        self.done = data is None and not head.chunked and not head.length
        self.read_bytes = 0

    def read(self, n: int = READ_SIZE) -> bytes:
        if self.data is not None:
            out = bytes(self.data[:n])
            self.data = self.data[n:]
            self.read_bytes += len(out)
            return out
        if self.done and not self.pending:
            return b""
        self.req._continue()
        if self.decoder is not None:
            out = self._chunked(n)
        else:
            assert self.left is not None
            out = self.req._recv(min(n, self.left))
            if not out:
                raise ClientGone("the request body ended early")
            self.left -= len(out)
            self.done = self.left == 0
        self.read_bytes += len(out)
        return out

    def _chunked(self, n: int) -> bytes:
        assert self.decoder is not None
        conn = self.req.conn
        while not self.pending:
            try:
                finished = self.decoder.feed(conn.buf)
            except HttpError as e:
                raise BadRequest(e.text) from None
            self.pending.extend(self.decoder.parts)
            self.decoder.parts.clear()
            if finished:
                self.done = True
                break
            if not self.pending:
                data = self.req._recv(READ_SIZE)
                if not data:
                    raise ClientGone("the request body ended early")
                conn.buf += data
        if not self.pending:
            return b""
        first = self.pending[0]
        if len(first) <= n:
            self.pending.pop(0)
            return first
        self.pending[0] = first[n:]
        return first[:n]

    def readexactly(self, n: int) -> bytes:
        """``n`` bytes, or fewer only at the end of the body."""
        parts, got = [], 0
        while got < n:
            piece = self.read(n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    @property
    def finished(self) -> bool:
        if self.data is not None:
            return not self.data
        return self.done and not self.pending


class Request:
    """One request to a registered handler, on a worker thread."""

    def __init__(self, handler, route: Route):
        self.route = route
        self.server = handler.server
        self.host = handler.server.host
        self.world = self.host.world
        self.conn = handler.conn
        self.head = handler.head
        self.method = handler.command
        self.path, _, self.query_string = handler.path.partition("?")
        self.headers = handler.headers
        self.query = urllib.parse.parse_qsl(self.query_string, keep_blank_values=True)
        self.params = http_params(self.headers, self.query_string)
        self.tls = bool(getattr(self.conn, "tls", False))
        self.close = True  # xapi's handlers close after their reply
        self.head_sent = False
        self._taken = False
        self._continued = not self.head.expect_continue
        self.body = Body(self, handler.body)

    # -- parameters ------------------------------------------------------------------------
    def q(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` in the query string."""
        return next((v for k, v in self.query if k == key), default)

    def param(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` in the cookies then the query (``cookie @ query``)."""
        return next((v for k, v in self.params if k == key), default)

    def flag(self, key: str) -> bool:
        """``Import.find_query_flag``: the query's ``key`` is exactly ``true``."""
        return self.q(key) == "true"

    # -- the rules ---------------------------------------------------------------------------
    def authenticate(self, realm: str) -> None:
        """``assert_credentials_ok``: :class:`Unauthorised` (401) unless the credentials
        are good."""
        if not credentials_ok(self.host, self.headers, self.params):
            raise Unauthorised(realm)

    def context(self, label: str) -> HandlerTask:
        """``with_context``: the handler's task (see the module docstring)."""
        return HandlerTask(self.host, self.params, label)

    def redirect(self, host, scheme: str | None = None) -> None:
        """``return_302_redirect`` to ``host``: same path and query, the connection's
        scheme unless given (``export.ml`` and ``import.ml`` always say ``https``)."""
        scheme = scheme or ("https" if self.tls else "http")
        query = "&".join(f"{k}={v}" for k, v in self.query)
        url = f"{scheme}://{host.address_for_url}:{host.port}{self.path}?{query}"
        self.send_head("302 Found", [("location", url)])

    # -- writing -----------------------------------------------------------------------------
    def _take(self):
        if not self._taken:
            self._taken = True
            self.conn.takeover(self.conn.idle)

    def _sendall(self, data) -> None:
        self._take()
        try:
            self.conn.sock.sendall(data)
        except (OSError, ValueError) as e:
            raise ClientGone(f"{type(e).__name__}: {e}") from None

    def _recv(self, n: int) -> bytes:
        conn = self.conn
        if conn.buf:
            out = bytes(conn.buf[:n])
            del conn.buf[:n]
            return out
        self._take()
        try:
            return conn.sock.recv(n)
        except (OSError, ValueError) as e:
            raise ClientGone(f"{type(e).__name__}: {e}") from None

    def _continue(self) -> None:
        if not self._continued:
            self._continued = True
            self._sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send_head(self, status: str, headers=(), length=None) -> None:
        """The status line and headers (``Connection: close`` unless ``self.close`` is
        False and a ``length`` frames the reply)."""
        if length is None:
            self.close = True
        lines = [f"HTTP/1.1 {status}"]
        lines.append("connection: close" if self.close else "connection: keep-alive")
        lines.append("cache-control: no-cache, no-store")
        if length is not None:
            lines.append(f"content-length: {length}")
        lines.extend(f"{k}: {v}" for k, v in headers)
        self._sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.head_sent = True

    def write(self, data) -> None:
        if data:
            self._sendall(data)

    def reply(self, status: str, ctype: str, body: bytes, headers=()) -> None:
        """A whole reply with its length."""
        self.send_head(status, [("content-type", ctype), *headers], length=len(body))
        self.write(body)

    def raw(self, data: bytes) -> None:
        """Prepared reply bytes (an error page)."""
        self.close = True
        self._sendall(data)
        self.head_sent = True


def serve(handler, route: Route, respond: Callable[[Any, bool], None]) -> None:
    """Run ``route``'s handler for the front's ``handler`` and answer as ``Http_svr``
    does (see the module docstring); then give the connection back (keep-alive only when
    the handler said so and its body was read whole)."""
    req = Request(handler, route)
    try:
        try:
            route.fn(req)
        except Unauthorised as e:
            _error_page(req, page_401(e.realm))
        except UnknownAuth as e:
            _error_page(req, page_500(escape(f'Failure("Unknown authorization header: {e}")')))
        except Forbidden:
            _error_page(req, page_403())
        except BadRequest:
            _error_page(req, page_400())
        except Missing:
            _error_page(req, page_404())
        except Failure as f:
            _error_page(req, page_500(escape(describe(f))))
        except ClientGone:
            req.close = True
        except Exception as e:  # noqa: BLE001 -- Http_svr answers 500 to anything
            log.exception("%s %s failed", req.method, req.path)
            _error_page(req, page_500(escape(describe(e))))
    except ClientGone:
        req.close = True
    close = req.close or not req.body.finished or not req.head_sent
    if req._taken:
        try:
            req.conn.sock.setblocking(False)
        except OSError:
            close = True
    respond(None if close else b"", close)


def _error_page(req: Request, data: bytes) -> None:
    req.close = True
    req._sendall(data)
