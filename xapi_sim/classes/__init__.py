"""Hand-written behaviour, one module per XAPI class or family (``xapi_<class>.ml`` analogues).

Importing this package registers every handler with ``dispatch.api``.
"""

from . import (  # noqa: F401
    certificates,
    data_sources,
    event,
    guest_agent,
    host,
    host_lifecycle,
    host_plugins,
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
    system_status,
    task,
    updates,
    vdi_migrate,
    vm,
    vm_agility,
    vm_appliance,
    vm_config,
    vm_domain,
    vm_firmware,
    vm_lifecycle,
    vm_provision,
)
