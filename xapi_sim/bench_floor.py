"""The benchmarks' floors, each run in a process of its own (``python -m xapi_sim.bench_floor
xml|json``; prints its port, then serves until terminated).

Both are bare stdlib servers, thread per connection, HTTP/1.1 keep-alive, answering XAPI's
envelope from a dict for the few calls the load client makes (``bench_load``):

* ``xml``: ``xmlrpc.server.SimpleXMLRPCServer`` with ``ThreadingMixIn``;
* ``json``: ``http.server.ThreadingHTTPServer`` decoding and encoding with ``json``.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer, ThreadingMixIn
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

REF = "OpaqueRef:floor"
STATE: dict[str, Any] = {"power_state": "Running", "other_config": {}}


def _answers() -> dict[str, Any]:
    """method -> function of the parameters, returning the value."""

    def add_to_other_config(s, ref, k, v):
        STATE["other_config"][k] = v  # no event waiters: the floor has no events
        return ""

    return {
        "session.login_with_password": lambda *a: REF,
        "session.logout": lambda s: "",
        "VM.get_by_name_label": lambda s, label: [REF],
        "VM.get_power_state": lambda s, vm: STATE["power_state"],
        "pool.get_all": lambda s: [REF],
        "pool.add_to_other_config": add_to_other_config,
    }


class _XmlHandler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as xapi-sim's sockets: no delayed-ACK stalls

    def log_message(self, *a):
        pass


class _XmlServer(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 makes 32 connects wait for SYN retries


def xml_server() -> SimpleXMLRPCServer:
    srv = _XmlServer(("127.0.0.1", 0), requestHandler=_XmlHandler, logRequests=False)
    for name, fn in _answers().items():
        srv.register_function(
            lambda *a, fn=fn: {"Status": "Success", "Value": fn(*a)},
            name,
        )
    return srv


class _JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    answers = _answers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        req = json.loads(body)
        try:
            out: dict[str, Any] = {
                "jsonrpc": "2.0",
                "result": self.answers[req["method"]](*req["params"]),
            }
        except (KeyError, TypeError) as e:
            out = {"jsonrpc": "2.0", "error": {"code": 1, "message": str(e), "data": []}}
        out["id"] = req.get("id")
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


class _JsonServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self):
        # HTTPServer.server_bind looks the name up (getfqdn), slow on some resolvers
        TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]


def json_server() -> ThreadingHTTPServer:
    return _JsonServer(("127.0.0.1", 0), _JsonHandler)


def main(argv: list[str] | None = None) -> int:
    kind = (argv if argv is not None else sys.argv[1:])[0]
    srv = xml_server() if kind == "xml" else json_server()
    sys.stdout.write(f"{srv.server_address[1]}\n")
    sys.stdout.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass  # terminated: stop serving
    return 0


if __name__ == "__main__":
    sys.exit(main())
