#!/usr/bin/env python3
"""A Rolling Pool Upgrade from XenServer 6.5 SP1 to 7.0, as in docs/rolling-upgrade.md.

    python examples/rolling_upgrade.py              # starts examples/rpu-from-6.5.toml itself
    python examples/rolling_upgrade.py READY.json   # or a fresh `xapi-sim serve --scenario
                                                    #   examples/rpu-from-6.5.toml --ready-file`

Uses only the XenAPI package and the documented control API (sim.host_install).
"""
from __future__ import annotations

import json
import os
import sys

import XenAPI

HERE = os.path.dirname(os.path.abspath(__file__))


def short(fs: str) -> str:
    return "-".join(fs.split("-")[:6]) + ("-..." if fs.count("-") > 5 else "")


def walk(urls: dict, out=print):
    def login():
        s = XenAPI.Session(urls["old-master"])
        s.xenapi.login_with_password("root", "xenroot")
        return s

    s = login()
    x = s.xenapi
    host = {x.host.get_name_label(h): h for h in x.host.get_all()}
    vm = {n: x.VM.get_by_name_label(n)[0] for n in ("erp", "web", "mail")}
    pool = x.pool.get_all()[0]

    def flags(name):
        f = x.VM.get_last_boot_CPU_flags(vm[name])
        return f"{short(f.get('features', ''))}"

    def install(name):
        x.host.disable(host[name])
        x.host.evacuate(host[name])
        s.xenapi_request("sim.host_install", (host[name], "7.0.0"))

    out("1. The 6.5 SP1 pool: identical (masked) old-style features, 4-word VM flags")
    for n in ("old-master", "old-ivy", "old-sandy"):
        sv = x.host.get_software_version(host[n])
        out(f"   {n:<10} {sv['product_version']} platform {sv['platform_version']}  "
            f"features {x.host.get_cpu_info(host[n])['features']}")
    for n in ("erp", "web", "mail"):
        out(f"   VM {n:<5} {x.VM.get_power_state(vm[n]):<9} flags {flags(n)}")

    out("2. Upgrade the master first (disable, evacuate, install 7.0, boot)")
    install("old-master")
    s = login()        # the master's xapi restarted: log in again
    x = s.xenapi
    out(f"   other_config: {x.pool.get_other_config(pool)}")
    out(f"   pool level = the master's set: {short(x.pool.get_cpu_info(pool)['features_hvm'])}")

    out("3. Move the running VMs forward onto the upgraded master")
    for n in ("erp", "web"):
        x.VM.pool_migrate(vm[n], host["old-master"], {})
        out(f"   {n:<4} now on old-master, flags {flags(n)} (old set translated + host tail)")
    try:
        x.VM.pool_migrate(vm["erp"], host["old-ivy"], {})
    except XenAPI.Failure as e:
        out(f"   and not back to an old host: {e.details}")

    out("4. Upgrade each remaining host in turn")
    for n in ("old-ivy", "old-sandy"):
        install(n)
        rpu = "rolling_upgrade_in_progress" in x.pool.get_other_config(pool)
        out(f"   {n} upgraded; pool level {short(x.pool.get_cpu_info(pool)['features_hvm'])}"
            f"; RPU {'in progress' if rpu else 'finished'}")
    out(f"   CPU alerts raised during the upgrade: {len(x.message.get_all())}")

    out("5. The VMs carry host-level flags until shutdown and start")
    level = x.pool.get_cpu_info(pool)
    for n in ("erp", "web"):
        key = "features_hvm" if x.VM.get_HVM_boot_policy(vm[n]) else "features_pv"
        before = x.VM.get_last_boot_CPU_flags(vm[n])["features"]
        x.VM.clean_shutdown(vm[n])
        x.VM.start(vm[n], False, False)
        after = x.VM.get_last_boot_CPU_flags(vm[n])["features"]
        out(f"   {n:<4} before {short(before)} -> after start {short(after)} "
            f"(= pool level: {after == level[key]})")

    out("6. The VM suspended by 6.5 resumes on a 7.0 host with back-filled flags")
    x.VM.resume_on(vm["mail"], host["old-ivy"], False, False)
    out(f"   mail flags {flags('mail')}")


def main(argv):
    if len(argv) > 1:
        with open(argv[1]) as fh:
            walk({h["name_label"]: h["url"] for h in json.load(fh)["hosts"]})
        return 0
    from xapi_sim.testing import running_world
    with running_world(os.path.join(HERE, "rpu-from-6.5.toml"), seed=1) as w:
        walk({h["name_label"]: h["url"] for h in w.describe()["hosts"]})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
