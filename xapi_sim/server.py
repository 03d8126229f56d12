"""Run a world: one listener per host, addresses, TLS, start and stop.

Each simulated host answers on its own endpoint and ``host.address`` says where: on Linux the
hosts share one port on distinct loopback addresses (127.0.0.1, 127.0.0.2, ... -- the whole
127/8 is local, no setup needed), so ``host.address`` is a bare IP as on a real pool. Where
that is not possible (another bind address, or aliases refused) every host gets its own port
on the bind address and ``host.address`` is ``ip:port``.
"""
from __future__ import annotations

import ipaddress
import json
import os
import ssl
import tempfile
import threading

from . import classes  # noqa: F401  -- registers every handler
from .classes.cross_pool import import_metadata
from .dispatch import Dispatcher
from .wire import http


class Simulator:
    """A world plus its listeners."""

    def __init__(self, world, bind="127.0.0.1", port=0, tls_cert=None, tls_key=None):
        self.world = world
        self.bind = bind
        self.port = port
        self.dispatcher = Dispatcher(world)
        self.ssl_context = None
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            self.ssl_context = ctx
            world.tls = True
        self.servers = {}      # host ref -> (server, thread)
        self.shared_port = None
        self._next_octet = None
        self.lock = threading.Lock()
        world.on_host_added.append(self.listen)
        world.simulator = self

    # -- listeners -----------------------------------------------------------------------
    def start(self):
        for h in list(self.world.hosts.values()):
            if h.state == "up" and h.pool is not None:
                self.listen(h)
        # xapi's periodic DB GC pass: finished tasks time out (classes/task.py)
        from .classes.task import Tasks
        Tasks.of(self.world).start_gc()
        return self

    def make_durable(self, journal):
        """Journal every call's changes before its reply (``--state-dir``)."""
        from .persist import DurableDispatcher
        self.dispatcher = DurableDispatcher(self.dispatcher, journal)
        self.journal = journal

    def _alias_mode(self):
        try:
            ip = ipaddress.ip_address(self.bind)
        except ValueError:
            return False
        return ip.version == 4 and ip.is_loopback

    def _bind(self, h):
        """Bind a listener for ``h``; returns (server, address)."""
        if h.port and h.address:   # re-listen at the same place (power on after a crash)
            addr = h.address.rsplit(":", 1)[0] if ":" in h.address else h.address
            return http.bind_server(addr, h.port, h, self.dispatcher, self.ssl_context), \
                h.address
        if self._alias_mode():
            if self._next_octet is None:
                base = ipaddress.ip_address(self.bind)
                self._next_octet = int(base)
            while self._next_octet < int(ipaddress.ip_address("127.255.255.254")):
                addr = str(ipaddress.ip_address(self._next_octet))
                self._next_octet += 1
                port = self.shared_port if self.shared_port is not None else self.port
                try:
                    srv = http.bind_server(addr, port, h, self.dispatcher, self.ssl_context)
                except OSError:
                    if self.shared_port is None:
                        raise
                    continue
                if self.shared_port is None:
                    self.shared_port = srv.server_address[1]
                return srv, addr
        port = self.port if not self.servers else 0
        srv = http.bind_server(self.bind, port, h, self.dispatcher, self.ssl_context)
        # an unspecified bind address (0.0.0.0) is not an address clients can use
        adv = "127.0.0.1" if self.bind in ("0.0.0.0", "") else self.bind
        return srv, f"{adv}:{srv.server_address[1]}"

    def listen(self, h):
        with self.lock:
            if h.ref in self.servers:
                return
            srv, address = self._bind(h)
            h.port = srv.server_address[1]
            h.address = address
            srv.cli_handler = self.cli_handler
            srv.http_handlers = {"/import_metadata": import_metadata}
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"listener-{h.name_label}", daemon=True)
            t.start()
            self.servers[h.ref] = (srv, t)
        self.world.set_host_address(h, h.address)

    def unlisten(self, h):
        with self.lock:
            entry = self.servers.pop(h.ref, None)
        if entry:
            srv, t = entry
            srv.shutdown()
            srv.server_close()

    @property
    def cli_handler(self):
        try:
            from .xe_server.handler import handle_cli
        except Exception:  # noqa: BLE001 -- the API must serve even if the CLI cannot load
            return None
        return handle_cli

    def stop(self):
        from .classes.task import Tasks
        Tasks.of(self.world).stop_gc()
        with self.lock:
            entries = list(self.servers.values())
            self.servers.clear()
        # shut the listeners down in parallel: each shutdown() waits up to one poll interval
        waits = [threading.Thread(target=srv.shutdown, daemon=True) for srv, _ in entries]
        for t in waits:
            t.start()
        for t in waits:
            t.join()
        for srv, _ in entries:
            srv.server_close()

    # -- description ---------------------------------------------------------------------
    def describe(self) -> dict:
        hosts = []
        for h in self.world.hosts.values():
            if h.pool is None:
                continue
            prow = h.db.get("pool", h.pool.ref)
            hosts.append({"name_label": h.name_label, "uuid": h.uuid, "address": h.address,
                          "url": h.url, "pool": prow["name_label"], "pool_uuid": prow["uuid"],
                          "master": h.is_master})
        return {"hosts": hosts}

    def write_ready_file(self, path):
        """Atomically write the ready file (tmp + rename in the same directory)."""
        data = json.dumps(self.describe(), indent=2) + "\n"
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".ready-")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
