"""Helpers of the disk and XVA tests: SRs, VDIs and one HTTP request."""

from __future__ import annotations

import http.client
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
