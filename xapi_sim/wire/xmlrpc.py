"""XAPI's XML-RPC dialect (pure). Mirrors ``mirage/ocaml-rpc`` ``src/lib/xmlrpc.ml`` as XAPI
drives it: compact single-line output, untyped strings for strings *and* int64, ``<double>``
with ``%.16g`` (non-finite values as C's printf writes them: ``nan``, ``-nan``, ``inf``,
``-inf``), ``<dateTime.iso8601>`` with a trailing ``Z``, Status/Value envelopes and never a
``<fault>``. Input is parsed by expat with defusedxml's protections (no DTDs, so no entity
declarations and no external references; see ``decode_call``).

Text is escaped as rpclib's ``encode`` does (``& < > "``; control characters other than tab,
LF and CR dropped) in *every* text position: string values, struct member names, datetimes.
rpclib writes member names and datetimes raw, so on a real XAPI one map key such as
``"a<b"`` in an ``other_config`` makes that object's record, ``get_all_records`` and every
event batch carrying it unparseable for every XML-RPC client; xapi-sim deliberately does not
copy that (docs/clients.md, "Marshalling"). CR is written raw, as rpclib does, so XML
parsers read it as LF (XML end-of-line normalisation).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, XMLParser

from ..datamodel import _RAW as _DATAMODEL
from ..datamodel import Timestamp
from .values import I4, Shared, Value

MAX_DEPTH = 64


class XmlRpcParseError(ValueError):
    """An unparseable request body: answered with HTTP 500 (``Xmlrpc.Parse_error``)."""


def _value(node: Element, depth: int) -> Value:
    if depth > MAX_DEPTH:
        raise XmlRpcParseError("value nested too deeply")
    children = list(node)
    if not children:
        return node.text or ""
    if len(children) != 1:
        raise XmlRpcParseError("value with several children")
    c = children[0]
    tag, text = c.tag, (c.text or "").strip()
    if tag == "string":
        return c.text or ""
    if tag in ("int", "i4", "i8"):
        try:
            return int(text)
        except ValueError:
            raise XmlRpcParseError(f"bad int {text!r}") from None
    if tag == "boolean":
        return text == "1"
    if tag == "double":
        try:
            return float(text)
        except ValueError:
            raise XmlRpcParseError(f"bad double {text!r}") from None
    if tag == "dateTime.iso8601":
        return Timestamp(text)
    if tag == "base64":
        try:
            return base64.b64decode(text)
        except ValueError:
            raise XmlRpcParseError("bad base64") from None
    if tag == "nil":
        return None
    if tag == "array":
        data = c.find("data")
        if data is None:
            if len(c) == 0:
                return []  # rpclib's empty_tag: <array/> is an empty array
            raise XmlRpcParseError("array without data")
        return [_value(v, depth + 1) for v in data.findall("value")]
    if tag == "struct":
        out: dict[str, Value] = {}
        for m in c.findall("member"):
            name, val = m.find("name"), m.find("value")
            if name is None or val is None:
                raise XmlRpcParseError("bad struct member")
            out[name.text or ""] = _value(val, depth + 1)
        return out
    raise XmlRpcParseError(f"unknown value type {tag}")


class DTDForbidden(ValueError):
    """A request with a document type declaration (defusedxml's ``forbid_dtd``)."""


class _NoDtdBuilder(TreeBuilder):
    """The C tree builder, refusing a document type declaration at its start -- before its
    internal subset is read, so no entity (internal or external) can ever be declared; an
    undeclared entity reference is then expat's own error. That is what defusedxml's
    ``forbid_dtd``, ``forbid_entities`` and ``forbid_external`` together guarantee, at the
    speed of the C parser (defusedxml must use the pure-Python parser and tree builder to
    install its handlers: a Python call per element)."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise DTDForbidden(f"DTDForbidden(name={name!r}, system_id={system!r})")


def decode_call(body: bytes) -> tuple[str, list[Value]]:
    """Bytes of a ``<methodCall>`` -> (method name, [params]); raises XmlRpcParseError."""
    try:
        parser = XMLParser(target=_NoDtdBuilder())
        parser.feed(body)
        root = parser.close()
    except (ParseError, ValueError, RecursionError) as e:
        raise XmlRpcParseError(f"{type(e).__name__}: {e}") from None
    if root.tag != "methodCall":
        raise XmlRpcParseError("not a methodCall")
    name = root.find("methodName")
    params = root.find("params")
    if name is None or params is None:
        raise XmlRpcParseError("methodCall needs methodName and params")
    out: list[Value] = []
    for p in params.findall("param"):
        v = p.find("value")
        if v is None:
            raise XmlRpcParseError("param without value")
        try:
            out.append(_value(v, 0))
        except RecursionError:
            raise XmlRpcParseError("value nested too deeply") from None
    return (name.text or "").strip(), out


_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
_CTRL = {i: None for i in range(0x20) if i not in (9, 10, 13)}
_NEEDS = frozenset('&<>"') | frozenset(chr(i) for i in _CTRL)


def _member_names() -> dict[str, str]:
    # "<member><name>NAME</name>" for every field name of every class of the datamodel and
    # the envelope/event member names, written once: one append per known member instead of
    # a check, an escape and three appends (the bulk of a get_all_records reply).
    names = {
        "Status",
        "Value",
        "ErrorDescription",
        "events",
        "valid_ref_counts",
        "token",
        "id",
        "timestamp",
        "class",
        "operation",
        "ref",
        "snapshot",
    }
    for c in _DATAMODEL["classes"].values():
        names.update(f[0] for f in c["fields"])
    return {n: f"<member><name>{escape(n)}</name>" for n in names}


def escape(s: str) -> str:
    """Text as rpclib's ``encode`` writes it (``&<>"`` escaped, C0 controls but tab/LF/CR
    dropped), for character data anywhere in a document."""
    if _NEEDS.isdisjoint(s):
        return s
    return s.translate(_CTRL).translate(_ESC)


def _enc(v: Value, out: list[str]) -> None:
    t = type(v)
    if t is str:
        out.append("<value>")
        out.append(escape(v))
        out.append("</value>")
    elif t is dict:
        out.append("<value><struct>")
        for k, x in v.items():
            head = _MEMBER.get(k)
            if head is None:  # a map key: escaped like any text
                if type(k) is not str:
                    k = str(k)
                out.append("<member><name>")
                out.append(k if _NEEDS.isdisjoint(k) else escape(k))
                out.append("</name>")
            else:  # a field or envelope name
                out.append(head)
            _enc(x, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif t is list or t is tuple:
        out.append("<value><array><data>")
        for x in v:
            _enc(x, out)
        out.append("</data></array></value>")
    elif t is Shared:  # a part many replies carry (an event batch's valid_ref_counts)
        out.append(v.encoded("xml-value", encode_value))
    elif t is bool:
        out.append(
            "<value><boolean>1</boolean></value>" if v else "<value><boolean>0</boolean></value>"
        )
    elif t is int:
        out.append(f"<value>{v}</value>")
    elif t is float:
        out.append(f"<value><double>{_double(v)}</double></value>")
    elif t is Timestamp:
        out.append(f"<value><dateTime.iso8601>{escape(v)}</dateTime.iso8601></value>")
    elif t is I4:
        out.append(f"<value><i4>{int(v)}</i4></value>")
    elif v is None:
        out.append("<value></value>")
    elif isinstance(v, str):
        _enc(str(v), out)
    else:
        _enc(str(v), out)


_MEMBER = _member_names()


def _double(f: float) -> str:
    # OCaml's Printf "%.16g" is C's printf (caml_format_float): glibc writes a NaN with its
    # sign bit set as "-nan"; Python's "%g" would say "nan" for both
    if math.isnan(f):
        return "-nan" if math.copysign(1.0, f) < 0 else "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f"{f:.16g}"


def encode_value(v: Value) -> str:
    """One XML-RPC ``<value>`` for ``v`` (also the text of ``task.result``)."""
    out: list[str] = []
    _enc(v, out)
    return "".join(out)


_HEAD = '<?xml version="1.0"?><methodResponse><params><param>'
_TAIL = "</param></params></methodResponse>"


def encode_success(v: Value) -> bytes:
    if type(v) is Shared:  # one event batch for many waiters: the same bytes for each
        return v.encoded("xml", _encode_success)
    return b"".join(_encode_success_parts(v))


def encode_success_parts(v: Value) -> list[bytes]:
    """``encode_success`` as the pieces it was made in (sent in turn, never joined)."""
    if type(v) is Shared:
        return v.encoded_parts("xml", _encode_success_parts)
    return _encode_success_parts(v)


def _encode_success(v: Value) -> bytes:
    return b"".join(_encode_success_parts(v))


# A bulk reply (``get_all_records``, an initial event batch) is turned into bytes every
# CHUNK_PARTS strings, between the members of its outer structs and arrays, so that the
# encoding holds at most one chunk of small strings beside the bytes made so far -- not the
# whole reply as a list of strings, then as one str, then as bytes.
CHUNK_PARTS = 1 << 15
_CHUNK_DEPTH = 3  # the reply's struct/array levels that may end a chunk
_BIG = 64  # containers with fewer members are encoded in one go


def _enc_chunked(v: Value, out: list[str], chunks: list[bytes], depth: int) -> None:
    """``_enc``, flushing ``out`` into ``chunks`` between the members of big containers of
    the outer levels; the bytes are the same as ``_enc``'s."""
    t = type(v)
    if t is not dict and t is not list and t is not tuple:
        _enc(v, out)
        return
    if depth >= _CHUNK_DEPTH or (len(v) < _BIG and depth > 0):
        # (the reply's own level is always walked: a small envelope -- an event batch's
        # events, valid_ref_counts and token -- may hold the big array)
        _enc(v, out)
        return
    if t is dict:
        out.append("<value><struct>")
        for k, x in v.items():
            head = _MEMBER.get(k)
            if head is None:
                if type(k) is not str:
                    k = str(k)
                out.append("<member><name>")
                out.append(k if _NEEDS.isdisjoint(k) else escape(k))
                out.append("</name>")
            else:
                out.append(head)
            _enc_chunked(x, out, chunks, depth + 1)
            out.append("</member>")
            if len(out) > CHUNK_PARTS:
                chunks.append("".join(out).encode("utf-8", "replace"))
                out.clear()
        out.append("</struct></value>")
    else:
        out.append("<value><array><data>")
        for x in v:
            _enc_chunked(x, out, chunks, depth + 1)
            if len(out) > CHUNK_PARTS:
                chunks.append("".join(out).encode("utf-8", "replace"))
                out.clear()
        out.append("</data></array></value>")


def _encode_success_parts(v: Value) -> list[bytes]:
    out = [
        _HEAD,
        "<value><struct><member><name>Status</name><value>Success</value></member>"
        "<member><name>Value</name>",
    ]
    chunks: list[bytes] = []
    _enc_chunked("" if v is None else v, out, chunks, 0)
    out.append("</member></struct></value>")
    out.append(_TAIL)
    chunks.append("".join(out).encode("utf-8", "replace"))
    return chunks


def encode_failure(description: Sequence[object]) -> bytes:
    out = [
        _HEAD,
        "<value><struct><member><name>Status</name><value>Failure</value></member>"
        "<member><name>ErrorDescription</name>",
    ]
    _enc([str(x) for x in description], out)
    out.append("</member></struct></value>")
    out.append(_TAIL)
    return "".join(out).encode("utf-8", "replace")


def encode_bare(v: Value) -> bytes:
    """A response without the Status envelope (only ``system.listMethods``)."""
    return (_HEAD + encode_value(v) + _TAIL).encode("utf-8", "replace")
