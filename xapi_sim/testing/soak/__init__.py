"""Soak xapi-sim: mixed load plus injected faults for a given time, then check everything.

    python scripts/soak.py --seconds 60 [--state-dir DIR] [--clients 30] [--pollers 20]
    python -m xapi_sim.testing.soak ...            (the same)

Starts ``xapi-sim serve`` (loopback only, a generated two-pool world) as a child process and
runs against it, for ``--seconds``:

* ``--clients`` XenAPI clients, each owning one VM: reads (records, ``get_all_records``,
  ``get_all_records_where``), writes (``other_config`` map edits, name changes, a shared
  ``pool.other_config``) and VM operations (start, clean_shutdown, suspend, resume,
  pool_migrate, hard_reboot), each client keeping a model of what the server acknowledged;
* ``--pollers`` ``event.from`` long-polls keeping a cache of every VM, as XenCenter does;
* a chaos thread: fault rules (``sim.fault_add``/``fault_clear``: errors, delays,
  probabilities, counts), host crashes and power-ons (``sim.host_crash``/``host_power_on``),
  logouts of sessions in use; with ``--state-dir`` also one ``kill -9`` of the server in the
  middle of the load and a restart from the state directory.

Then it checks: every thread finished (no deadlock); invariants (each VM resident only on a
host of its pool, power state consistent with ``resident_on`` and ``host.resident_VMs``, host
memory accounting, no stray pending tasks); every acknowledged write visible; every poller's
cache equal to the server's records; a failed operation never changed its VM; long-polls
returned within their timeout; the server's thread count and memory bounded; and with
``--state-dir``, after a final ``kill -9`` and restart, the same state and invariants. It prints
what it did (calls per operation and outcome, latencies) and what it checked; the exit
status is 0 only if every check passed.

Modules: ``calls.py`` (scenario, sessions, counted calls), ``load.py`` (``Client``,
``Poller``), ``chaos.py``, ``checks.py`` (invariants, acknowledged writes, caches),
``run.py`` (the child server and ``main``). The load and the checks also serve
tests/reliability/test_concurrency.py against an in-process world. Needs the ``XenAPI``
package (the ``test`` extra).
"""

from __future__ import annotations

from .calls import CONN_ERRORS, LIVE, Stats, call, close, login, scenario_toml, session
from .chaos import FAULT_MENU, Chaos
from .checks import (
    all_invariants,
    all_vm_records,
    check_invariants,
    converge_all,
    layout,
    snapshot,
    verify_clients,
)
from .load import Client, Poller
from .run import Server, main

__all__ = [
    "CONN_ERRORS",
    "FAULT_MENU",
    "LIVE",
    "Chaos",
    "Client",
    "Poller",
    "Server",
    "Stats",
    "all_invariants",
    "all_vm_records",
    "call",
    "check_invariants",
    "close",
    "converge_all",
    "layout",
    "login",
    "main",
    "scenario_toml",
    "session",
    "snapshot",
    "verify_clients",
]
