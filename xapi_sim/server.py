"""Run a world: one listener per host, addresses, TLS, start and stop.

Each simulated host answers on its own endpoint and ``host.address`` says where: on Linux the
hosts share one port on distinct loopback addresses (127.0.0.1, 127.0.0.2, ... -- the whole
127/8 is local, no setup needed), so ``host.address`` is a bare IP as on a real pool. Where
that is not possible (another bind address, or aliases refused) every host gets its own port
on the bind address and ``host.address`` is ``ip:port``.

All listeners of a simulator are served by one HTTP front (``wire/front.py``: a selector
loop and a bounded worker pool). Every endpoint speaks HTTP and HTTPS on its one port: each
host presents its own self-signed certificate (``wire/tls.py``), kept in
``<state dir>/certs/<host uuid>.pem`` with ``--state-dir`` (reused at the next start) and in
a temporary directory otherwise; ``--tls-cert``/``--tls-key`` give one certificate for all.
The URLs handed to clients (``host.url``, the ready file's ``url``, ``Host.migrate_receive``'s
``master``) are ``http://`` as in Dundee (``xapi_host.ml`` ``migrate_receive``), or
``https://`` when a certificate was given (``world.tls``); the ready file lists both.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from . import (
    classes,  # noqa: F401  -- registers every handler
    install_certs,
)
from .classes.cross_pool_dest import import_metadata
from .dispatch import Dispatcher
from .multiproc import write_json
from .persist import DurableDispatcher
from .tasks import Tasks
from .vdi_store import VdiStore
from .wire import front as front_mod
from .wire import http, tls
from .xe_server.handler import handle_cli

log = logging.getLogger(__name__)


class Simulator:
    """A world plus its listeners."""

    def __init__(self, world, bind="127.0.0.1", port=0, tls_cert=None, tls_key=None, cert_dir=None):
        self.world = world
        self.bind = bind
        self.port = port
        self.dispatcher: Dispatcher | DurableDispatcher = Dispatcher(world)
        self.fixed_tls = None
        if tls_cert:
            self.fixed_tls = tls.FixedTls(tls.server_context(tls_cert, tls_key), tls_cert)
            world.tls = True
        self.certs = tls.CertStore(cert_dir)
        self._tls_sources = {}  # host uuid -> TlsSource
        self.front = front_mod.Front(name="xapi-sim")
        self.servers = {}  # host ref -> listener
        self.shared_port = None
        self._next_octet = None
        self.lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one listener reconciliation at a time
        world.on_host_added.append(self.listen)
        world.simulator = self

    # -- listeners -----------------------------------------------------------------------
    def start(self):
        self.front.start()
        for h in list(self.world.hosts.values()):
            if h.state == "up" and h.pool is not None:
                self.listen(h)
        # xapi's periodic DB GC pass: finished tasks time out (classes/task.py)
        Tasks.of(self.world).start_gc()
        return self

    def make_durable(self, journal):
        """Journal every call's changes before its reply (``--state-dir``)."""
        self.dispatcher = DurableDispatcher(self.dispatcher, journal)
        self.journal = journal

    def _alias_mode(self):
        try:
            ip = ipaddress.ip_address(self.bind)
        except ValueError:
            return False
        return ip.version == 4 and ip.is_loopback

    def tls_for(self, h, address):
        """The TLS source of host ``h`` listening at ``address`` (an IP or a name): from 8.2
        CU1 it serves the certificate the API says (``install_certs.served``)."""
        if self.fixed_tls is not None:
            return self.fixed_tls
        src = self._tls_sources.get(h.uuid)
        if src is None or src.address != address:
            world = self.world
            src = self._tls_sources[h.uuid] = tls.TlsSource(
                self.certs, h.uuid, address, provider=lambda: install_certs.served(world, h)
            )
        return src

    def _new_server(self, h, addr, port):
        return http.bind_server(addr, port, h, self.dispatcher)

    def _bind(self, h):
        """Bind a listener for ``h``; returns (server, address)."""
        if h.port and h.address:  # re-listen at the same place (power on after a crash)
            addr = h.address.rsplit(":", 1)[0] if ":" in h.address else h.address
            return self._new_server(h, addr, h.port), h.address
        if self._alias_mode():
            if self._next_octet is None:
                base = ipaddress.ip_address(self.bind)
                self._next_octet = int(base)
            while self._next_octet < int(ipaddress.ip_address("127.255.255.254")):
                addr = str(ipaddress.ip_address(self._next_octet))
                self._next_octet += 1
                port = self.shared_port if self.shared_port is not None else self.port
                try:
                    srv = self._new_server(h, addr, port)
                except OSError:
                    if self.shared_port is None:
                        raise
                    continue
                if self.shared_port is None:
                    self.shared_port = srv.server_address[1]
                return srv, addr
        port = self.port if not self.servers else 0
        srv = self._new_server(h, self.bind, port)
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
            srv.tls = self.tls_for(h, h.address_for_url)
            srv.cli_handler = self.cli_handler
            srv.http_handlers = {"/import_metadata": import_metadata}
            self.servers[h.ref] = srv
        self.front.add_listener(srv)
        self.world.set_host_address(h, h.address)

    def sync_listener(self, h):
        """Make ``h``'s endpoint match its power state: listening when up, closed
        otherwise. Runs after the commit of each power change (``txm.on_commit``); the
        check and the act are one step, so whichever sync runs last sees the last state
        and concurrent crashes and power-ons cannot leave an up host unreachable."""
        with self._sync_lock:
            if h.state == "up":
                self.listen(h)
            else:
                self.unlisten(h)

    def unlisten(self, h):
        with self.lock:
            srv = self.servers.pop(h.ref, None)
        if srv is not None:
            self.front.remove_listener(srv)

    @property
    def cli_handler(self):
        return handle_cli

    def stop(self):
        Tasks.of(self.world).stop_gc()
        with self.lock:
            self.servers.clear()
        self.front.stop()  # closes every listener and connection
        self.certs.cleanup()  # a temporary certificate directory goes
        contents = self.world.existing_service(VdiStore)
        if contents is not None:
            contents.cleanup()  # a temporary disk directory goes

    # -- description ---------------------------------------------------------------------
    def describe(self) -> dict:
        hosts = []
        for h in self.world.hosts.values():
            if h.pool is None:
                continue
            prow = h.db.get("pool", h.pool.ref)
            base = f"{h.address_for_url}:{h.port}/"
            entry = {
                "name_label": h.name_label,
                "uuid": h.uuid,
                "address": h.address,
                "url": h.url,
                "pool": prow["name_label"],
                "pool_uuid": prow["uuid"],
                "master": h.is_master,
                "http_url": "http://" + base,
                "https_url": "https://" + base,
            }
            if getattr(h, "recorded_address", None) is not None:  # loaded by playback.py
                entry["recorded_address"] = h.recorded_address
            hosts.append(entry)
        return {"hosts": hosts}

    def write_ready_file(self, path):
        """Atomically write the ready file (tmp + rename in the same directory)."""
        write_json(path, self.describe())
