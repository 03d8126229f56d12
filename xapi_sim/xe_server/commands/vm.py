"""The hand-written VM commands: ``vm-start``, ``-suspend``, ``-resume``, ``-shutdown``,
``-reboot``, ``-migrate`` (within the pool, and cross-pool Storage XenMotion).

Mirrors xen-api Dundee ``cli_operations.ml`` (``vm_start``, ``vm_migrate``,
``hook_no_hosts_available``, ``print_assert_exception``...) and ``cli_frontend.ml`` (their
specs and help texts).
"""

from __future__ import annotations

from ...errors import Failure
from .. import render as R
from ..context import Context
from ..errors import CliFailure, UnixError, printexc
from ..ops import do_vm_op, waiter
from ..selectors import get_host_by_name_or_id, select_vms
from ..values import cli_bool, safe_i64
from .spec import Cmd

# the simple texts of print_assert_exception
_ASSERT_TEXTS = {
    "HOST_DISABLED": "Host disabled (use 'xe host-enable' to re-enable)",
    "HOST_NOT_LIVE": "Host down",
    "HOST_NOT_ENOUGH_FREE_MEMORY": "Not enough free memory",
    "VM_HVM_REQUIRED": "HVM not supported",
}
_ASSERT_REF_TEXTS = {
    "VM_REQUIRES_SR": "VM requires access to SR: ",
    "VM_REQUIRES_NET": "VM requires access to network: ",
    "HOST_CANNOT_ATTACH_NETWORK": "Host cannot attach to network: ",
}


def _assert_exception_text(ctx, e) -> str:
    """``print_assert_exception``."""
    if isinstance(e, Failure):
        p = e.params
        if e.code in _ASSERT_TEXTS:
            return _ASSERT_TEXTS[e.code]
        if e.code == "HOST_NOT_ENOUGH_PCPUS" and len(p) == 2:
            return f"Not enough CPUs (VM needs {p[0]}, but host has {p[1]})"
        if e.code in _ASSERT_REF_TEXTS:
            ref = p[1] if len(p) >= 2 else "<server did not provide reference>"
            return _ASSERT_REF_TEXTS[e.code] + R.ref_convert(ctx.lookup, ref)
        if e.code == "INVALID_VALUE" and len(p) == 2:
            return f"Field has invalid value: {p[0]} = {p[1]}"
    return printexc(e)


def _hook_no_hosts_available(ctx, vm_ref, f):
    """``hook_no_hosts_available``: on NO_HOSTS_AVAILABLE, a table of why each host
    cannot start the VM, then the error."""
    try:
        return f()
    except Failure as e:
        if e.code == "NO_HOSTS_AVAILABLE":
            ctx.printer.lines(
                [
                    "There are no suitable hosts to start this VM on.",
                    "The following table provides per-host reasons for why the VM "
                    "could not be started:",
                    "",
                ]
            )
            table = []
            for h in ctx.call("host.get_all"):
                name = ctx.call("host.get_name_label", h)
                try:
                    ctx.call("VM.assert_can_boot_here", vm_ref, h)
                    table.append((name, "OK"))
                except Exception as ex:  # noqa: BLE001
                    table.append((name, f"Cannot start here [{_assert_exception_text(ctx, ex)}]"))
            ctx.printer.table([table])
        raise


def vm_start(ctx):
    force = ctx.bool_param("force")
    paused = ctx.bool_param("paused")

    def op(rec):
        vm = rec.ref
        if ctx.has("on"):
            host = get_host_by_name_or_id(ctx, ctx.get("on"))
            task = ctx.call("Async.VM.start_on", vm, host.ref, paused, force)
        else:
            task = ctx.call("Async.VM.start", vm, paused, force)
        return _hook_no_hosts_available(ctx, vm, lambda: waiter(ctx, task))

    do_vm_op(ctx, op, ["on", "paused", "progress"])


def vm_suspend(ctx):
    do_vm_op(ctx, lambda rec: waiter(ctx, ctx.call("Async.VM.suspend", rec.ref)), ["progress"])


def vm_resume(ctx):
    force = ctx.bool_param("force")

    def op(rec):
        if ctx.has("on"):
            host = get_host_by_name_or_id(ctx, ctx.get("on"))
            return waiter(ctx, ctx.call("Async.VM.resume_on", rec.ref, host.ref, False, force))
        return _hook_no_hosts_available(
            ctx, rec.ref, lambda: waiter(ctx, ctx.call("Async.VM.resume", rec.ref, False, force))
        )

    do_vm_op(ctx, op, ["on", "progress"])


def vm_shutdown(ctx):
    msg = "Async.VM.hard_shutdown" if ctx.bool_param("force") else "Async.VM.clean_shutdown"
    do_vm_op(ctx, lambda rec: waiter(ctx, ctx.call(msg, rec.ref)), ["progress"])


def vm_reboot(ctx):
    msg = "VM.hard_reboot" if ctx.bool_param("force") else "VM.clean_reboot"
    do_vm_op(ctx, lambda rec: ctx.call(msg, rec.ref), [])


SXM_PARAMS = ["remote-master", "remote-username", "vif", "remote-password", "remote-network", "vdi"]


def vm_migrate(ctx):
    ctx.params = [("host", v) if k in ("host-uuid", "host-name") else (k, v) for k, v in ctx.params]
    options = {k: R.bool_str(cli_bool(k, ctx.get(k, "false"))) for k in ("force", "live", "copy")}
    if ctx.has("remote-master") and ctx.has("remote-username") and ctx.has("remote-password"):
        return _vm_migrate_sxm(ctx, options)
    if not ctx.has("host"):
        raise CliFailure("No destination host specified")
    host = get_host_by_name_or_id(ctx, ctx.get("host")).ref
    do_vm_op(
        ctx,
        lambda rec: ctx.call("VM.pool_migrate", rec.ref, host, options),
        ["host", "host-uuid", "host-name", "live"],
        include_control=True,
    )


def _find_remote(records: dict, want, keys, what):
    """The first (ref, record) of ``records`` whose ``keys`` include ``want``."""
    for r, rec in records.items():
        if want in tuple(rec[k] for k in keys):
            return r, rec
    raise CliFailure(f"Failed to find {what}: {want}")


def _device_map(ctx, prefix, local_cls, remote, remote_cls):
    """``vif:<uuid>=<network uuid>`` / ``vdi:<uuid>=<SR uuid>`` parameters as refs."""
    return {
        ctx.call(f"{local_cls}.get_by_uuid", k[len(prefix) :]): remote.call(
            f"{remote_cls}.get_by_uuid", v
        )
        for k, v in ctx.params
        if k.startswith(prefix) and len(k) > len(prefix)
    }


def _vm_migrate_sxm(ctx, options):
    """Cross-pool (storage) migration: log in to the remote master, ask the destination host
    to receive, then ``VM.migrate_send``. The remote pool is reached through the simulated
    network (the world's host at that address)."""
    ctx.printer.msg(
        "Performing a Storage XenMotion migration. Your VM's VDIs will be migrated with the VM."
    )
    ip = ctx.get("remote-master")
    remote_host = ctx.host.world.host_by_address(ip)
    if remote_host is None or remote_host.state != "up":
        raise UnixError("Connection refused")
    remote = Context(ctx.dispatcher, remote_host, None, ctx.params, ctx.printer, ctx.conn)
    remote.session = remote.dispatcher.dispatch(
        remote_host,
        "session.login_with_password",
        [ctx.get("remote-username"), ctx.get("remote-password"), "1.3", "xapi/2.5"],
    )
    try:
        hosts = remote.call("host.get_all_records")
        if ctx.has("host"):
            host, host_rec = _find_remote(
                hosts, ctx.get("host"), ("hostname", "name_label", "uuid"), "host"
            )
        else:
            host, host_rec = next(iter(hosts.items()))
        if ctx.has("remote-network"):
            network, net_rec = _find_remote(
                remote.call("network.get_all_records"),
                ctx.get("remote-network"),
                ("bridge", "name_label", "uuid"),
                "network",
            )
        else:
            mgmt = [p for p in host_rec["PIFs"] if remote.call("PIF.get_management", p)]
            if not mgmt:
                raise CliFailure(f"Could not find management PIF on host {host_rec['uuid']}")
            network = remote.call("PIF.get_network", mgmt[0])
            net_rec = remote.call("network.get_record", network)
        vif_map = _device_map(ctx, "vif:", "VIF", remote, "network")
        vdi_map = _device_map(ctx, "vdi:", "VDI", remote, "SR")
        try:
            pools = remote.call("pool.get_all")
            ctx.printer.msg("Selecting remote pool's default SR for migrating VDIs")
            default_sr = remote.call("pool.get_default_SR", pools[0])
        except Exception:  # noqa: BLE001
            default_sr = None
        ignore = ["host", "host-uuid", "host-name", "live", "force", "copy"] + SXM_PARAMS
        if default_sr is not None:
            vms = select_vms(ctx, ignore, include_template=True)
            if not vms:
                raise CliFailure("No matching VMs found")
            for vbd in ctx.call("VM.get_VBDs", vms[0].ref):
                if not ctx.call("VBD.get_empty", vbd):
                    vdi = ctx.call("VBD.get_VDI", vbd)
                    vdi_map.setdefault(vdi, default_sr)
        ctx.params = [(k, v) for k, v in ctx.params if len(k) < 5 or k[:4] not in ("vif:", "vdi:")]
        ctx.printer.msg(
            f"Will migrate to remote host: {host_rec['name_label']}, using remote "
            f"network: {net_rec['name_label']}. Here is the VDI mapping:"
        )
        for vdi, sr in vdi_map.items():
            ctx.printer.msg(
                f"VDI {ctx.call('VDI.get_uuid', vdi)} -> SR {remote.call('SR.get_uuid', sr)}"
            )
        token = remote.call("host.migrate_receive", host, network, options)
        new_vm = do_vm_op(
            ctx,
            lambda rec: ctx.call(
                "VM.migrate_send", rec.ref, token, True, vdi_map, vif_map, options
            ),
            ignore,
            include_template=True,
        )[0]
        if cli_bool("copy", ctx.get("copy", "false")):
            ctx.printer.lines([remote.call("VM.get_uuid", new_vm)])
    finally:
        try:
            remote.call("session.logout")
        except Failure:
            pass  # best-effort logout of the remote session, as xapi_cli.ml


_VM_OP = ["Standard", "Vm_selectors"]

# vm_reset_powerstate's (and snapshot_reset_powerstate's) ``failwith``: a Cli_failure, as
# cli_operations.ml redefines ``failwith``
FORCE_NEEDED = (
    "This operation is extremely dangerous and may cause data loss. This operation must be "
    "forced (use --force)."
)


def vm_vcpu_hotplug(ctx):
    """``vm_vcpu_hotplug``: ``new-vcpus`` parsed first (before any VM is selected)."""
    nvcpu = safe_i64("new-vcpus", ctx.get("new-vcpus"))
    do_vm_op(ctx, lambda rec: ctx.call("VM.set_VCPUs_number_live", rec.ref, nvcpu), ["new-vcpus"])


def vm_reset_powerstate(ctx):
    """``vm_reset_powerstate``: refused unless ``force`` is given (Dundee asks only that the
    key be there, whatever its value), then ``VM.power_state_reset`` on each selected VM."""
    if not ctx.has("force"):
        raise CliFailure(FORCE_NEEDED)
    do_vm_op(ctx, lambda rec: ctx.call("VM.power_state_reset", rec.ref), [])


COMMANDS = {
    "vm-start": Cmd(
        [],
        ["force", "on", "paused"],
        "Start the selected VM(s). Where pooling is enabled, the host on which "
        "to start can be specified with the 'on' parameter that takes a uuid. "
        "The optional parameter '--force' will bypass any "
        "hardware-compatibility warnings.",
        vm_start,
        _VM_OP,
    ),
    "vm-suspend": Cmd([], [], "Suspend the selected VM(s).", vm_suspend, _VM_OP),
    "vm-resume": Cmd([], ["force", "on"], "Resume the selected VM(s).", vm_resume, _VM_OP),
    "vm-shutdown": Cmd(
        [],
        ["force"],
        "Shutdown the selected VM(s). The optional argument "
        "--force will forcibly shut down the VM.",
        vm_shutdown,
        _VM_OP,
    ),
    "vm-reboot": Cmd([], ["force"], "Reboot the selected VM(s).", vm_reboot, _VM_OP),
    "vm-reset-powerstate": Cmd(
        [],
        ["force"],
        "Force the VM powerstate to halted in the management toolstack database only. "
        "This command is used to recover a VM that is marked as 'running', but is known to "
        "be on a dead slave host that will not recover. This is a potentially dangerous "
        "operation: you must ensure that the VM you are forcing to 'halted' is definitely "
        "not running anywhere.",
        vm_reset_powerstate,
        _VM_OP,
    ),
    "vm-vcpu-hotplug": Cmd(
        ["new-vcpus"],
        [],
        "Dynamically adjust the number of VCPUs available to running VM.",
        vm_vcpu_hotplug,
        ["Vm_selectors"],
    ),
    "vm-migrate": Cmd(
        [],
        [
            "live",
            "host",
            "host-uuid",
            "remote-master",
            "remote-username",
            "remote-password",
            "remote-network",
            "force",
            "copy",
            "vif:",
            "vdi:",
        ],
        "Migrate the selected VM(s). The parameter '--live' will migrate the "
        "VM without shutting it down. The 'host' parameter matches can be "
        "either the name or the uuid of the host. If you are migrating a VM "
        "to a remote pool, you will need to specify the remote-master, "
        "remote-username, and remote-password parameters. remote-master is "
        "the network address of the master host. To migrate to a particular "
        "host within a remote pool, you may additionally specify the host or "
        "host-uuid parameters. Also for cross-pool migration, setting "
        "'copy=true' will enable the copy mode so that a stopped vm can be "
        "copied, instead of migrating, to the destination pool. The vif and "
        "vdi mapping parameters take the form 'vif:<source vif uuid>=<dest "
        "network uuid>' and 'vdi:<source vdi uuid>=<dest sr uuid>'. "
        "Unfortunately, destination uuids cannot be tab-completed.",
        vm_migrate,
        _VM_OP,
    ),
}
