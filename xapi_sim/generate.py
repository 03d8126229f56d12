"""Generated scenarios for scale tests and benchmarks: N hosts x P pCPUs, V VMs."""

from __future__ import annotations

CPUS = ["Haswell", "Broadwell", "Skylake-Server", "IvyBridge"]


def scenario_toml(hosts: int, pcpus: int, vms: int) -> str:
    sockets = 2 if pcpus % 2 == 0 else 1
    out = []
    for i in range(hosts):
        out.append(
            f'[[host]]\nname_label = "h{i:03d}"\ncpu = "{CPUS[i % len(CPUS)]}"\n'
            f"sockets = {sockets}\ncpus_per_socket = {pcpus // sockets}\n"
            f'memory = "2048GiB"\n'
        )
    members = ", ".join(f'"h{i:03d}"' for i in range(1, hosts))
    out.append(f'[[pool]]\nname_label = "big"\nmaster = "h000"\nmembers = [{members}]\n')
    for v in range(vms):
        state = "Running" if v % 4 else "Halted"
        out.append(
            f'[[vm]]\nname_label = "vm{v:05d}"\ndomain_type = "{"hvm" if v % 3 else "pv"}"\n'
            f'power_state = "{state}"\nhost = "h{v % hosts:03d}"\nmemory = "1GiB"\n'
        )
    return "\n".join(out)
