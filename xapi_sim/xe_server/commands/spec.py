"""What the command table holds for one command (xen-api ``cli_frontend.ml`` ``cmd_spec``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Cmd:
    """Required and optional parameters, help text, implementation ``impl(ctx)``, and flags:
    ``Standard`` (in the short help list), ``Vm_selectors`` / ``Host_selectors`` (help adds
    the selector text), ``Hidden``. ``with_fd``: the command talks back to the client."""

    reqd: list
    optn: list
    help: str
    impl: Callable
    flags: list = field(default_factory=list)
    with_fd: bool = False
