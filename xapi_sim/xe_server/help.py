"""``xe help``: the common or full command list, or the spec of named commands.

Mirrors xen-api Dundee ``cli_frontend.ml`` ``rio_help`` (and ``make_list`` in
``render.py``); runs without logging in.
"""

from __future__ import annotations

from . import render as R
from .commands import table

VM_SELECTORS_INFO = (
    " The simplest way to select the VM on which the operation is to be performed is by "
    "supplying the argument 'vm=<name or uuid>'. VMs can also be specified by filtering the "
    "full list of VMs on the values of fields. For example, specifying 'power-state=halted' "
    "will select all VMs whose power-state field is equal to 'halted'. Where multiple VMs are "
    "matching, the option '--multiple' must be specified to perform the operation. The full "
    "list of fields that can be matched can be obtained by the command 'xe vm-list "
    "params=all'. If no parameters to select VMs are given, the operation will be performed "
    "on all VMs."
)
HOST_SELECTORS_INFO = (
    " The simplest way to select the host on which the operation is to be performed is by "
    "supplying the argument 'host=<name or uuid>'. Hosts can also be specified by filtering "
    "the full list of hosts on the values of fields. For example, specifying 'enabled=true' "
    "will select all hosts whose 'enabled' field is equal to 'true'. Where multiple hosts are "
    "matching, and the operation can be performed on multiple hosts, the option '--multiple' "
    "must be specified to perform the operation. The full list of fields that can be matched "
    "can be obtained by the command 'xe host-list params=all'. If no parameters to select "
    "hosts are given, the operation will be performed on all hosts."
)

HELP_EXCLUDE = ["server", "username", "password", "port", "minimal", "all"]


def _command_help(printer, name, spec):
    vm_sel = "Vm_selectors" in spec.flags
    host_sel = "Host_selectors" in spec.flags
    optional = (
        list(spec.optn)
        + (["<vm-selectors>"] if vm_sel else [])
        + (["<host-selectors>"] if host_sel else [])
    )
    desc = (
        spec.help
        + (VM_SELECTORS_INFO if vm_sel else "")
        + (HOST_SELECTORS_INFO if host_sel else "")
    )
    printer.table(
        [
            [
                ("command name        ", name),
                ("reqd params     ", ", ".join(spec.reqd)),
                ("optional params ", ", ".join(optional)),
                ("description     ", desc),
            ]
        ]
    )


def help_command(printer, params, argv0="xe", host=None):
    """``host``: the host asked, whose release decides which commands exist."""
    cmds = {n: c for n, c in table().items() if c.available(host)}
    asked = [k for k, _ in params if k not in HELP_EXCLUDE]
    if asked:
        for name in asked:
            spec = cmds.get(name)
            if spec is None:
                printer.lines([f"Unknown command '{name}'"])
            else:
                _command_help(printer, name, spec)
        return
    names = sorted(n for n, c in cmds.items() if "Hidden" not in c.flags)
    usage = (
        f"Usage: {argv0} <command> [-s server] [-pw passwd] [-p port] [-u user] "
        "[-pwf password-file]\n  [command specific arguments]\n\n"
        f"To get help on a specific command: {argv0} help <command>\n"
    )
    if dict(params).get("all") == "true":
        if printer.minimal:
            printer.lines(names)
            return
        host_cmds = [n for n in names if n.startswith("host-")]
        vm_cmds = [n for n in names if n.startswith("vm-")]
        other = [n for n in names if not n.startswith(("host-", "vm-"))]
        printer.lines([usage + "\nFull command list\n-----------------"])
        printer.lines(R.make_list(host_cmds))
        printer.lines(R.make_list([""]))
        printer.lines(R.make_list(vm_cmds))
        printer.lines(R.make_list([""]))
        printer.lines(R.make_list(other))
        return
    std = [n for n in names if "Standard" in cmds[n].flags]
    if printer.minimal:
        printer.lines(std)
        return
    printer.lines(
        [
            usage + f"To get a full listing of commands: {argv0} help --all\n\n"
            "Common command list\n-------------------"
        ]
    )
    printer.lines(R.make_list(std))
