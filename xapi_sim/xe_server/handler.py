"""The server half of the thin-CLI protocol: ``POST /cli`` on every simulated host.

Mirrors xen-api Dundee ``xapi_cli.ml`` (``handler``, ``exec_command``, ``do_rpcs``):

1. The HTTP layer has read the request body (the command line, one argument per line,
   ``username=`` and ``password=`` last). No HTTP status line is sent: the server writes its
   greeting at once, reads the client's, and major versions must match.
2. The arguments are parsed (``frontend.py``). ``help`` runs without logging in;
   any other command is looked up (``Unknown command``), its required parameters checked
   (``Required parameter not found``), then the server logs in with
   ``session.login_with_password(u, p, "2.5", "cli")`` (unless the body starts with
   ``session_id=``), runs the command through the dispatcher, prints, logs out.
3. Every command ends with an Exit: 0 on success, 1 after an error printed as XAPI does
   (``errors.py``). An exception XAPI would not raise -- a bug here -- is also logged with
   its traceback.
"""

from __future__ import annotations

import logging
import threading

from ..dispatch import Dispatcher
from ..errors import errors_for
from ..wire import cliproto
from ..wire.ocaml import bool_of_string
from . import render as R
from .commands import table
from .context import Context
from .errors import (
    CliFailure,
    OcamlFailure,
    ParamNotFound,
    UnknownCommand,
    error_commands,
    is_modelled,
    printexc,
)
from .frontend import parse_commandline, parse_session_and_args
from .help import help_command
from .values import cli_bool

log = logging.getLogger(__name__)

API_VERSION = "2.5"  # Xapi_globs.api_version_string of XenServer 7.0


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
            raise OcamlFailure("Thin CLI protocol error") from None

    def read_raw(self, n: int) -> bytes:
        data = cliproto.read_exact(self.rfile.read, n)
        if len(data) < n:
            raise OcamlFailure("Thin CLI protocol error")
        return data


def _dispatcher(host):
    sim = getattr(host.world, "simulator", None)
    if sim is not None:
        return sim.dispatcher
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
    ctx = Context(_dispatcher(host), host, session, [], None, conn)
    try:
        name, params = parse_commandline(args)
        ctx.params = params
        exec_command(ctx, name)
    except Exception as e:  # noqa: BLE001 -- every error becomes CLI output
        if not is_modelled(e):
            log.error("xe command %r on %s failed", args[:1], host.name_label, exc_info=e)
        for cmd in error_commands(e, ctx.lookup, errors_for(host.product.profile)):
            conn.send(cmd)
        if ctx.has("trace"):
            try:
                trace = cli_bool("trace", ctx.get("trace"))
            except CliFailure:
                trace = False
            if trace:
                conn.send(cliproto.PrintStderr(f"Raised {printexc(e)}\n"))
                conn.send(cliproto.PrintStderr("Backtrace:\n"))
                conn.send(cliproto.PrintStderr("\n"))
        conn.send(cliproto.Exit(getattr(e, "exit_code", 1)))


def exec_command(ctx, name):
    # minimal=<not a bool> is bool_of_string's Invalid_argument, an internal error
    minimal = bool_of_string(ctx.get("minimal")) if ctx.has("minimal") else False
    ctx.printer = R.Printer(ctx.send, minimal)
    if name == "help":
        help_command(ctx.printer, ctx.params, host=ctx.host)
        ctx.printer.flush()
        ctx.send(cliproto.Exit(0))
        return
    spec = table().get(name)
    if spec is None or not spec.available(ctx.host):
        raise UnknownCommand(name)
    for p in spec.reqd:
        if not ctx.has(p):
            raise ParamNotFound(p)
    user = ctx.get("username", "")
    pwd = ctx.get("password", "")
    logout = False
    if ctx.session is None:
        ctx.session = ctx.dispatcher.dispatch(
            ctx.host, "session.login_with_password", [user, pwd, API_VERSION, "cli"]
        )
        logout = True
    try:
        spec.impl(ctx)
        ctx.printer.flush()
        ctx.send(cliproto.Exit(0))
    finally:
        if logout:
            try:
                ctx.dispatcher.dispatch(ctx.host, "session.logout", [ctx.session])
            except Exception:  # noqa: BLE001 -- the host may have left the pool meanwhile
                log.debug("xe: logout of the command's session failed", exc_info=True)
