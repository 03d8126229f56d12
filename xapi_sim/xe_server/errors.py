"""The CLI's own exceptions and how each one reaches the terminal.

Mirrors xen-api Dundee ``xapi_cli.ml`` (``exception_handler``: which exception prints what),
``cli_frontend.ml`` / ``cli_util.ml`` / ``records.ml`` (the exceptions themselves) and
``exnHelper.ml`` (``string_of_exn``, the text an unexpected exception becomes). A command
raises; ``handler.py`` turns the exception into protocol commands with ``error_commands``.
"""

from __future__ import annotations

from ..errors import ERRORS, Failure
from ..wire import cliproto
from ..wire.ocaml import BadBool, BadLiteral
from . import render as R


class CliError(Exception):
    pass


class ParseError(CliError):
    """``Cli_frontend.ParseError``: ``Syntax error: <text>``."""


class ParamNotFound(CliError):
    """``Cli_frontend.ParamNotFound``: ``Required parameter not found: <p>``."""


class UnknownCommand(CliError):
    """``Xapi_cli.Unknown_command``: ``Unknown command: <name>``."""


class CliFailure(CliError):
    """``Cli_util.Cli_failure`` and ``Record_util.Record_failure``: ``Error: <text>``."""


class ExitWithError(CliError):
    """``Cli_util.ExitWithError n``: what to say was said already; exit with status ``n``."""

    def __init__(self, code: int = 1):
        super().__init__(code)
        self.exit_code = code


class MissingParameter(CliError):
    """``Records.CLI_failed_to_find_param``: ``Missing parameter [name]`` (client-rendered)."""


class OcamlFailure(CliError):
    """An OCaml ``Failure`` outside cli_operations: INTERNAL_ERROR ``Failure: <text>``."""


class InternalExn(CliError):
    """Any other OCaml exception: INTERNAL_ERROR [<exception text>] (e.g. ``Not_found``)."""


class UnixError(CliError):
    """``Unix.Unix_error``: INTERNAL_ERROR ``Unix_error: <message>``."""


class MultipleFailure(CliError):
    """``Cli_operations.Multiple_failure``: ``operation failed on <uuid>: <msg>`` lines."""

    def __init__(self, errs):
        super().__init__(errs)
        self.errs = errs


def as_ocaml(exn):
    """A literal that failed to parse (``wire.ocaml``) as the OCaml exception it stands for:
    ``bool_of_string`` raises ``Invalid_argument``, the number parsers ``Failure``."""
    if isinstance(exn, BadBool):
        return InternalExn(f"Invalid argument: {exn}")
    if isinstance(exn, BadLiteral):
        return OcamlFailure(str(exn))
    return exn


def is_modelled(exn) -> bool:
    """True for the exceptions XAPI itself raises (API and CLI errors, OCaml exceptions we
    model); anything else reaching the handler is a bug of this simulator."""
    return isinstance(exn, (CliError, Failure, BadLiteral))


def printexc(exn) -> str:
    """OCaml ``Printexc.to_string`` of the exception an error stands for."""
    exn = as_ocaml(exn)
    if isinstance(exn, Failure):
        return f"Server_error({exn.code}, [ {'; '.join(exn.params)} ])"
    if isinstance(exn, CliFailure):
        return f'Cli_util.Cli_failure("{exn.args[0]}")'
    if isinstance(exn, OcamlFailure):
        return f'Failure("{exn.args[0]}")'
    if isinstance(exn, InternalExn):
        return exn.args[0]
    return f"{type(exn).__name__}: {exn}"


def string_of_exn(exn) -> str:
    """``ExnHelper.string_of_exn``: ``CODE: [ p1; p2 ]`` of ``error_of_exn``."""
    if isinstance(exn, Failure):
        code, params = exn.code, exn.params
    else:
        code, params = "INTERNAL_ERROR", [printexc(exn)]
    return f"{code}: [ {'; '.join(params)} ]"


def error_text(exn, lookup, table: dict = ERRORS) -> str:
    """What ``do_multiple`` records for one object whose operation failed (``table``: the
    serving host's release's error texts, errors.errors_for)."""
    if isinstance(exn, Failure):
        lines = R.server_error_lines(exn.code, exn.params, table, lookup)
        if lines is not None:
            return lines[0] + "\n" + "\n".join(lines[1:])
    return string_of_exn(exn)


def error_commands(e, lookup, table: dict = ERRORS) -> list:
    """``exception_handler``: the protocol commands XAPI sends for an exception raised by a
    CLI command (``lookup`` names the references in an API error's parameters)."""
    e = as_ocaml(e)
    if isinstance(e, ExitWithError):
        return []
    if isinstance(e, UnknownCommand):
        return R.param_error("Unknown command", e.args[0])
    if isinstance(e, ParseError):
        return R.param_error("Syntax error", e.args[0])
    if isinstance(e, ParamNotFound):
        return R.param_error("Required parameter not found", e.args[0])
    if isinstance(e, MultipleFailure):
        return [cliproto.Print(f"operation failed on {u}: {m}") for u, m in e.errs]
    if isinstance(e, CliFailure):
        return [cliproto.PrintStderr(f"Error: {e.args[0]}\n")]
    if isinstance(e, Failure):
        if e.code == "SESSION_AUTHENTICATION_FAILED":
            uname = e.params[0] if e.params else ""
            return R.param_error(
                "",
                "Username/password must be specified" if uname == "" else "Authentication failed",
            )
        code, params = e.code, e.params
    elif isinstance(e, MissingParameter):
        code, params = "Missing parameter", [e.args[0]]
    elif isinstance(e, OcamlFailure):
        code, params = "INTERNAL_ERROR", [f"Failure: {e.args[0]}"]
    elif isinstance(e, UnixError):
        code, params = "INTERNAL_ERROR", [f"Unix_error: {e.args[0]}"]
    else:
        code, params = "INTERNAL_ERROR", [string_of_exn(e)]
    return R.server_error_commands(code, params, table, lookup)
