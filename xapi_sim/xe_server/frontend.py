"""The command line as the server receives it: request body -> (session, command, params).

Mirrors xen-api Dundee ``cli_frontend.ml`` (``parse_commandline``, ``parse_params_2``) and
``xapi_cli.ml`` (``parse_session_and_args``): one argument per line; ``key=value``;
``--flag`` -> ``flag=true``; ``-u``/``-pw``/``-s``/``-p``/``-h`` switches take the next
argument.
"""

from __future__ import annotations

from ..wire import cliproto
from .errors import ParseError

SWITCHES = {
    "--force": "force",
    "--live": "live",
    "--internal": "internal",
    "-u": "username",
    "-pw": "password",
    "-s": "server",
    "-h": "server",
    "-p": "port",
    "--debug": "debug",
    "--minimal": "minimal",
    "--all": "all",
}


def parse_session_and_args(body: bytes):
    """``parse_session_and_args``: lines (a trailing CR dropped); a first line
    ``session_id=<ref>`` names a session to use instead of logging in."""
    text = body.decode(cliproto.ENCODING, cliproto.ERRORS)
    args = [a[:-1] if a.endswith("\r") else a for a in text.split("\n")]
    if args and args[0].startswith("session_id="):
        return args[0][len("session_id=") :], args[1:]
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
                raise ParseError(f"Switch {p} requires a parameter\n")
            if p not in SWITCHES:
                raise ParseError(f"Unknown switch: {p}")
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
            raise ParseError("No arguments given")
        name = args[0]
        if "=" in name:
            raise ParseError("command name is missing")
        return name, parse_params(args[1:])
    except ParseError:
        raise ParseError("") from None
