"""XAPI API errors: ``Failure(code, params)``, raised by behaviour, encoded only by codecs.

Codes and parameter names come from the committed ``data/errors.json`` (xen-api
``ocaml/xapi-consts/api_errors.ml`` + ``ocaml/idl/datamodel_errors.ml``).
"""

from __future__ import annotations

import json
from importlib import resources

with resources.files("xapi_sim").joinpath("data/errors.json").open("rb") as _fh:
    ERRORS: dict = json.load(_fh)  # code -> [param names, doc]


class Failure(Exception):
    """An API failure: the wire's ``ErrorDescription = [code, *params]``."""

    def __init__(self, code: str, *params):
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list:
        return [self.code, *self.params]

    def __repr__(self):
        return f"Failure({self.description!r})"


def internal(text: str) -> Failure:
    """INTERNAL_ERROR [text], XAPI's answer to any unexpected exception (exnHelper.ml)."""
    return Failure("INTERNAL_ERROR", text)


def ocaml_failure(text: str) -> Failure:
    """INTERNAL_ERROR carrying an OCaml ``Failure "..."`` exception, as rpclib type errors do."""
    return Failure("INTERNAL_ERROR", f'Failure("{text}")')


def handle_invalid(cls: str, ref: str) -> Failure:
    return Failure("HANDLE_INVALID", cls, ref)


def doc(code: str) -> str:
    entry = ERRORS.get(code)
    return entry[1] if entry else ""


def param_names(code: str) -> list:
    entry = ERRORS.get(code)
    return list(entry[0]) if entry else []
