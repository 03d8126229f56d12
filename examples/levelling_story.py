#!/usr/bin/env python3
"""The heterogeneous-pool story of docs/levelling.md, run against the default scenario.

    python examples/levelling_story.py              # starts its own world on free ports
    python examples/levelling_story.py READY.json   # or a running `xapi-sim serve
                                                    #   --ready-file READY.json` (fresh)

Uses only the XenAPI package and the documented control API.
"""
from __future__ import annotations

import contextlib
import json
import sys

import XenAPI


def short(fs: str) -> str:
    """The first six words of a featureset: enough to see the differences."""
    return "-".join(fs.split("-")[:6]) + "-..."


def story(urls: dict, out=print):
    """Run the story; ``urls`` maps host name to URL (as the ready file lists them)."""
    s = XenAPI.Session(urls["xs1"])
    s.xenapi.login_with_password("root", "xenroot")
    x = s.xenapi
    pool = x.pool.get_all()[0]
    hosts = {x.host.get_name_label(h): h for h in x.host.get_all()}
    vm = {x.VM.get_name_label(v): v for v in x.VM.get_all()}

    out("1. Each host's HVM featureset, and the pool level (their intersection):")
    for name in sorted(hosts):
        info = x.host.get_cpu_info(hosts[name])
        out(f"   {name} {info['modelname']:<36} {short(info['features_hvm'])}")
    level = x.pool.get_cpu_info(pool)
    out(f"   pool-a level{'':<30} {short(level['features_hvm'])}")

    out("2. web1 runs on xs1 (Haswell) but booted with the pool level:")
    flags = x.VM.get_last_boot_CPU_flags(vm["web1"])
    out(f"   last_boot_CPU_flags = {flags['vendor']} {short(flags['features'])}")
    out(f"   equal to pool level: {flags['features'] == level['features_hvm']}")

    out("3. So it may move to the oldest host of the pool, xs3 (Ivy Bridge):")
    x.VM.pool_migrate(vm["web1"], hosts["xs3"], {})
    out(f"   pool_migrate -> resident on {x.host.get_name_label(x.VM.get_resident_on(vm['web1']))}")

    out("4. xs4, an older Sandy Bridge, joins the pool (called on xs4 with the master's address):")
    s4 = XenAPI.Session(urls["xs4"])
    s4.xenapi.login_with_password("root", "xenroot")
    s4.xenapi.pool.join(x.host.get_address(hosts["xs1"]), "root", "xenroot")
    hosts = {x.host.get_name_label(h): h for h in x.host.get_all()}
    new_level = x.pool.get_cpu_info(pool)
    out(f"   pool level is now {short(new_level['features_hvm'])}")
    for m in x.message.get_all_records().values():
        out(f"   message {m['name']} (priority {m['priority']}): {m['body']}")

    out("5. web1 keeps the flags it booted with, so xs4 refuses it:")
    try:
        x.VM.pool_migrate(vm["web1"], hosts["xs4"], {})
    except XenAPI.Failure as e:
        out(f"   {e.details[0]}: {e.details[3]}")

    out("6. A reboot keeps the featureset; shutdown + start takes the new pool level:")
    x.VM.clean_reboot(vm["web1"])
    out(f"   after clean_reboot: {short(x.VM.get_last_boot_CPU_flags(vm['web1'])['features'])}")
    x.VM.clean_shutdown(vm["web1"])
    x.VM.start(vm["web1"], False, False)
    out(f"   after shutdown+start: {short(x.VM.get_last_boot_CPU_flags(vm['web1'])['features'])}")
    x.VM.pool_migrate(vm["web1"], hosts["xs4"], {})
    out(f"   pool_migrate to xs4 now succeeds: resident on "
        f"{x.host.get_name_label(x.VM.get_resident_on(vm['web1']))}")

    out("7. The AMD host xs5 cannot join an Intel pool:")
    s5 = XenAPI.Session(urls["xs5"])
    s5.xenapi.login_with_password("root", "xenroot")
    try:
        s5.xenapi.pool.join(x.host.get_address(hosts["xs1"]), "root", "xenroot")
    except XenAPI.Failure as e:
        out(f"   pool.join: {e.details}")


def main(argv):
    if len(argv) > 1:
        with open(argv[1]) as fh:
            story({h["name_label"]: h["url"] for h in json.load(fh)["hosts"]})
        return 0
    from xapi_sim.testing import running_world
    with running_world(seed=1) as w:
        story({h["name_label"]: h["url"] for h in w.describe()["hosts"]})
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(sys.argv))
