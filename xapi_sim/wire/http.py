"""The HTTP shell: one threaded listener per simulated host.

Mirrors ``ocaml/libs/http-lib/http_svr.ml`` as clients see it: XML-RPC on every POST path but
``/jsonrpc`` (longest-prefix match, so ``/``, ``/RPC2``, ``/json`` and XO's ``/xmlrpc`` all
work), JSON-RPC on ``/jsonrpc``, the thin-CLI protocol on ``/cli``; HTTP 200 for every API
result, HTTP 500 with ``connection: close`` for unparseable bodies; lower-case headers;
keep-alive unless the client asks to close. Bodies above ``MAX_BODY`` are refused with 413
without being read.

Slow and stalled clients cannot hold a connection thread for long: a connection waiting for
its next request is closed after the idle timeout (``IDLE_TIMEOUT``), and once a request has
begun its head and body must arrive within the request timeout (``REQUEST_TIMEOUT``), however
slowly the bytes trickle in. Both can be set per world (``world.idle_timeout``,
``world.request_timeout``) or per listener (``HostServer.idle_timeout``/``request_timeout``);
they are read when a connection is accepted. At most ``MAX_CONNECTIONS`` connections are
served at once per listener; more wait in the accept queue.
"""
from __future__ import annotations

import io
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import Failure, internal
from . import jsonrpc, xmlrpc

MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT = 300.0       # seconds a connection may wait for its next request
REQUEST_TIMEOUT = 60.0     # seconds to receive a request's head and body once it has begun
MAX_CONNECTIONS = 512

_COMMON = (b"cache-control: no-cache, no-store\r\n"
           b"access-control-allow-origin: *\r\n"
           b"access-control-allow-headers: X-Requested-With\r\n")


class HostServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    idle_timeout = None        # per-listener overrides of the world's / module's timeouts
    request_timeout = None

    def __init__(self, addr, host, dispatcher, ssl_context=None):
        self.host = host
        self.dispatcher = dispatcher
        self.ssl_context = ssl_context
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(addr, Handler)

    def timeouts(self):
        """(idle, request) timeouts in seconds for a new connection."""
        world = getattr(self.host, "world", None)
        idle = self.idle_timeout or getattr(world, "idle_timeout", None) or IDLE_TIMEOUT
        req = self.request_timeout or getattr(world, "request_timeout", None) or \
            REQUEST_TIMEOUT
        return float(idle), float(req)

    def server_bind(self):
        # HTTPServer.server_bind resolves its own name with getfqdn (a slow reverse lookup
        # per listener); the name is never used here.
        import socketserver
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def get_request(self):
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request, client_address):
        # Bound the number of connection threads: a flood waits in the accept queue.
        if not self.slots.acquire(timeout=30):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            if self.ssl_context is not None:
                request.settimeout(self.timeouts()[1])
                request.do_handshake()
            super().process_request_thread(request, client_address)
        except (OSError, ssl.SSLError):
            self.shutdown_request(request)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        pass  # a client that vanished is not our error; never print tracebacks


class _DeadlineReader(io.RawIOBase):
    """The socket as seen by ``rfile``: each receive waits at most the idle timeout, and
    while a request is being read, no longer than what is left of its deadline."""

    def __init__(self, sock, idle):
        self.sock = sock
        self.idle = idle
        self.deadline = None

    def readable(self):
        return True

    def readinto(self, b):
        wait = self.idle
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request not received in time")
            wait = min(wait, left)
        self.sock.settimeout(wait)
        return self.sock.recv_into(b)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xapi"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        self.timeout, self.request_timeout = self.server.timeouts()
        super().setup()
        self.rfile.close()          # the makefile() reader: replaced by a deadline-aware one
        self._reader = _DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self):
        # wait (idle timeout) for the first byte of the next request, then give the whole
        # request -- head and body -- REQUEST_TIMEOUT to arrive
        self._reader.deadline = None
        try:
            if not self.rfile.peek(1):
                self.close_connection = True
                return
        except OSError:     # idle timeout, reset
            self.close_connection = True
            return
        self._reader.deadline = time.monotonic() + self.request_timeout
        try:
            super().handle_one_request()
        except OSError:     # timed out or reset while reading the head
            self.close_connection = True

    def _request_read(self):
        """The request is in: replies and long calls are not bound by its deadline."""
        self._reader.deadline = None
        try:
            self.connection.settimeout(self.timeout)
        except OSError:
            pass

    # -- plumbing ------------------------------------------------------------------------
    def _send(self, status: bytes, ctype: bytes, body: bytes, close=False):
        if self._reader.deadline is not None:
            self._request_read()
        if close:
            self.close_connection = True
        head = (b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype +
                b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n" +
                (b"connection: close\r\n" if self.close_connection else
                 b"connection: keep-alive\r\n") + _COMMON + b"\r\n")
        try:
            self.wfile.write(head + body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _error(self, code: int, text: str):
        body = f"<html><body><h1>HTTP {code}</h1>{_html(text)}</body></html>".encode()
        reason = {400: b"Bad Request", 404: b"Not Found", 411: b"Length Required",
                  413: b"Request Entity Too Large", 500: b"Internal Server Error"}[code]
        self._send(str(code).encode() + b" " + reason, b"text/html", body, close=True)

    def _read_body(self):
        te = self.headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            return self._read_chunked()
        length = self.headers.get("content-length")
        if length is None:
            self._error(411, "content-length required")
            return None
        try:
            n = int(length)
        except ValueError:
            self._error(400, "bad content-length")
            return None
        if n < 0:
            self._error(400, "bad content-length")
            return None
        if n > MAX_BODY:
            self._error(413, f"body of {n} bytes exceeds the limit of {MAX_BODY}")
            return None
        try:
            data = self.rfile.read(n)
        except OSError:     # timed out or reset mid-body
            self.close_connection = True
            return None
        if len(data) != n:
            self.close_connection = True
            return None
        self._request_read()
        return data

    def _read_chunked(self):
        try:
            body = self._read_chunks()
        except OSError:     # timed out or reset mid-body
            self.close_connection = True
            return None
        if body is not None:
            self._request_read()
        return body

    def _read_chunks(self):
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self._error(400, "bad chunk")
                return None
            if size < 0:
                self._error(400, "bad chunk")
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                self._error(413, f"body exceeds the limit of {MAX_BODY}")
                return None
            part = self.rfile.read(size)
            if len(part) != size:
                self.close_connection = True
                return None
            parts.append(part)
            self.rfile.readline(1024)

    # -- methods -------------------------------------------------------------------------
    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/cli"):
            return self._cli()
        body = self._read_body()
        if body is None:
            return
        host = self.server.host
        if host.state != "up":
            self.close_connection = True
            return
        if path.startswith("/jsonrpc"):
            self._jsonrpc(body)
        else:
            self._xmlrpc(body)

    def do_OPTIONS(self):
        self._send(b"200 OK", b"text/plain", b"")

    def do_GET(self):
        self._error(404, "not found")

    def do_PUT(self):
        """Non-RPC HTTP handlers the server registers (``PUT /import_metadata``, used by a
        source pool to hand a migrating VM over, as XAPI's pools do)."""
        path, _, query = self.path.partition("?")
        handler = getattr(self.server, "http_handlers", {}).get(path)
        if handler is None:
            return self._error(404, "not found")
        body = self._read_body()
        if body is None:
            return
        try:
            status, ctype, out = handler(self.server.host, urllib.parse.parse_qs(query), body)
        except Exception as e:  # noqa: BLE001 -- never drop the connection without a reply
            return self._error(500, f"{type(e).__name__}: {e}")
        self._send(status, ctype, out)

    def _call(self, method, params):
        """(ok, value) or (False, failure description) for one API call."""
        try:
            return True, self.server.dispatcher.dispatch(self.server.host, method, params)
        except Failure as f:
            return False, f.description
        except Exception as e:  # noqa: BLE001 -- a bug must still be an API error
            return False, internal(f"{type(e).__name__}: {e}").description

    def _xmlrpc(self, body):
        try:
            method, params = xmlrpc.decode_call(body)
        except xmlrpc.XmlRpcParseError as e:
            return self._error(500, f"Xmlrpc.Parse_error({e})")
        ok, value = self._call(method, params)
        from ..dispatch import Bare
        try:
            if ok and isinstance(value, Bare):
                out = xmlrpc.encode_bare(value.value)
            elif ok:
                out = xmlrpc.encode_success(value)
            else:
                out = xmlrpc.encode_failure(value)
        except Exception as e:  # noqa: BLE001 -- a value we cannot encode is our bug
            out = xmlrpc.encode_failure(internal(f"{type(e).__name__}: {e}").description)
        self._send(b"200 OK", b"text/xml", out)

    def _jsonrpc(self, body):
        try:
            version, rid, method, params = jsonrpc.decode_call(body)
        except jsonrpc.JsonRpcParseError as e:
            return self._error(500, f"Jsonrpc.Malformed_method_request({e})")
        ok, value = self._call(method, params)
        from ..dispatch import Bare
        try:
            if ok:
                out = jsonrpc.encode_success(version, rid,
                                             value.value if isinstance(value, Bare) else value)
            else:
                out = jsonrpc.encode_failure(version, rid, value)
        except Exception as e:  # noqa: BLE001 -- a value we cannot encode is our bug
            out = jsonrpc.encode_failure(version, rid,
                                         internal(f"{type(e).__name__}: {e}").description)
        self._send(b"200 OK", b"application/json", out)

    def _cli(self):
        handler = getattr(self.server, "cli_handler", None)
        body = self._read_body()
        if body is None:
            return
        self._request_read()    # the thin-CLI exchange continues interactively
        self.close_connection = True
        if handler is None:
            return self._error(404, "no cli")
        handler(self.server.host, body, self.rfile, self.wfile)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def bind_server(address: str, port: int, host, dispatcher, ssl_context=None) -> HostServer:
    return HostServer((address, port), host, dispatcher, ssl_context)


def loopback_alias_works(address: str, port: int = 0) -> bool:
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((address, port))
        s.close()
        return True
    except OSError:
        return False
