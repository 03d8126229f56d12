"""``VM.assert_agile`` (``classes/vm_agility.py``): a VM is agile when every disk's SR is
shared with an attached PBD on each enabled host and every VIF's network has a
non-bond-member PIF on each enabled host -- over the XenAPI package."""

from __future__ import annotations

from session_kit import failure, logged_in


def _vdi(x, sr, name):
    return x.VDI.create(
        {
            "SR": sr,
            "virtual_size": str(1 << 30),
            "type": "user",
            "name_label": name,
            "name_description": "",
            "sharable": False,
            "read_only": False,
            "other_config": {},
            "xenstore_data": {},
            "sm_config": {},
            "tags": [],
        }
    )


def _vbd(x, vm, vdi, device, empty=False, kind="Disk"):
    return x.VBD.create(
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": device,
            "bootable": False,
            "mode": "RW" if kind == "Disk" else "RO",
            "type": kind,
            "empty": empty,
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )


def _vif(x, vm, net, device):
    return x.VIF.create(
        {
            "device": device,
            "network": net,
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )


def test_disks_and_networks_decide_agility():
    with logged_in() as (w, s):
        x = s.xenapi
        vm = x.VM.get_by_name_label("web1")[0]
        nets = {v["name_label"]: r for r, v in x.network.get_all_records().items()}
        x.VM.assert_agile(vm)
        _vif(x, vm, nets["Pool-wide network associated with eth0"], "0")
        x.VM.assert_agile(vm)
        # an empty CD drive is skipped
        _vbd(x, vm, "OpaqueRef:NULL", "3", empty=True, kind="CD")
        x.VM.assert_agile(vm)
        # a purely internal network has no PIF on any host: not properly shared
        internal = nets["Host internal management network"]
        vif = _vif(x, vm, internal, "1")
        assert failure(x.VM.assert_agile, vm) == [
            "HA_CONSTRAINT_VIOLATION_NETWORK_NOT_SHARED",
            internal,
        ]
        x.VIF.destroy(vif)
        # a disk on one host's local storage
        xs1 = x.host.get_by_name_label("xs1")[0]
        local = next(
            r
            for r, v in x.SR.get_all_records().items()
            if v["name_label"] == "Local storage" and x.PBD.get_host(v["PBDs"][0]) == xs1
        )
        vbd = _vbd(x, vm, _vdi(x, local, "local"), "0")
        assert failure(x.VM.assert_agile, vm) == ["HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", local]
        x.VBD.destroy(vbd)
        # a shared SR: a PBD on every host, all attached
        nfs = x.SR.create(
            xs1,
            {"server": "nfs.example", "serverpath": "/vms"},
            "0",
            "nfs",
            "",
            "nfs",
            "user",
            True,
            {},
        )
        _vbd(x, vm, _vdi(x, nfs, "shared"), "0")
        x.VM.assert_agile(vm)
        # one host's PBD unplugged: not properly shared while that host is enabled
        xs3 = x.host.get_by_name_label("xs3")[0]
        pbd = next(p for p in x.SR.get_PBDs(nfs) if x.PBD.get_host(p) == xs3)
        x.PBD.unplug(pbd)
        assert failure(x.VM.assert_agile, vm) == ["HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", nfs]
        x.host.disable(xs3)
        x.VM.assert_agile(vm)
        assert failure(x.VM.assert_agile, "OpaqueRef:nonsense")[0] == "HANDLE_INVALID"


def test_a_bond_member_does_not_share_its_network():
    with logged_in() as (w, s):
        x = s.xenapi
        # a halted VM: Bond.create moves the VIFs of the host's running VMs to the bond
        vm = next(
            r
            for r, v in x.VM.get_all_records().items()
            if v["power_state"] == "Halted" and not v["is_a_template"]
        )
        nets = {v["name_label"]: r for r, v in x.network.get_all_records().items()}
        eth2 = nets["Pool-wide network associated with eth2"]
        _vif(x, vm, eth2, "0")
        x.VM.assert_agile(vm)
        xs2 = x.host.get_by_name_label("xs2")[0]
        members = [
            p
            for p in x.host.get_PIFs(xs2)
            if x.PIF.get_device(p) in ("eth2", "eth3")
            and not x.PIF.get_VLAN_master_of(p) != "OpaqueRef:NULL"
        ]
        bond_net = x.network.create(
            {"name_label": "bond", "name_description": "", "MTU": "1500", "other_config": {}}
        )
        x.Bond.create(bond_net, members, "", "balance-slb", {})
        assert failure(x.VM.assert_agile, vm) == [
            "HA_CONSTRAINT_VIOLATION_NETWORK_NOT_SHARED",
            eth2,
        ]
