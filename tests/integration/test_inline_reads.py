"""Quick reads answered on the HTTP front's loop thread (``serving.serve_inline``,
``Dispatcher.dispatch(inline=True)``): a field, a record or the ref of a UUID is answered
where its request was parsed; anything else -- and everything while a fault rule exists --
goes to a worker, having done nothing first. Observable rules: answers are the same as
ever, in order (pipelined requests too), a write is seen by the next read whoever serves
it, and a slow call never holds up another connection's reads.
"""

from __future__ import annotations

import socket
import threading
import time
import xmlrpc.client

import XenAPI
from session_kit import logged_in


def _raw_call(method, *params) -> bytes:
    body = xmlrpc.client.dumps(params, method).encode()
    head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return head + body


def _read_replies(sock, n):
    """``n`` whole HTTP replies (content-length framed) from ``sock``; their bodies."""
    buf = b""
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = int(
            next(
                ln.split(b":", 1)[1]
                for ln in head.split(b"\r\n")
                if ln.lower().startswith(b"content-length")
            )
        )
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
        out.append(buf[:length])
        buf = buf[length:]
    return out


def _session(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "test")
    return s


def _guest_vm_refs(s):
    return [
        r
        for r, v in s.xenapi.VM.get_all_records().items()
        if not v["is_a_template"] and not v["is_control_domain"]
    ]


def test_pipelined_reads_are_answered_in_order():
    with logged_in() as (w, s):
        vms = s.xenapi.VM.get_all_records()
        refs = sorted(vms)
        url = w.master_url()[len("http://") :].rstrip("/")
        host, port = url.split(":")
        sock = socket.create_connection((host, int(port)))
        try:
            # 60 requests in one write: more than the loop answers in one go
            # (INLINE_DEPTH), with a non-quick call (get_all) in the middle
            calls = [("VM.get_name_label", r) for r in refs[:30]]
            calls.insert(15, ("VM.get_all", None))
            calls += [("VM.get_power_state", r) for r in refs[:29]]
            sock.sendall(b"".join(_raw_call(m, s._session, *([r] if r else [])) for m, r in calls))
            replies = _read_replies(sock, len(calls))
        finally:
            sock.close()
        for (m, r), body in zip(calls, replies, strict=True):
            ((res,), _) = xmlrpc.client.loads(body)
            assert res["Status"] == "Success", res
            if m == "VM.get_name_label":
                assert res["Value"] == vms[r]["name_label"]
            elif m == "VM.get_power_state":
                assert res["Value"] == vms[r]["power_state"]
            else:
                assert sorted(res["Value"]) == refs


def test_a_write_is_seen_by_the_next_read_from_many_threads():
    with logged_in() as (w, s0):
        url = w.master_url()
        vms = _guest_vm_refs(s0)
        errors = []

        def worker(i):
            try:
                s = _session(url)
                vm = vms[i % len(vms)]
                for k in range(40):
                    key = f"t{i}"
                    s.xenapi.VM.remove_from_other_config(vm, key)
                    s.xenapi.VM.add_to_other_config(vm, key, str(k))  # a worker writes
                    got = s.xenapi.VM.get_other_config(vm)  # the loop reads
                    if got.get(key) != str(k):
                        errors.append((i, k, got.get(key)))
                    rec = s.xenapi.VM.get_record(vm)
                    if rec["other_config"].get(key) != str(k):
                        errors.append((i, k, "record"))
                s.xenapi.session.logout()
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append((i, repr(e)))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []


def test_a_slow_call_does_not_hold_up_other_connections_reads():
    with logged_in() as (w, admin):
        url = w.master_url()
        vm = _guest_vm_refs(admin)[0]
        # a fault rule makes every call go to a worker; this one delays one getter by 1.5 s
        rule = admin.xenapi_request(
            "sim.fault_add", ({"method": "VM.get_name_description", "delay": 1.5},)
        )
        slow_done = []

        def slow():
            s = _session(url)
            s.xenapi.VM.get_name_description(vm)
            slow_done.append(time.monotonic())

        t = threading.Thread(target=slow)
        t0 = time.monotonic()
        t.start()
        time.sleep(0.2)
        for _ in range(30):
            assert admin.xenapi.VM.get_power_state(vm) in ("Running", "Halted", "Suspended")
        reads_done = time.monotonic()
        assert not slow_done, "the reads should have finished while the slow call waited"
        assert reads_done - t0 < 1.4
        t.join(10)
        assert slow_done and slow_done[0] - t0 >= 1.5
        # with the rule gone, reads are answered as quick again, and still right
        admin.xenapi_request("sim.fault_clear", (rule,))
        assert admin.xenapi.VM.get_power_state(vm) == admin.xenapi.VM.get_record(vm)["power_state"]
