"""Helpers of the disk and XVA tests: SRs, VDIs and one HTTP request."""

from __future__ import annotations

import http.client
import os
import ssl

MiB = 1024 * 1024


def local_sr(s, host_name):
    for r, rec in s.xenapi.SR.get_all_records().items():
        if rec["type"] == "lvm":
            if s.xenapi.host.get_name_label(s.xenapi.PBD.get_host(rec["PBDs"][0])) == host_name:
                return r
    raise AssertionError(host_name)


def new_vdi(s, sr, size=8 * MiB, name="disk"):
    return s.xenapi.VDI.create(
        {
            "SR": sr,
            "virtual_size": str(size),
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


def request(host, method, target, body=None, headers=None, tls=False):
    """(status, headers, body) of one request to ``host``."""
    if tls:
        ctx = ssl._create_unverified_context()
        c = http.client.HTTPSConnection(host.address_for_url, host.port, timeout=30, context=ctx)
    else:
        c = http.client.HTTPConnection(host.address_for_url, host.port, timeout=30)
    try:
        c.request(method, target, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def vm_with_two_disks(rw, s, name="exported"):
    """A halted VM with two disks holding data and a VIF; returns (vm, {userdevice: data})."""
    m = rw.world.pools[0].master
    sr = local_sr(s, "xs1")
    tmpl = next(
        r
        for r, rec in s.xenapi.VM.get_all_records().items()
        if rec["is_a_template"] and rec["name_label"].startswith("Debian")
    )
    vm = s.xenapi.VM.clone(tmpl, name)
    s.xenapi.VM.set_is_a_template(vm, False)
    disks = {}
    for dev, size, data in (
        ("0", 4 * MiB, os.urandom(MiB) + bytes(2 * MiB) + b"end of disk 0"),
        ("1", 3 * MiB + 4096, b"second" * 1000),
    ):
        vdi = new_vdi(s, sr, size, f"{name}-{dev}")
        q = f"/import_raw_vdi?session_id={s._session}&vdi={vdi}"
        assert request(m, "PUT", q, data)[0] == 200
        s.xenapi.VBD.create(
            {
                "VM": vm,
                "VDI": vdi,
                "userdevice": dev,
                "bootable": dev == "0",
                "mode": "RW",
                "type": "Disk",
                "unpluggable": True,
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
        disks[dev] = data
    net = next(r for r, rec in s.xenapi.network.get_all_records().items() if rec["PIFs"])
    s.xenapi.VIF.create(
        {
            "device": "0",
            "network": net,
            "VM": vm,
            "MAC": "aa:bb:cc:dd:ee:01",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    return vm, disks


def disk_contents(rw, s, vm):
    m = rw.world.pools[0].master
    out = {}
    for vbd in s.xenapi.VM.get_VBDs(vm):
        rec = s.xenapi.VBD.get_record(vbd)
        if rec["type"] != "Disk":
            continue
        q = f"/export_raw_vdi?session_id={s._session}&vdi={rec['VDI']}"
        out[rec["userdevice"]] = request(m, "GET", q)[2]
    return out
