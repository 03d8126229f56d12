"""XAPI API errors: ``Failure(code, params)``, raised by behaviour, encoded only by codecs.

Codes and parameter names come from the committed ``data/errors.json`` (xen-api
``ocaml/xapi-consts/api_errors.ml`` + ``ocaml/idl/datamodel_errors.ml``, today's texts).
Each release profile's own texts -- the datamodel at its revision, e.g. Dundee's
``HOST_IS_SLAVE`` "You cannot make regular API calls directly on a slave. ..." -- are in
``data/errors_releases.json`` (``scripts/derive_releases.py``: only what differs from
today's); ``errors_for(profile)`` merges them.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

with resources.files("xapi_sim").joinpath("data/errors.json").open("rb") as _fh:
    ERRORS: dict = json.load(_fh)  # code -> [param names, doc]
with resources.files("xapi_sim").joinpath("data/errors_releases.json").open("rb") as _fh:
    _BY_RELEASE: dict = json.load(_fh)  # profile -> {code: [param names, doc]} (differences)


@functools.cache
def errors_for(profile: str | None) -> dict:
    """code -> [param names, doc] as the release profile ``profile`` (products.Product.name)
    documents them; today's table for None or a profile without its own texts. Read-only."""
    if not profile or profile not in _BY_RELEASE:
        return ERRORS
    return {**ERRORS, **_BY_RELEASE[profile]}


class NotQuick(Exception):
    """Raised by a call attempted on the HTTP front's loop thread (``dispatch(inline=True)``)
    before it has done anything, when it is not a quick, non-blocking read: the front then
    hands the request to a worker thread, which runs it from the start."""


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


def doc(code: str, profile: str | None = None) -> str:
    entry = errors_for(profile).get(code)
    return entry[1] if entry else ""


def param_names(code: str, profile: str | None = None) -> list:
    entry = errors_for(profile).get(code)
    return list(entry[0]) if entry else []
