#!/usr/bin/env python3
"""A Rolling Pool Upgrade from Citrix Hypervisor 8.2 CU1 to XenServer 8, with a host of an
older CPU joining midway, as in docs/rolling-upgrade.md ("8.2 CU1 to XenServer 8").

    python examples/rolling_upgrade_8.py              # starts examples/rpu-8.2-to-8.toml
    python examples/rolling_upgrade_8.py READY.json   # or a fresh `xapi-sim serve --scenario
                                                      #   examples/rpu-8.2-to-8.toml --ready-file`

Uses only the XenAPI package and the documented control API (sim.host_install).
"""

from __future__ import annotations

import json
import os
import sys
import xmlrpc.client

import XenAPI

HERE = os.path.dirname(os.path.abspath(__file__))
MEMBERS = ("cu1-a", "cu1-b", "cu1-c")


def short(fs: str) -> str:
    return "-".join(fs.split("-")[:4]) + ("-..." if fs.count("-") > 3 else "")


def walk(urls: dict, out=print):
    def login(name="cu1-a"):
        s = XenAPI.Session(urls[name])
        s.xenapi.login_with_password("root", "xenroot", "2.15", "rpu-example")
        return s

    s = login()
    x = s.xenapi
    host = {x.host.get_name_label(h): h for h in x.host.get_all()}
    vm = {n: x.VM.get_by_name_label(n)[0] for n in ("app", "db", "batch")}
    pool = x.pool.get_all()[0]

    def methods():
        return len(xmlrpc.client.ServerProxy(urls["cu1-a"]).system.listMethods())

    def level():
        return short(x.pool.get_cpu_info(pool)["features_hvm_host"])

    def install(sess, name, ref):
        sess.xenapi.host.disable(ref)
        sess.xenapi.host.evacuate(ref)
        sess.xenapi_request("sim.host_install", (ref, "nile"))

    def try_(what, fn, *args):
        try:
            fn(*args)
            out(f"   {what}: done")
        except XenAPI.Failure as e:
            code, *params = e.details
            # refs vary; a reason (the last parameter of some errors) does not
            reason = f" ({params[-1]})" if params and " " in params[-1] else ""
            out(f"   {what}: {code}{reason}")

    out("1. The 8.2 CU1 pool: pool level from the default policies (features_hvm_host)")
    for n in MEMBERS:
        sv = x.host.get_software_version(host[n])
        out(
            f"   {n}  {sv['product_brand']} {sv['product_version']} platform "
            f"{sv['platform_version']} API {x.host.get_API_version_major(host[n])}."
            f"{x.host.get_API_version_minor(host[n])}"
        )
    out(f"   pool.cpu_info keys: {sorted(x.pool.get_cpu_info(pool))}")
    out(f"   pool level {level()}; {methods()} methods served")
    for n in ("app", "db"):
        out(f"   VM {n:<4} flags {short(x.VM.get_last_boot_CPU_flags(vm[n])['features'])}")

    out("2. Upgrade the master first (disable, evacuate, install XenServer 8, boot)")
    install(s, "cu1-a", host["cu1-a"])
    s = login()  # the master's xapi restarted: log in again
    x = s.xenapi
    out(f"   other_config: {x.pool.get_other_config(pool)}")
    out(
        f"   master API {x.host.get_API_version_major(host['cu1-a'])}."
        f"{x.host.get_API_version_minor(host['cu1-a'])}; the pool database has XenServer 8's "
        f"schema: {methods()} methods served"
    )
    out(f"   pool.tls_verification_enabled = {x.pool.get_tls_verification_enabled(pool)}")

    out("3. Running VMs move forward onto the upgraded master, never back")
    x.VM.pool_migrate(vm["app"], host["cu1-a"], {})
    out("   app now on cu1-a")
    try_("app back to cu1-b (8.2 CU1)", x.VM.pool_migrate, vm["app"], host["cu1-b"], {})
    try_("VM.start_on cu1-c (8.2 CU1)", x.VM.start_on, vm["batch"], host["cu1-c"], False, False)

    out("4. Upgrade cu1-b")
    install(s, "cu1-b", host["cu1-b"])
    rpu = "rolling_upgrade_in_progress" in x.pool.get_other_config(pool)
    out(f"   cu1-b upgraded; RPU {'in progress' if rpu else 'finished'}; pool level {level()}")

    out("5. Midway, two XenServer 8 hosts ask to join")
    fresh = login("fresh8")
    try_(
        "fresh8 (fresh install, TLS verification on)",
        fresh.xenapi.pool.join,
        x.host.get_address(host["cu1-a"]),
        "root",
        "xenroot",
    )
    spare = login("spare")
    spare_ref = spare.xenapi.host.get_all()[0]
    install(spare, "spare", spare_ref)
    spare = login("spare")
    out(
        "   spare (Sandy Bridge, upgraded from 8.2 CU1 on its own: TLS verification off) "
        f"joins: {spare.xenapi.pool.join(x.host.get_address(host['cu1-a']), 'root', 'xenroot')!r}"
    )
    host = {x.host.get_name_label(h): h for h in x.host.get_all()}
    out(f"   pool level after its first start {level()} (lowered)")
    try_("db (booted on the old level) to spare", x.VM.pool_migrate, vm["db"], host["spare"], {})

    out("6. Upgrade the last 8.2 CU1 host")
    install(s, "cu1-c", host["cu1-c"])
    rpu = "rolling_upgrade_in_progress" in x.pool.get_other_config(pool)
    out(f"   cu1-c upgraded; RPU {'in progress' if rpu else 'finished'}")
    out(f"   CPU alerts raised: {len(x.message.get_all())} (XenServer 8 raises none)")

    out("7. db restarts on the new level, and then fits the older host")
    x.VM.clean_shutdown(vm["db"])
    x.VM.start(vm["db"], False, False)
    after = x.VM.get_last_boot_CPU_flags(vm["db"])["features"]
    out(f"   db flags {short(after)} (= pool level: {short(after) == level()})")
    try_("db to spare", x.VM.pool_migrate, vm["db"], host["spare"], {})


def main(argv):
    if len(argv) > 1:
        with open(argv[1]) as fh:
            walk({h["name_label"]: h["url"] for h in json.load(fh)["hosts"]})
        return 0
    from xapi_sim.testing import running_world

    with running_world(os.path.join(HERE, "rpu-8.2-to-8.toml"), seed=1) as w:
        walk({h["name_label"]: h["url"] for h in w.describe()["hosts"]})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
