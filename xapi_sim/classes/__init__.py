"""Hand-written behaviour, one module per XAPI class or family (``xapi_<class>.ml`` analogues).

Importing this package registers every handler with ``dispatch.api``.
"""
from . import (event, host, host_lifecycle, pool, pool_join, session, sim, task,  # noqa: F401
               vm, vm_config, vm_lifecycle)
