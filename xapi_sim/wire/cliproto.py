"""Framing of XAPI's thin-CLI protocol (the wire between ``xe`` and ``POST /cli``).

Mirrors xen-api ``cli_protocol.ml`` (protocol 0.2, as Dundee's ``xe`` speaks it). Pure
functions, bytes in and bytes out; the socket loops live in ``xe_server.handler`` and ``xe``.

* Greeting: the 27-byte magic ``XenSource thin CLI protocol`` then int32 major, int32 minor.
  The server sends it first (no HTTP status line); the client answers with its own.
* Every integer is a 32-bit little-endian two's-complement value; a string is its byte
  length then the bytes; a list is its length then the items.
* A message travels as ``[int32 length][payload]``; the payload starts with the message tag
  (9 Command, 10 Response, 11 Blob) and then the body:

  ========================  ===  =================================
  Command                   tag  body
  ========================  ===  =================================
  Print                       0  string
  Load                        1  string (file name)
  Prompt                      3
  Exit                        4  int32 (exit status)
  HttpGet                    12  string (file name), string (path)
  HttpPut                    13  string (file name), string (path)
  Error                      14  string (code), list of strings
  Debug                      15  string
  PrintStderr                16  string
  HttpConnect                17  string (path)
  ========================  ===  =================================

  Responses: 5 OK, 6 Failed, 18 Wait.  Blobs: 7 Chunk(int32 length) -- followed on the wire
  by that many raw bytes, outside the frame -- and 8 End.

Example: Print "hello" = ``11 00 00 00 09 00 00 00 00 00 00 00 05 00 00 00 68 65 6c 6c 6f``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

# A stream's read: a file's ``read`` or a socket's ``recv``.
Read = Callable[[int], bytes]

PREFIX = b"XenSource thin CLI protocol"
MAJOR = 0
MINOR = 2

# message tags
COMMAND, RESPONSE, BLOB = 9, 10, 11
# command tags
PRINT, LOAD, PROMPT, EXIT = 0, 1, 3, 4
HTTP_GET, HTTP_PUT, ERROR, DEBUG, PRINT_STDERR, HTTP_CONNECT = 12, 13, 14, 15, 16, 17
# response tags
OK_TAG, FAILED_TAG, WAIT_TAG = 5, 6, 18
# blob tags
CHUNK, END = 7, 8

ENCODING = "utf-8"
ERRORS = "surrogateescape"  # arbitrary bytes survive a decode/encode round trip


class ProtocolError(Exception):
    """A message that cannot be decoded (unknown tag, truncated payload)."""


class NotACliServer(ProtocolError):
    """The peer did not start with the thin-CLI magic (e.g. an HTTP server answered)."""

    def __init__(self, data: bytes = b""):
        super().__init__(data)
        self.data = data


_RESPONSE_TAGS = {"OK": OK_TAG, "Failed": FAILED_TAG, "Wait": WAIT_TAG}
_RESPONSE_NAMES = {v: k for k, v in _RESPONSE_TAGS.items()}


# -- messages ---------------------------------------------------------------------------------
# Small value classes (not dataclasses: ``xe`` imports this module at every start-up).


class _Message:
    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __init__(self, *args: object, **kw: object) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} arguments")
        values = dict(zip(self._fields, args, strict=False))
        for k, v in kw.items():
            if k not in self._fields or k in values:
                raise TypeError(f"bad argument {k!r}")
            values[k] = v
        for f in self._fields:
            if f not in values:
                raise TypeError(f"missing argument {f!r}")
            object.__setattr__(self, f, values[f])

    def __setattr__(self, k: str, v: object) -> None:
        raise AttributeError("messages are immutable")

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and isinstance(other, _Message)
            and self._key() == other._key()
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(v) for v in self._key())})"


# Each class declares its fields' types for the type checker (annotations only: the slots
# hold the values).


class Print(_Message):
    __slots__ = _fields = ("text",)
    text: str


class PrintStderr(_Message):
    __slots__ = _fields = ("text",)
    text: str


class Debug(_Message):
    __slots__ = _fields = ("text",)
    text: str


class Load(_Message):
    __slots__ = _fields = ("filename",)
    filename: str


class HttpGet(_Message):
    __slots__ = _fields = ("filename", "path")
    filename: str
    path: str


class HttpPut(_Message):
    __slots__ = _fields = ("filename", "path")
    filename: str
    path: str


class HttpConnect(_Message):
    __slots__ = _fields = ("path",)
    path: str


class Prompt(_Message):
    __slots__ = _fields = ()


class Exit(_Message):
    __slots__ = _fields = ("code",)
    code: int


class Error(_Message):
    __slots__ = _fields = ("code", "params")
    code: str
    params: tuple[str, ...]

    def __init__(self, code: str, params: Iterable[str] = ()) -> None:
        super().__init__(code, tuple(params))


class Response(_Message):
    """OK, Failed or Wait."""

    __slots__ = _fields = ("kind",)
    kind: str

    def __init__(self, kind: str) -> None:
        if kind not in _RESPONSE_TAGS:
            raise ValueError(f"unknown response {kind!r}")
        super().__init__(kind)


class Chunk(_Message):
    """A blob header; ``length`` raw bytes follow the frame on the wire."""

    __slots__ = _fields = ("length",)
    length: int


class End(_Message):
    __slots__ = _fields = ()


Command = (
    Print | PrintStderr | Debug | Load | HttpGet | HttpPut | HttpConnect | Prompt | Exit | Error
)
Message = Command | Response | Chunk | End


OK = Response("OK")
FAILED = Response("Failed")
WAIT = Response("Wait")


# -- primitives -------------------------------------------------------------------------------


def int32(n: int) -> bytes:
    """A 32-bit little-endian integer (values wrap like OCaml's Int32.of_int)."""
    n &= 0xFFFFFFFF
    return struct.pack("<I", n)


def string(s: object) -> bytes:
    b = s if isinstance(s, (bytes, bytearray)) else str(s).encode(ENCODING, ERRORS)
    return int32(len(b)) + bytes(b)


def strlist(items: Iterable[object]) -> bytes:
    values = list(items)
    return int32(len(values)) + b"".join(string(x) for x in values)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def int32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ProtocolError("truncated integer")
        v: int = struct.unpack_from("<i", self.data, self.pos)[0]
        self.pos += 4
        return v

    def string(self) -> str:
        n = self.int32()
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError("truncated string")
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s.decode(ENCODING, ERRORS)

    def strlist(self) -> list[str]:
        n = self.int32()
        if n < 0:
            raise ProtocolError("negative list length")
        return [self.string() for _ in range(n)]


# -- messages <-> payloads --------------------------------------------------------------------


def encode_command(c: Command) -> bytes:
    if isinstance(c, Print):
        return int32(PRINT) + string(c.text)
    if isinstance(c, Debug):
        return int32(DEBUG) + string(c.text)
    if isinstance(c, Load):
        return int32(LOAD) + string(c.filename)
    if isinstance(c, HttpGet):
        return int32(HTTP_GET) + string(c.filename) + string(c.path)
    if isinstance(c, HttpPut):
        return int32(HTTP_PUT) + string(c.filename) + string(c.path)
    if isinstance(c, HttpConnect):
        return int32(HTTP_CONNECT) + string(c.path)
    if isinstance(c, Prompt):
        return int32(PROMPT)
    if isinstance(c, Exit):
        return int32(EXIT) + int32(c.code)
    if isinstance(c, Error):
        return int32(ERROR) + string(c.code) + strlist(c.params)
    if isinstance(c, PrintStderr):
        return int32(PRINT_STDERR) + string(c.text)
    raise TypeError(f"not a command: {c!r}")


def encode_message(m: Message) -> bytes:
    """The payload of one message (without the length prefix)."""
    if isinstance(m, Response):
        return int32(RESPONSE) + int32(_RESPONSE_TAGS[m.kind])
    if isinstance(m, Chunk):
        return int32(BLOB) + int32(CHUNK) + int32(m.length)
    if isinstance(m, End):
        return int32(BLOB) + int32(END)
    return int32(COMMAND) + encode_command(m)


def frame(m: Message) -> bytes:
    """One message as it goes on the wire: int32 payload length, then the payload."""
    payload = encode_message(m)
    return int32(len(payload)) + payload


def _decode_command(r: _Reader) -> Command:
    tag = r.int32()
    if tag == PRINT:
        return Print(r.string())
    if tag == DEBUG:
        return Debug(r.string())
    if tag == LOAD:
        return Load(r.string())
    if tag == HTTP_GET:
        a = r.string()
        return HttpGet(a, r.string())
    if tag == HTTP_PUT:
        a = r.string()
        return HttpPut(a, r.string())
    if tag == HTTP_CONNECT:
        return HttpConnect(r.string())
    if tag == PROMPT:
        return Prompt()
    if tag == EXIT:
        return Exit(r.int32())
    if tag == ERROR:
        code = r.string()
        return Error(code, tuple(r.strlist()))
    if tag == PRINT_STDERR:
        return PrintStderr(r.string())
    raise ProtocolError(f"unknown command tag {tag}")


def decode_message(payload: bytes) -> Message:
    """The message of one payload (the bytes after the length prefix)."""
    r = _Reader(bytes(payload))
    tag = r.int32()
    m: Message
    if tag == COMMAND:
        m = _decode_command(r)
    elif tag == RESPONSE:
        t = r.int32()
        if t not in _RESPONSE_NAMES:
            raise ProtocolError(f"unknown response tag {t}")
        m = Response(_RESPONSE_NAMES[t])
    elif tag == BLOB:
        t = r.int32()
        if t == CHUNK:
            m = Chunk(r.int32() & 0xFFFFFFFF)
        elif t == END:
            m = End()
        else:
            raise ProtocolError(f"unknown blob tag {t}")
    else:
        raise ProtocolError(f"unknown message tag {tag}")
    return m


def unframe(data: bytes) -> tuple[Message, bytes]:
    """(message, rest) from a buffer holding at least one whole frame."""
    if len(data) < 4:
        raise ProtocolError("truncated frame length")
    (n,) = struct.unpack_from("<i", data, 0)
    if n < 0 or len(data) < 4 + n:
        raise ProtocolError("truncated frame")
    return decode_message(data[4 : 4 + n]), data[4 + n :]


# -- greeting ---------------------------------------------------------------------------------


def greeting(major: int = MAJOR, minor: int = MINOR) -> bytes:
    """The version announcement each side sends first (35 bytes)."""
    return PREFIX + int32(major) + int32(minor)


GREETING_LEN = len(PREFIX) + 8


def parse_greeting(data: bytes) -> tuple[int, int]:
    """(major, minor) from a 35-byte greeting; NotACliServer if the magic is wrong."""
    if data[: len(PREFIX)] != PREFIX or len(data) < GREETING_LEN:
        raise NotACliServer(bytes(data))
    major, minor = struct.unpack_from("<ii", data, len(PREFIX))
    return major, minor


# -- stream helpers ---------------------------------------------------------------------------


def read_exact(read: Read, n: int) -> bytes:
    """Read exactly ``n`` bytes with ``read`` (a file's read or a socket's recv);
    fewer bytes at end of stream are returned as they are."""
    buf = bytearray()
    while len(buf) < n:
        b = read(n - len(buf))
        if not b:
            break
        buf += b
    return bytes(buf)


def read_greeting(read: Read) -> tuple[int, int]:
    """Read and parse the peer's greeting from a stream."""
    prefix = read_exact(read, len(PREFIX))
    if prefix != PREFIX:
        raise NotACliServer(prefix)
    rest = read_exact(read, 8)
    if len(rest) < 8:
        raise ProtocolError("truncated greeting")
    return parse_greeting(prefix + rest)


def read_message(read: Read) -> Message:
    """Read one framed message from a stream; EOFError at a clean end of stream."""
    head = read_exact(read, 4)
    if not head:
        raise EOFError("end of stream")
    if len(head) < 4:
        raise ProtocolError("truncated frame length")
    (n,) = struct.unpack("<i", head)
    if n < 0:
        raise ProtocolError("negative frame length")
    payload = read_exact(read, n)
    if len(payload) < n:
        raise ProtocolError("truncated frame")
    return decode_message(payload)
