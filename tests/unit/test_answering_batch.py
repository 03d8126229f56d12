"""``dispatch.answering_batch``: the replies a thread queues while it answers many parked
calls are written together, in order, then handed back -- each step for every reply, even
when one of them fails -- and only on that thread."""

from __future__ import annotations

import threading

from xapi_sim.dispatch import answering_batch, queue_reply


class Item:
    def __init__(self, name, log, fail=None):
        self.name, self.log, self.fail = name, log, fail

    def write(self):
        self.log.append(("write", self.name))
        if self.fail == "write":
            raise OSError("gone")

    def done(self):
        self.log.append(("done", self.name))


def test_outside_a_batch_nothing_is_queued():
    assert queue_reply(Item("a", [])) is False


def test_every_write_comes_before_any_hand_back_in_order():
    log: list = []
    with answering_batch():
        for name in "abc":
            assert queue_reply(Item(name, log))
        assert log == []  # nothing written while answers are still being made
    assert log == [("write", "a"), ("write", "b"), ("write", "c")] + [
        ("done", "a"),
        ("done", "b"),
        ("done", "c"),
    ]


def test_a_failing_reply_does_not_stop_the_others():
    log: list = []
    with answering_batch():
        queue_reply(Item("a", log, fail="write"))
        queue_reply(Item("b", log))
    assert ("write", "b") in log and ("done", "a") in log and ("done", "b") in log


def test_nested_batches_write_once_at_the_outer_end():
    log: list = []
    with answering_batch():
        with answering_batch():
            queue_reply(Item("a", log))
        assert log == []
    assert log == [("write", "a"), ("done", "a")]


def test_the_batch_is_the_threads_own():
    log: list = []
    other: list = []
    started, release = threading.Event(), threading.Event()

    def elsewhere():
        started.set()
        release.wait(5)
        other.append(queue_reply(Item("x", log)))

    t = threading.Thread(target=elsewhere)
    with answering_batch():
        t.start()
        started.wait(5)
        release.set()
        t.join(5)
        queue_reply(Item("a", log))
    assert other == [False]  # no batch on that thread: it writes its own reply itself
    assert log == [("write", "a"), ("done", "a")]


class _Front:
    def __init__(self):
        self.posted = []

    def post(self, fn):
        self.posted.append(fn)
        return True


class _Conn:
    """What ``serving._Queued`` uses of a front connection, on a real socket."""

    def __init__(self, sock):
        self.sock, self.tls, self.pending_out, self.front = sock, False, b"", _Front()
        self.replied_with = None

    def replied(self, rest, close):
        self.replied_with = (bytes(rest), close)


def test_a_queued_reply_the_socket_cannot_take_whole_leaves_the_rest_to_the_loop():
    import socket

    from xapi_sim.wire import serving

    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn = _Conn(a)
    data = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes at once
    with answering_batch():
        serving.send_reply(conn, data, False)
        assert conn.front.posted == []  # queued, not written yet
    [post] = conn.front.posted
    post()
    rest, close = conn.replied_with
    assert not close and 0 < len(rest) < len(data)
    assert data.endswith(rest)  # what was sent is the head of the reply, the rest follows
    # a peer gone: the reply is dropped and the connection closed
    b.close()
    gone = _Conn(a)
    with answering_batch():
        serving.send_reply(gone, b"x" * 10, False)
    gone.front.posted[0]()
    a.close()
    assert gone.replied_with is not None and gone.replied_with[1] is True
