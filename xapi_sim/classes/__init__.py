"""Hand-written behaviour, one module per XAPI class or family (``xapi_<class>.ml`` analogues).

Importing this package registers every handler with ``dispatch.api``.
"""
from . import event, host, pool, session, sim, task, vm  # noqa: F401
