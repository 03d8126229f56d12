"""The server half of the thin-CLI protocol: ``POST /cli`` on every simulated host.

Mirrors xen-api Dundee ``xapi_cli.ml`` (``handler``, ``exec_command``, ``do_rpcs``,
``exception_handler``) and ``cli_frontend.ml`` (``parse_commandline``):

1. The HTTP layer has read the request body (the command line, one argument per line,
   ``username=`` and ``password=`` last). No HTTP status line is sent: the server writes its
   greeting at once, reads the client's, and major versions must match.
2. The arguments are parsed (``key=value``; ``--flag`` -> ``flag=true``; ``-u``/``-pw``/
   ``-s``/``-p``/``-h`` switches take the next argument). ``help`` runs without logging in;
   any other command is looked up (``Unknown command``), its required parameters checked
   (``Required parameter not found``), then the server logs in with
   ``session.login_with_password(u, p, "2.5", "cli")`` (unless the body starts with
   ``session_id=``), runs the command through the dispatcher, prints, logs out.
3. Every command ends with an Exit: 0 on success, 1 after an error printed as XAPI does.
"""
from __future__ import annotations

import threading

from . import cli_commands as C
from . import cli_render as R
from .wire import cliproto
from .errors import ERRORS, Failure

API_VERSION = "2.5"   # Xapi_globs.api_version_string of XenServer 7.0


class Connection:
    """The CLI connection: framed commands out, framed responses and raw blobs in."""

    def __init__(self, rfile, wfile):
        self.rfile = rfile
        self.wfile = wfile
        self.lock = threading.Lock()
        self.broken = False

    def write(self, data: bytes):
        if self.broken:
            return
        try:
            with self.lock:
                self.wfile.write(data)
                flush = getattr(self.wfile, "flush", None)
                if flush:
                    flush()
        except (OSError, ValueError):
            self.broken = True

    def send(self, cmd):
        self.write(cliproto.frame(cmd))

    def receive(self):
        try:
            return cliproto.read_message(self.rfile.read)
        except (EOFError, OSError, cliproto.ProtocolError):
            raise C.OcamlFailure("Thin CLI protocol error") from None

    def read_raw(self, n: int) -> bytes:
        data = cliproto.read_exact(self.rfile.read, n)
        if len(data) < n:
            raise C.OcamlFailure("Thin CLI protocol error")
        return data


# -- parsing (cli_frontend.ml) ---------------------------------------------------------------

SWITCHES = {"--force": "force", "--live": "live", "--internal": "internal", "-u": "username",
            "-pw": "password", "-s": "server", "-h": "server", "-p": "port",
            "--debug": "debug", "--minimal": "minimal", "--all": "all"}


def parse_session_and_args(body: bytes):
    """``parse_session_and_args``: lines (a trailing CR dropped); a first line
    ``session_id=<ref>`` names a session to use instead of logging in."""
    text = body.decode(cliproto.ENCODING, cliproto.ERRORS)
    args = [a[:-1] if a.endswith("\r") else a for a in text.split("\n")]
    if args and args[0].startswith("session_id="):
        return args[0][len("session_id="):], args[1:]
    return None, args


def parse_params(args):
    """``parse_params_2``: ``--x`` -> (x, "true"); ``-x v`` -> (switch x, v); else split at
    the first ``=`` (no ``=``: empty value)."""
    out = []
    i = 0
    while i < len(args):
        p = args[i]
        if p.startswith("--"):
            out.append((p[2:], "true"))
            i += 1
        elif p.startswith("-"):
            if i + 1 >= len(args):
                raise C.ParseError(f"Switch {p} requires a parameter\n")
            if p not in SWITCHES:
                raise C.ParseError(f"Unknown switch: {p}")
            out.append((SWITCHES[p], args[i + 1]))
            i += 2
        else:
            k, _, v = p.partition("=")
            out.append((k, v))
            i += 1
    return out


def parse_commandline(args):
    """(command name, params); any problem is ``ParseError ""`` as in XAPI."""
    try:
        if not args:
            raise C.ParseError("No arguments given")
        name = args[0]
        if "=" in name:
            raise C.ParseError("command name is missing")
        return name, parse_params(args[1:])
    except C.ParseError:
        raise C.ParseError("") from None


# -- errors (xapi_cli.ml exception_handler) --------------------------------------------------

def error_commands(e, lookup) -> list:
    """The protocol commands XAPI sends for an exception raised by a CLI command."""
    if isinstance(e, C.ExitWithError):
        return [cliproto.Exit(e.code)]
    if isinstance(e, C.UnknownCommand):
        return R.param_error("Unknown command", e.args[0])
    if isinstance(e, C.ParseError):
        return R.param_error("Syntax error", e.args[0])
    if isinstance(e, C.ParamNotFound):
        return R.param_error("Required parameter not found", e.args[0])
    if isinstance(e, C.MultipleFailure):
        return [cliproto.Print(f"operation failed on {u}: {m}") for u, m in e.errs]
    if isinstance(e, C.CliFailure):
        return [cliproto.PrintStderr(f"Error: {e.args[0]}\n")]
    if isinstance(e, Failure):
        if e.code == "SESSION_AUTHENTICATION_FAILED":
            uname = e.params[0] if e.params else ""
            return R.param_error("", "Username/password must be specified" if uname == ""
                                 else "Authentication failed")
        return R.server_error_commands(e.code, e.params, ERRORS, lookup)
    if isinstance(e, C.MissingParameter):
        return R.server_error_commands("Missing parameter", [e.args[0]], ERRORS, lookup)
    if isinstance(e, C.OcamlFailure):
        return R.server_error_commands("INTERNAL_ERROR", [f"Failure: {e.args[0]}"], ERRORS,
                                       lookup)
    if isinstance(e, C.UnixError):
        return R.server_error_commands("INTERNAL_ERROR", [f"Unix_error: {e.args[0]}"], ERRORS,
                                       lookup)
    return R.server_error_commands("INTERNAL_ERROR", [C.string_of_exn(e)], ERRORS, lookup)


# -- the handler -----------------------------------------------------------------------------

def _dispatcher(host):
    sim = getattr(host.world, "simulator", None)
    if sim is not None:
        return sim.dispatcher
    from .dispatch import Dispatcher
    return Dispatcher(host.world)


def handle_cli(host, body, rfile, wfile):
    """Serve one ``POST /cli`` request on ``host``'s endpoint (called by the HTTP layer
    after it has read ``body``; nothing has been written to ``wfile`` yet)."""
    if getattr(host, "state", "up") != "up":
        return
    conn = Connection(rfile, wfile)
    conn.write(cliproto.greeting())
    try:
        major, _minor = cliproto.read_greeting(rfile.read)
    except (cliproto.ProtocolError, OSError, ValueError):
        return
    if major != cliproto.MAJOR:
        return
    session, args = parse_session_and_args(body)
    ctx = C.Context(_dispatcher(host), host, session, [], None, conn)
    try:
        name, params = parse_commandline(args)
        ctx.params = params
        exec_command(ctx, name)
    except Exception as e:   # noqa: BLE001 -- every error becomes CLI output
        for cmd in error_commands(e, ctx.lookup):
            conn.send(cmd)
        if ctx.has("trace"):
            try:
                trace = C.cli_bool("trace", ctx.get("trace"))
            except C.CliFailure:
                trace = False
            if trace:
                conn.send(cliproto.PrintStderr(f"Raised {C.printexc(e)}\n"))
                conn.send(cliproto.PrintStderr("Backtrace:\n"))
                conn.send(cliproto.PrintStderr("\n"))
        conn.send(cliproto.Exit(1))


def exec_command(ctx, name):
    minimal = False
    if ctx.has("minimal"):
        v = ctx.get("minimal")
        if v not in ("true", "false"):
            raise C.InternalExn("Invalid argument: bool_of_string")
        minimal = v == "true"
    ctx.printer = R.Printer(ctx.send, minimal)
    if name == "help":
        C.help_command(ctx.printer, ctx.params)
        ctx.printer.flush()
        ctx.send(cliproto.Exit(0))
        return
    spec = C.table().get(name)
    if spec is None:
        raise C.UnknownCommand(name)
    for p in spec.reqd:
        if not ctx.has(p):
            raise C.ParamNotFound(p)
    user = ctx.get("username", "")
    pwd = ctx.get("password", "")
    logout = False
    if ctx.session is None:
        ctx.session = ctx.dispatcher.dispatch(ctx.host, "session.login_with_password",
                                              [user, pwd, API_VERSION, "cli"])
        logout = True
    try:
        spec.impl(ctx)
        ctx.printer.flush()
        ctx.send(cliproto.Exit(0))
    finally:
        if logout:
            try:
                ctx.dispatcher.dispatch(ctx.host, "session.logout", [ctx.session])
            except Exception:   # noqa: BLE001 -- the host may have left the pool meanwhile
                pass
