"""``xe``: the XenServer command-line client, speaking the thin-CLI protocol to ``POST /cli``.

    xe [-s SERVER] [-p PORT] [-u USER] [-pw PASSWORD | -pwf FILE] [--nossl] COMMAND [ARGS]

Mirrors xen-api Dundee ``ocaml/xe-cli/newcli.ml`` and ``options.ml``:

* Settings come from ``~/.xe`` (``key=value`` lines: server, port, username, password,
  passwordfile, nossl, debug...), then the ``XE_EXTRA_ARGS`` environment variable
  (comma-separated ``key=value``, ``\\,`` for a literal comma), then the command line; later
  ones win. Other ``key=value`` entries of ``~/.xe`` / ``XE_EXTRA_ARGS`` are passed to the
  server as command arguments. Defaults: server 127.0.0.1, user ``root``, password ``null``.
* TLS to port 443 by default, without certificate verification (xe's stunnel does not
  verify either); ``--nossl`` (or ``nossl=true``) means plain HTTP, default port 80. As in
  xe, talking to 127.0.0.1 never uses TLS ("never use SSL on-host") -- except that, when
  the server closes such a plain connection without a byte (a TLS-only listener does),
  this client retries once over TLS.
* The arguments are sent one per line as the body of ``POST /cli HTTP/1.0``, with
  ``username=`` and ``password=`` appended; the server answers with the protocol greeting
  and framed commands: Print (stdout, newline added), PrintStderr (stderr, verbatim),
  Error (``Error code:`` / ``Error parameters:`` on stderr), Prompt (a line from stdin is
  sent back), Load (a local file is sent), Exit (the exit status).
"""

from __future__ import annotations

import os
import socket
import sys

from .wire import cliproto
from .wire.ocaml import bool_of_string

PROG = "xe"


class Usage(Exception):
    pass


class ConnectFailure(Exception):
    """Nothing came back from the server."""


class LostConnection(Exception):
    pass


class Settings:
    def __init__(self):
        self.server = "127.0.0.1"
        self.username = "root"
        self.password = "null"
        self.passwordfile = ""
        self.port = None
        self.ssl = True
        self.debug = False
        self.debugonfail = False
        self.tls = False  # whether the CLI session runs over TLS (relative HTTP paths do too)
        self.exit_code = None  # set by a client-side failure of an HTTP transfer

    def port_for(self, use_ssl: bool) -> int:
        if self.port is not None:
            return self.port
        return 443 if use_ssl else 80

    # newcli.ml set_keyword: True if the key is one the client consumes
    def set_keyword(self, k, v) -> bool:
        if k == "server":
            self.server = v
        elif k == "port":
            self.port = parse_port(v)
        elif k == "username":
            self.username = v
        elif k == "password":
            self.password = v
        elif k == "passwordfile":
            self.passwordfile = v
        elif k == "nossl":
            self.ssl = not bool_of_string(v)
        elif k in ("allow-ssl-legacy", "ciphersuites"):
            pass
        elif k == "debug":
            self.debug = v in ("true", "false") and v == "true"
        elif k == "debugonfail":
            self.debugonfail = v in ("true", "false") and v == "true"
        else:
            return False
        return True


def err(text: str):
    sys.stderr.write(text)
    sys.stderr.flush()


def parse_port(x: str) -> int:
    try:
        p = int(x)
        if p < 0 or p > 65535:
            raise ValueError
        return p
    except ValueError:
        err("Port number must be an integer (0-65535)\n")
        raise Usage() from None


def usage():
    err(
        f"Usage: {PROG} <cmd> [-s server] [-p port] ([-u username] [-pw password] or "
        "[-pwf <password file>]) <other arguments>\n"
    )
    err(
        f"\nA full list of commands can be obtained by running \n\t{PROG} help -s <server> "
        "-p <port>\n"
    )


_OPTS_WITH_ARG = {
    "-s": "server",
    "-p": "port",
    "-u": "username",
    "-pw": "password",
    "-pwf": "passwordfile",
    "--ciphersuites": "ciphersuites",
    "-h": "server",
}
_FLAGS = {
    "--nossl": "nossl",
    "--allow-ssl-legacy": "allow-ssl-legacy",
    "--debug": "debug",
    "--debug-on-fail": "debugonfail",
}


def process_args(st: Settings, args: list) -> list:
    """Consume the client's own options; return the arguments for the server."""
    out = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in _OPTS_WITH_ARG and i + 1 < len(args):
            st.set_keyword(_OPTS_WITH_ARG[a], args[i + 1])
            i += 2
            continue
        if a in _FLAGS:
            st.set_keyword(_FLAGS[a], "true")
            i += 1
            continue
        if "=" in a:
            k, _, v = a.partition("=")
            if st.set_keyword(k, v):
                i += 1
                continue
        out.append(a)
        i += 1
    return out


def split_extra_args(s: str) -> list:
    """``XE_EXTRA_ARGS``: comma-separated; ``\\,`` is a literal comma; backslashes dropped;
    empty segments skipped."""
    out, cur, i = [], "", 0
    while i < len(s):
        c = s[i]
        if c == "," and not (i > 0 and s[i - 1] == "\\"):
            if cur:
                out.append(cur.replace("\\", ""))
            cur = ""
        else:
            cur += c
        i += 1
    if cur:
        out.append(cur.replace("\\", ""))
    return out


def read_rc(home=None) -> list:
    """``Options.read_rc``: ``key=value`` lines of ``~/.xe``; blank lines skipped; a line
    without ``=`` discards the whole file (with a message)."""
    home = home if home is not None else os.environ.get("HOME")
    if not home:
        return []
    try:
        with open(os.path.join(home, ".xe"), encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().split("\n")
    except OSError:
        return []
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for line in lines:
        if line == "":
            continue
        if "=" not in line:
            err("Error parsing rc file. No defaults loaded\n")
            return []
        k, _, v = line.partition("=")
        out.append((k, v))
    return out


def read_password_file(st: Settings):
    try:
        with open(st.passwordfile, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().split("\n")
    except OSError:
        err(f"Error opening password file '{st.passwordfile}'\n")
        raise SystemExit(1) from None
    if len(lines) < 2 or (len(lines) == 2 and lines[1] == ""):
        err(
            "Error: password file format: expecting username on the first line, password on "
            "the second line\n"
        )
        raise SystemExit(1)
    st.username, st.password = lines[0], lines[1]


def parse_all(argv: list, environ) -> tuple:
    st = Settings()
    rc_rest = [f"{k}={v}" for k, v in read_rc(environ.get("HOME")) if not st.set_keyword(k, v)]
    extras_rest = process_args(st, split_extra_args(environ.get("XE_EXTRA_ARGS", "")))
    helpme = any(a in ("-help", "--help") for a in argv)
    args_rest = process_args(st, argv)
    if helpme:
        raise Usage()
    if st.passwordfile:
        read_password_file(st)
    return st, args_rest + extras_rest + rc_rest


# -- transport ------------------------------------------------------------------------------


def _connect(st: Settings, use_ssl: bool):
    port = st.port_for(use_ssl)
    sock = socket.create_connection((st.server, port))
    if use_ssl:
        import ssl  # lazy: most runs are plain (127.0.0.1, --nossl); ssl costs start-up time

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=st.server)
    return sock


def _request(args: list, st: Settings) -> bytes:
    body = "\n".join(args + [f"username={st.username}", f"password={st.password}"])
    data = body.encode(cliproto.ENCODING, cliproto.ERRORS)
    head = (
        f"POST /cli HTTP/1.0\r\nUser-agent: xe-cli/Unix/{cliproto.MAJOR}.{cliproto.MINOR}"
        f"\r\noriginator: cli\r\ncontent-length: {len(data)}\r\n\r\n"
    ).encode("ascii")
    return head + data


class Channel:
    def __init__(self, sock):
        self.sock = sock

    def read(self, n):
        try:
            return self.sock.recv(n)
        except OSError:  # a reset, or a TLS error (ssl.SSLError is an OSError)
            return b""

    def write(self, data: bytes):
        self.sock.sendall(data)

    def send(self, msg):
        self.write(cliproto.frame(msg))

    def send_blob(self, data: bytes):
        """A Chunk header, the raw bytes, then End (the answer to Load and Prompt)."""
        self.send(cliproto.Chunk(len(data)))
        self.write(data)
        self.send(cliproto.End())


def open_session(st: Settings, args: list):
    """Connect, send the request, read the greeting: (channel, (major, minor))."""
    localhost = st.server == "127.0.0.1"
    attempts = [False] if (localhost or not st.ssl) else [True]
    if localhost and st.ssl:
        attempts.append(True)  # a TLS-only listener closed the plain connection
    last = ConnectFailure()  # what every attempt closed without a greeting raises
    for use_ssl in attempts:
        sock = _connect(st, use_ssl)
        st.tls = use_ssl
        ch = Channel(sock)
        try:
            ch.write(_request(args, st))
        except OSError:
            pass  # the server closed early; its answer (or the missing one) is read next
        first = cliproto.read_exact(ch.read, len(cliproto.PREFIX))
        if not first:
            sock.close()
            last = ConnectFailure()
            continue
        if first != cliproto.PREFIX:
            raise cliproto.NotACliServer(first)
        rest = cliproto.read_exact(ch.read, 8)
        if len(rest) < 8:
            raise LostConnection()
        return ch, cliproto.parse_greeting(first + rest)
    raise last


def main_loop(st: Settings, ch: Channel, version) -> int:
    major, minor = version
    if major != cliproto.MAJOR:
        raise ProtocolMismatch(
            f"Server has protocol version {major}.{minor}. Client has "
            f"{cliproto.MAJOR}.{cliproto.MINOR}"
        )
    ch.write(cliproto.greeting())
    out = sys.stdout.buffer
    while True:
        try:
            m = cliproto.read_message(ch.read)
        except (EOFError, cliproto.ProtocolError):
            raise LostConnection() from None
        if isinstance(m, cliproto.Print):
            out.write(m.text.encode(cliproto.ENCODING, cliproto.ERRORS) + b"\n")
            out.flush()
        elif isinstance(m, cliproto.PrintStderr):
            sys.stdout.flush()
            sys.stderr.buffer.write(m.text.encode(cliproto.ENCODING, cliproto.ERRORS))
            sys.stderr.flush()
        elif isinstance(m, cliproto.Debug):
            if st.debug:
                err(f"debug from server: {m.text}\n")
        elif isinstance(m, cliproto.Load):
            try:
                with open(m.filename, "rb") as fh:
                    data = fh.read()
            except OSError:
                ch.send(cliproto.FAILED)
                continue
            ch.send(cliproto.OK)
            ch.send_blob(data)
        elif isinstance(m, cliproto.Prompt):
            line = sys.stdin.buffer.readline()
            if not line:
                raise LostConnection()
            if line.endswith(b"\n"):
                line = line[:-1]
            ch.send_blob(line)
        elif isinstance(m, cliproto.Error):
            sys.stdout.flush()
            err(f"Error code: {m.code}\n")
            err(f"Error parameters: {', '.join(m.params)}\n")
        elif isinstance(m, cliproto.Exit):
            sys.stdout.flush()
            return st.exit_code if st.exit_code is not None else m.code
        elif isinstance(m, (cliproto.HttpGet, cliproto.HttpPut)):
            put = isinstance(m, cliproto.HttpPut)
            if _http_transfer(st, ch, m.filename, m.path, put) is not None:
                st.exit_code = 1
        elif isinstance(m, cliproto.HttpConnect):
            # Not used by any command this simulator serves; tell the server we cannot.
            ch.send(cliproto.FAILED)
        else:
            raise UnexpectedMessage(m)


class ClientSideError(Exception):
    pass


def _parse_url(st: Settings, url: str):
    """``newcli.ml`` ``parse_url``: (tls, host, port, path); a bare path goes to the CLI's
    own server."""
    for scheme, tls, default in (("https://", True, 443), ("http://", False, 80)):
        if url.startswith(scheme):
            rest = url[len(scheme) :]
            hostport, slash, path = rest.partition("/")
            host, colon, port = hostport.rpartition(":")
            if not colon or not port.isdigit():
                host, port = hostport, str(default)
            return tls, host.strip("[]"), int(port), slash + path
    return st.tls, st.server, st.port_for(st.tls), url


def _open_http(st: Settings, url: str):
    tls, host, port, path = _parse_url(st, url)
    sock = socket.create_connection((host, port))
    if tls:
        import ssl  # lazy, as in _connect

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=host)
    return sock, path


def _read_head(rf) -> tuple[int, dict]:
    line = rf.readline()
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"not an HTTP response: {line!r}")
    headers = {}
    while True:
        h = rf.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


def _http_transfer(st: Settings, ch: Channel, filename: str, url: str, put: bool):
    """``newcli.ml`` ``HttpPut`` / ``HttpGet``: copy the file to the URL (a Content-length
    when it is a regular file; the server's status is read before the body is sent) or
    the URL's body to the file (created exclusively, mode 0600; "" is stdout), following
    302s; then OK, or Failed (and, for an error on this side, exit status 1)."""
    try:
        for _ in range(10):
            if put and not os.path.exists(filename):
                raise ClientSideError(f"file '{filename}' does not exist")
            sock, path = _open_http(st, url)
            try:
                rf = sock.makefile("rb")
                if put:
                    length = ""
                    if os.path.isfile(filename):
                        length = f"\r\nContent-length: {os.path.getsize(filename)}"
                    sock.sendall(f"PUT {path} HTTP/1.0{length}\r\n\r\n".encode())
                else:
                    sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                status, headers = _read_head(rf)
                if status == 302 and "location" in headers:
                    url = headers["location"]
                    continue
                if status != 200:
                    raise OSError(f"Unhandled response code {status}")
                if put:
                    with open(filename, "rb") as fh:
                        while data := fh.read(1 << 20):
                            sock.sendall(data)
                else:
                    try:
                        if filename == "":
                            out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
                        else:
                            fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                            out = os.fdopen(fd, "wb")
                    except OSError as e:
                        raise ClientSideError(str(e)) from None
                    with out:
                        while data := rf.read(1 << 20):
                            out.write(data)
                ch.send(cliproto.OK)
                return None
            finally:
                sock.close()
        raise OSError("too many redirects")
    except ClientSideError as e:
        ch.send(cliproto.FAILED)
        err(f"Operation failed. Error: {e}\n")
        return 1
    except OSError as e:
        if st.debug:
            err(f"Http{'Put' if put else 'Get'} failure: {e}\n")
        ch.send(cliproto.FAILED)  # the server finds out what went wrong and says so
        return None


class ProtocolMismatch(Exception):
    pass


class UnexpectedMessage(Exception):
    pass


def main(argv=None, environ=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    status = 1
    st = Settings()
    try:
        if "-version" in argv:
            print(f"ThinCLI protocol: {cliproto.MAJOR}.{cliproto.MINOR}")
            return 0
        st, args = parse_all(argv, environ)
        if not args:
            raise Usage()
        ch, version = open_session(st, args)
        try:
            status = main_loop(st, ch, version)
        finally:
            try:
                ch.sock.close()
            except OSError:
                pass  # the connection is already gone; the exit status is decided
    except Usage:
        status = 0
        usage()
    except cliproto.NotACliServer:
        err("Failed to contact a running management agent.\n")
        err("Try specifying a server name and port.\n")
        usage()
    except ProtocolMismatch as e:
        err(f"Protocol version mismatch: {e}.\n")
        err("Try specifying a server name and port on the command-line.\n")
        usage()
    except BrokenPipeError:  # stdout closed early (xe ... | head)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass  # stdout is gone: nothing more can be printed anyway
    except socket.gaierror:
        err(f"Host '{st.server}' not found.\n")
    except ConnectFailure:
        err("Unable to contact server. Please check server and port settings.\n")
    except LostConnection:
        err("Lost connection to the server.\n")
    except UnexpectedMessage as e:
        err(f"Unexpected message from server: {e.args[0]!r}")
    except OSError as e:
        if type(e).__module__ == "ssl" or type(e).__name__.startswith("SSL"):
            err(f"Error: {getattr(e, 'reason', None) or e} (calling SSL connect)\n")
            return status
        err(f"Error: {e.strerror or e} (calling connect )\n")
    except ValueError as e:  # bool_of_string on nossl=...
        err(f'Unhandled exception\nInvalid_argument("{e}")\n')
    except KeyboardInterrupt:
        status = 1
    return status


def run():  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    run()
