#!/usr/bin/env python3
"""Generate and measure a large world: N hosts x P pCPUs and V VMs (default 64 x 512, 10,000).

    python scripts/big_world.py [--hosts 64] [--pcpus 512] [--vms 10000] [--write FILE]

Builds the world from a generated scenario, serves it, and times ``VM.get_all_records`` end
to end with the real XenAPI client. Prints build time, records, response size and peak RSS.
``--write FILE`` only writes the generated scenario (TOML) and exits.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from xapi_sim.generate import scenario_toml


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--pcpus", type=int, default=512)
    ap.add_argument("--vms", type=int, default=10_000)
    ap.add_argument("--write", metavar="FILE")
    args = ap.parse_args(argv)
    text = scenario_toml(args.hosts, args.pcpus, args.vms)
    if args.write:
        with open(args.write, "w") as fh:
            fh.write(text)
        return 0
    import XenAPI

    from xapi_sim import scenario
    from xapi_sim.server import Simulator

    t0 = time.perf_counter()
    scn = scenario.loads(text, "<generated>")
    t1 = time.perf_counter()
    world = scenario.build(scn, seed=1)
    t2 = time.perf_counter()
    sim = Simulator(world, port=0).start()
    t3 = time.perf_counter()
    try:
        s = XenAPI.Session(world.pools[0].master.url)
        s.xenapi.login_with_password("root", "xenroot")
        t4 = time.perf_counter()
        recs = s.xenapi.VM.get_all_records()
        t5 = time.perf_counter()
        cpus = len(s.xenapi.host_cpu.get_all())
    finally:
        sim.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scenario: {args.hosts} hosts x {args.pcpus} pCPUs, {args.vms} VMs")
    print(
        f"parse {t1 - t0:.2f}s  build {t2 - t1:.2f}s  listen {t3 - t2:.2f}s  "
        f"ready {t3 - t0:.2f}s  peak RSS {rss:.0f} MiB"
    )
    print(
        f"VM.get_all_records: {len(recs)} records in {t5 - t4:.2f}s end to end; "
        f"host_cpu objects: {cpus}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
