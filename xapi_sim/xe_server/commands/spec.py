"""What the command table holds for one command (xen-api ``cli_frontend.ml`` ``cmd_spec``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Cmd:
    """Required and optional parameters, help text, implementation ``impl(ctx)``, and flags:
    ``Standard`` (in the short help list), ``Vm_selectors`` / ``Host_selectors`` (help adds
    the selector text), ``Hidden``. ``with_fd``: the command talks back to the client.
    ``needs``: the API message (``Class.name``) a release must serve to have the command
    (its CLI came with it); elsewhere it is an unknown command."""

    reqd: list
    optn: list
    help: str
    impl: Callable
    flags: list = field(default_factory=list)
    with_fd: bool = False
    needs: str | None = None

    def available(self, host) -> bool:
        """Whether the command exists on ``host``: its pool's release serves ``needs`` (not
        removed); without a pool to ask, it does and its call answers."""
        if self.needs is None or host is None or host.pool is None:
            return True
        cls, _, msg = self.needs.partition(".")
        c = host.pool.schema.classes.get(cls)
        m = c.messages.get(msg) if c is not None else None
        return m is not None and not m.removed
