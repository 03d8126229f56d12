"""pool: generic messages come from the datamodel; join/eject live in ``pool_join.py``.

``sync_database`` (``xapi_pool.ml``, every release's source; no HA here, so no metadata VDI):
the master pushes its database to every host (``Host.request_backup`` on each, in parallel,
forwarded with ``do_op_on``), and the first failure is the call's -- HOST_OFFLINE [host] for
a dead member. The simulated hosts share their pool's database, and with ``--state-dir``
every commit is journaled before it is answered, so nothing is left to flush.
"""

from __future__ import annotations

from ..dispatch import api
from .common import on_host


@api("pool.sync_database")
def sync_database(call):
    for host in call.db.refs("host"):
        on_host(call, host)
