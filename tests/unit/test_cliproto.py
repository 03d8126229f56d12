"""Thin-CLI protocol framing (xen-api ``cli_protocol.ml``; wire spec §13.1)."""

import io

import pytest

from xapi_sim.wire import cliproto as P


def hexbytes(s: str) -> bytes:
    return bytes.fromhex(s.replace("|", " "))


# -- the byte examples of §13.1 -------------------------------------------------------------


def test_print_hello_frame():
    assert (
        P.frame(P.Print("hello"))
        == hexbytes("11 00 00 00 | 09 00 00 00 | 00 00 00 00 | 05 00 00 00") + b"hello"
    )


def test_exit_0_frame():
    assert P.frame(P.Exit(0)) == hexbytes("0c 00 00 00 | 09 00 00 00 | 04 00 00 00 | 00 00 00 00")


def test_greeting_is_magic_then_version_0_2():
    g = P.greeting()
    assert g == b"XenSource thin CLI protocol" + hexbytes("00 00 00 00 02 00 00 00")
    assert len(P.PREFIX) == 27 and len(g) == P.GREETING_LEN == 35
    assert P.parse_greeting(g) == (0, 2)


def test_greeting_mismatch_is_not_a_cli_server():
    with pytest.raises(P.NotACliServer):
        P.parse_greeting(b"HTTP/1.1 404 Not Found\r\n\r\nxxxxxxxxxx")
    with pytest.raises(P.NotACliServer):
        P.read_greeting(io.BytesIO(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").read)


# -- every message, tag by tag -----------------------------------------------------------------


@pytest.mark.parametrize(
    "msg,payload",
    [
        (P.Print("hi"), "09000000 00000000 02000000 6869"),
        (P.Load("f"), "09000000 01000000 01000000 66"),
        (P.Prompt(), "09000000 03000000"),
        (P.Exit(1), "09000000 04000000 01000000"),
        (P.Exit(-1), "09000000 04000000 ffffffff"),
        (P.HttpGet("a", "/b"), "09000000 0c000000 01000000 61 02000000 2f62"),
        (P.HttpPut("a", "/b"), "09000000 0d000000 01000000 61 02000000 2f62"),
        (
            P.Error("C", ["x", "yz"]),
            "09000000 0e000000 01000000 43 02000000 01000000 78 02000000 797a",
        ),
        (P.Error("another", []), "09000000 0e000000 07000000 616e6f74686572 00000000"),
        (P.Debug("d"), "09000000 0f000000 01000000 64"),
        (P.PrintStderr("e\n"), "09000000 10000000 02000000 650a"),
        (P.HttpConnect("/c"), "09000000 11000000 02000000 2f63"),
        (P.OK, "0a000000 05000000"),
        (P.FAILED, "0a000000 06000000"),
        (P.WAIT, "0a000000 12000000"),
        (P.Chunk(1024), "0b000000 07000000 00040000"),
        (P.End(), "0b000000 08000000"),
    ],
)
def test_encode_decode(msg, payload):
    data = hexbytes(payload)
    assert P.encode_message(msg) == data
    assert P.decode_message(data) == msg
    framed = P.frame(msg)
    assert framed[:4] == len(data).to_bytes(4, "little")
    assert P.unframe(framed + b"rest") == (msg, b"rest")


def test_examples_of_cli_protocol_ml_round_trip():
    examples = [
        P.Print("Hello there"),
        P.Debug("this is debug output"),
        P.Load("ova.xml"),
        P.HttpGet("foo.export", "/import"),
        P.HttpPut("foo.export", "/export"),
        P.Prompt(),
        P.Exit(5),
        P.OK,
        P.FAILED,
        P.WAIT,
        P.Chunk(1024),
        P.Chunk(10240000),
        P.End(),
        P.Error("somecode", ["a", "b", "c"]),
        P.Error("another", []),
    ]
    stream = io.BytesIO(b"".join(P.frame(m) for m in examples))
    assert [P.read_message(stream.read) for _ in examples] == examples
    with pytest.raises(EOFError):
        P.read_message(stream.read)


def test_utf8_and_raw_bytes_survive():
    m = P.Print("caf\u00e9 \udcff")
    assert P.decode_message(P.encode_message(m)) == m
    assert P.encode_message(P.Print("\u00e9"))[8:] == hexbytes("02000000 c3a9")


@pytest.mark.parametrize(
    "bad",
    [
        "09000000 63000000",  # unknown command tag
        "0a000000 07000000",  # unknown response tag
        "0b000000 05000000",  # unknown blob tag
        "0c000000",  # unknown message tag
        "09000000 00000000 05000000 6869",  # string longer than the payload
        "0900",  # truncated tag
    ],
)
def test_malformed_payloads(bad):
    with pytest.raises(P.ProtocolError):
        P.decode_message(hexbytes(bad))


def test_truncated_frames():
    with pytest.raises(P.ProtocolError):
        P.read_message(io.BytesIO(hexbytes("11 00 00 00 09 00")).read)
    with pytest.raises(P.ProtocolError):
        P.read_message(io.BytesIO(b"\x01\x00").read)
    with pytest.raises(P.ProtocolError):
        P.unframe(hexbytes("08000000 0b000000"))


def test_read_exact_accumulates_short_reads():
    src = io.BytesIO(b"abcdef")

    def read(n):  # a socket returning at most 2 bytes at a time
        return src.read(min(n, 2))

    assert P.read_exact(read, 5) == b"abcde"
    assert P.read_exact(read, 5) == b"f"
