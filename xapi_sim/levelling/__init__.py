"""CPU feature levelling ("levelling v2", XenServer 7.0 Dundee): pure, in-memory logic.

* ``featureset``: featureset strings and arithmetic (xen-api ``cpuid_helpers.ml``, spec §2).
* ``cpus``: the CPU model catalogue and each host's ``cpu_info`` (spec §1.1, §1.4, §16).
* ``policy``: pool level, alerts, VM flags and compatibility checks (spec §3-§11, §18).

No I/O beyond reading the committed ``xapi_sim/data/cpus.json``; no threads, no sockets.
"""

__all__ = ["featureset", "cpus", "policy"]
