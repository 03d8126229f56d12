"""HTTP request parsing over raw sockets (RFC 9112; issue 12 item 7): transfer codings matched
as tokens, Content-Length rules, request smuggling attempts refused and the connection closed
without running the smuggled request, obsolete line folding, bad header names and values,
over-long heads, bad request lines, chunk syntax, compressed bodies and compression bombs,
and the 408 at the request deadline. After each refusal the server still answers.
"""

from __future__ import annotations

import gzip
import socket
import time
import zlib

import pytest


@pytest.fixture(scope="module")
def url(world):
    return world.master_url()


@pytest.fixture(scope="module")
def sref(wire, url):
    return wire.login(url)


@pytest.fixture(scope="module")
def pool(wire, url, sref):
    return wire.xml_ok(url, "pool.get_all", sref)[0]


def call_body(wire, sref, method="pool.get_all", *params):
    return wire.xml_body(method, sref, *params)


def head(lines, body=b""):
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(data: bytes, size=7) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        part = data[i : i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def statuses(data: bytes) -> list:
    return [
        line.split(b" ")[1].decode()
        for line in data.split(b"\r\n")
        if line.startswith(b"HTTP/1.1 ")
    ]


def refused(wire, url, request, status):
    data = wire.exchange(url, request, timeout=10)
    assert statuses(data) == [str(status)], data[:300]
    assert b"connection: close" in data
    return data


def alive(wire, url, sref):
    assert wire.xml(url, "pool.get_all", sref)["Status"] == "Success"


# -- transfer codings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "te, status",
    [
        (b"xchunked", 400),  # not "chunked": no framing can be determined
        (b"chunkedx", 400),
        (b"chunked, gzip", 400),  # chunked must be the final coding
        (b"chunked, chunked", 400),
        (b"gzip", 400),
        (b"", 400),
        (b",", 400),
        (b"br, chunked", 501),  # a coding this server does not implement
        (b"compress, chunked", 501),
        (b"identity, chunked", 501),
    ],
)
def test_transfer_encoding_is_a_token_list(wire, url, sref, te, status):
    body = call_body(wire, sref)
    refused(
        wire,
        url,
        head([b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: " + te], chunked(body)),
        status,
    )
    alive(wire, url, sref)


@pytest.mark.parametrize(
    "lines",
    [
        [b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: CHUNKED"],
        [b"Transfer-Encoding:chunked  "],
        [b"Transfer-Encoding: , chunked,"],  # empty list elements are ignored
    ],
)
def test_chunked_spellings(wire, url, sref, lines):
    body = call_body(wire, sref)
    data = wire.exchange(
        url, head([b"POST / HTTP/1.1", b"Host: x", *lines, b"Connection: close"], chunked(body))
    )
    assert statuses(data) == ["200"] and b"Success" in data


@pytest.mark.parametrize(
    "coding, compress",
    [(b"gzip", gzip.compress), (b"x-gzip", gzip.compress), (b"deflate", zlib.compress)],
)
def test_compressed_then_chunked_is_decoded(wire, url, sref, coding, compress):
    body = compress(call_body(wire, sref))
    for te in (
        [b"Transfer-Encoding: " + coding + b", chunked"],
        [b"Transfer-Encoding: " + coding, b"Transfer-Encoding: chunked"],
    ):
        data = wire.exchange(
            url,
            head([b"POST / HTTP/1.1", b"Host: x", *te, b"Connection: close"], chunked(body, 50)),
        )
        assert statuses(data) == ["200"] and b"Success" in data, data[:300]


def test_corrupt_compressed_body_is_400(wire, url, sref):
    refused(
        wire,
        url,
        head(
            [b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: gzip, chunked"],
            chunked(b"this is not gzip"),
        ),
        400,
    )
    alive(wire, url, sref)


def test_a_compression_bomb_is_413_without_inflating_it(wire, url, sref):
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # ~64 KiB -> 64 MiB
    assert len(bomb) < 256 << 10
    t0 = time.monotonic()
    refused(
        wire,
        url,
        head(
            [b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: gzip, chunked"],
            chunked(bomb, 8192),
        ),
        413,
    )
    assert time.monotonic() - t0 < 5
    alive(wire, url, sref)


def test_transfer_encoding_in_http_1_0_is_refused(wire, url, sref):
    body = call_body(wire, sref)
    refused(
        wire, url, head([b"POST / HTTP/1.0", b"Transfer-Encoding: chunked"], chunked(body)), 400
    )


# -- smuggling: the bytes after a refused request are never a request -------------------------


def smuggled(wire, sref, pool):
    body = wire.xml_body("pool.set_name_description", sref, pool, "smuggled")
    return head([b"POST / HTTP/1.1", b"Host: x", b"Content-Length: %d" % len(body)], body)


@pytest.mark.parametrize(
    "framing",
    [
        [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
        [b"Transfer-Encoding: xchunked"],
        [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"],
        [b"Content-Length: 5", b"Content-Length: 6"],
        [b"Content-Length: 5, 6"],
        [b"Content-Length: 5", b"Transfer-Encoding: chunked, identity"],
    ],
    ids=["cl-te", "te-cl", "xchunked", "te-not-last", "two-cl", "cl-list", "cl-te-bad"],
)
def test_smuggling_attempts_are_refused_and_closed(wire, url, sref, pool, framing):
    before = wire.xml_ok(url, "pool.get_name_description", sref, pool)
    request = head([b"POST / HTTP/1.1", b"Host: x", *framing], b"0\r\n\r\n") + smuggled(
        wire, sref, pool
    )
    data = wire.exchange(url, request)
    assert len(statuses(data)) == 1 and statuses(data)[0] in ("400", "501"), data[:300]
    assert b"connection: close" in data
    assert wire.xml_ok(url, "pool.get_name_description", sref, pool) == before != "smuggled"


def test_identical_content_lengths_are_one(wire, url, sref):
    body = call_body(wire, sref)
    n = str(len(body)).encode()
    for lines in (
        [b"Content-Length: " + n, b"Content-Length: " + n],
        [b"Content-Length: " + n + b", " + n],
    ):
        data = wire.exchange(
            url, head([b"POST / HTTP/1.1", b"Host: x", *lines, b"Connection: close"], body)
        )
        assert statuses(data) == ["200"] and b"Success" in data


@pytest.mark.parametrize(
    "value", [b"+5", b"-1", b"0x10", b"1 2", b"", b"5a", b"\xd9\xa5", b"1" * 30]
)
def test_bad_content_length_is_400(wire, url, sref, value):
    refused(
        wire,
        url,
        head([b"POST / HTTP/1.1", b"Host: x", b"Content-Length: " + value], b"12345"),
        400,
    )
    alive(wire, url, sref)


# -- header syntax --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        [b"Host: x", b"X-Folded: a", b" continued"],  # obs-fold
        [b"Host: x", b"X-Folded: a", b"\tcontinued"],
        [b" Host: x"],  # whitespace before the first
        [b"Host : x"],  # space before the colon
        [b"Bad Name: x"],
        [b"Na(me: x"],
        [b": x"],
        [b"no colon here"],
        [b"X-Nul: a\x00b"],
        [b"X-Cr: a\rb"],
        [b"X-Ctl: a\x01b"],
        [b"Host: a", b"Host: b"],  # RFC 9112 §3.2
    ],
)
def test_malformed_fields_are_400(wire, url, sref, lines):
    body = call_body(wire, sref)
    refused(
        wire, url, head([b"POST / HTTP/1.1", *lines, b"Content-Length: %d" % len(body)], body), 400
    )
    alive(wire, url, sref)


def test_over_long_head_is_431(wire, url, sref):
    big = [b"X-Filler-%d: %s" % (i, b"a" * 1000) for i in range(70)]  # ~70 KiB
    refused(wire, url, head([b"POST / HTTP/1.1", b"Host: x", *big, b"Content-Length: 0"]), 431)
    alive(wire, url, sref)


def test_too_many_fields_is_431(wire, url, sref):
    many = [b"X-F%d: 1" % i for i in range(150)]
    refused(wire, url, head([b"POST / HTTP/1.1", b"Host: x", *many, b"Content-Length: 0"]), 431)


def test_an_endless_request_line_is_414_not_a_memory_sink(wire, url, sref):
    host, port = wire.hostport(url)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /" + b"a" * (200 << 10))
        s.settimeout(5)
        data = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        except (TimeoutError, ConnectionResetError):
            pass
    assert statuses(data) == ["414"], data[:200]
    alive(wire, url, sref)


# -- request lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, status",
    [
        (b"POST / HTTP/2.0", 505),
        (b"POST / HTTP/1.1x", 400),
        (b"POST / http/1.1", 400),
        (b"POST  / HTTP/1.1", 400),
        (b"POST /", 400),
        (b"POST / HTTP/1.1 extra", 400),
        (b"POST noslash HTTP/1.1", 400),
        (b"PO\x01ST / HTTP/1.1", 400),
        (b"DELETE / HTTP/1.1", 501),
        (b"HEAD / HTTP/1.1", 501),
    ],
)
def test_bad_request_lines(wire, url, sref, line, status):
    refused(wire, url, head([line, b"Host: x", b"Content-Length: 0"]), status)
    alive(wire, url, sref)


def test_lenient_where_rfc_9112_allows(wire, url, sref):
    """Bare LF line ends (§2.2), empty lines before the request line (§2.2), the
    absolute-form target (§3.2.2), HTTP/1.0 without Host (what ``xe`` sends)."""
    body = call_body(wire, sref)
    n = b"%d" % len(body)
    for request in (
        b"POST / HTTP/1.1\nHost: x\nContent-Length: " + n + b"\nConnection: close\n\n" + body,
        b"\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + n
        + b"\r\nConnection: close\r\n\r\n"
        + body,
        head(
            [
                b"POST http://xs1.example/ HTTP/1.1",
                b"Host: x",
                b"Content-Length: " + n,
                b"Connection: close",
            ],
            body,
        ),
        head([b"POST / HTTP/1.0", b"Content-Length: " + n], body),
    ):
        data = wire.exchange(url, request)
        assert statuses(data) == ["200"] and b"Success" in data, (request[:60], data[:200])


# -- chunk syntax ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"0x5\r\nabcde\r\n0\r\n\r\n",  # no 0x prefix in chunk-size
        b"+5\r\nabcde\r\n0\r\n\r\n",
        b"5\r\nabcdeXX0\r\n\r\n",  # chunk data not followed by CRLF
        b"\r\n",
        b"fffffffffffffffff\r\n",  # absurd size
        b"0\r\nno colon\r\n\r\n",  # malformed trailer
    ],
)
def test_bad_chunks_are_400(wire, url, sref, body):
    refused(
        wire, url, head([b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked"], body), 400
    )
    alive(wire, url, sref)


def test_chunk_extensions_and_trailers_are_accepted(wire, url, sref):
    body = call_body(wire, sref)
    payload = (b"%x;name=value\r\n" % len(body)) + body + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    data = wire.exchange(
        url,
        head(
            [b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked", b"Connection: close"],
            payload,
        ),
    )
    assert statuses(data) == ["200"] and b"Success" in data


# -- deadlines ------------------------------------------------------------------------------------


def test_request_deadline_is_408_then_close(fresh_world, wire):
    fresh_world.world.request_timeout = 0.6
    url = fresh_world.master_url()
    host, port = wire.hostport(url)
    with socket.create_connection((host, port), timeout=5) as s:
        t0 = time.monotonic()
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Len")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        took = time.monotonic() - t0
    assert statuses(data) == ["408"]
    assert 0.4 < took < 3, took
