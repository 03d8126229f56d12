"""Hand-written behaviour, one module per XAPI class or family (``xapi_<class>.ml`` analogues).

Importing this package registers every handler with ``dispatch.api``.
"""

from . import (  # noqa: F401
    data_sources,
    event,
    guest_agent,
    host,
    host_lifecycle,
    message,
    network_misc,
    network_pif,
    network_vif,
    pool,
    pool_join,
    session,
    sim,
    sim_world,
    storage_sr,
    storage_vbd,
    storage_vdi,
    storage_vm,
    task,
    vdi_migrate,
    vm,
    vm_config,
    vm_lifecycle,
    vm_provision,
)
