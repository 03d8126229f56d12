"""What the soak checks once the load has stopped: pool invariants, acknowledged writes,
event caches, and what must survive a restart."""

from __future__ import annotations

import collections
import threading
from typing import Any

from ...datamodel import NULL_REF
from .calls import LIVE, session


def check_invariants(session, label="") -> list:
    """Invariants of one pool, read through the API (call it when the load has stopped)."""
    x = session.xenapi
    vms = x.VM.get_all_records()
    hosts = x.host.get_all_records()
    metrics = x.host_metrics.get_all_records()
    bad = []
    where = f"[{label}] " if label else ""
    resident = collections.defaultdict(set)
    for ref, vm in vms.items():
        name, ps, on = vm["name_label"], vm["power_state"], vm["resident_on"]
        if on != NULL_REF:
            if on not in hosts:
                bad.append(f"{where}VM {name} is resident on {on}, not a host of its pool")
                continue
            resident[on].add(ref)
        if ps in LIVE and on == NULL_REF:
            bad.append(f"{where}VM {name} is {ps} but resident nowhere")
        if ps not in LIVE and on != NULL_REF:
            bad.append(f"{where}VM {name} is {ps} but resident on {hosts[on]['name_label']}")
        if ps not in LIVE and not vm["is_a_template"] and str(vm["domid"]) != "-1":
            bad.append(f"{where}VM {name} is {ps} with domid {vm['domid']}")
    for href, h in hosts.items():
        if set(h["resident_VMs"]) != resident[href]:
            bad.append(
                f"{where}host {h['name_label']}: resident_VMs disagrees with "
                f"VM.resident_on ({len(h['resident_VMs'])} vs {len(resident[href])})"
            )
        m = metrics.get(h["metrics"])
        if m is None:
            bad.append(f"{where}host {h['name_label']} has no metrics")
            continue
        if not m["live"]:
            continue
        # host_metrics.memory_free left the API in 6.1; compute_free_memory is the figure
        used = sum(int(vms[v]["memory_static_max"]) for v in resident[href])
        expect = max(0, int(m["memory_total"]) - int(h["memory_overhead"]) - used)
        free = int(x.host.compute_free_memory(href))
        if free != expect:
            bad.append(
                f"{where}host {h['name_label']}: free memory {free}, expected "
                f"{expect} (total {m['memory_total']} - overhead "
                f"{h['memory_overhead']} - resident {used})"
            )
    pending = [
        t["name_label"]
        for t in x.task.get_all_records().values()
        if t["status"] == "pending" and not t["name_label"].startswith("Async.")
    ]
    if pending:
        bad.append(f"{where}{len(pending)} transient tasks left pending: {pending[:5]}")
    return bad


def layout(urls):
    """Per pool: (url, pool ref, host refs, member refs, {VM name: ref})."""
    out = []
    for url in urls:
        with session(url, "soak-setup") as s:
            x = s.xenapi
            pool = x.pool.get_all()[0]
            master = x.pool.get_master(pool)
            hosts = x.host.get_all()
            vms = {
                r["name_label"]: ref
                for ref, r in x.VM.get_all_records().items()
                if r["name_label"].startswith("soak-")
            }
        out.append((url, pool, hosts, [h for h in hosts if h != master], vms))
    return out


def snapshot(urls):
    """What must survive a restart: every VM's and pool's persistent fields."""
    out: dict[str, tuple[Any, ...]] = {}
    for url in urls:
        with session(url, "soak-snapshot") as s:
            x = s.xenapi
            for ref, r in x.VM.get_all_records().items():
                out[ref] = (
                    r["uuid"],
                    r["power_state"],
                    r["resident_on"],
                    r["other_config"],
                    r["name_description"],
                )
            for ref, r in x.pool.get_all_records().items():
                out[ref] = (r["uuid"], r["other_config"])
    return out


def converge_all(pollers, records) -> list:
    """``Poller.converged`` for every poller at once (each drains its last events)."""
    out: list[list[str]] = [[] for _ in pollers]

    def one(i, pl):
        try:
            out[i] = pl.converged(records[pl.url])
        except Exception as e:  # noqa: BLE001
            out[i] = [f"poller {pl.idx}: {type(e).__name__}: {e}"]

    threads = [threading.Thread(target=one, args=(i, pl)) for i, pl in enumerate(pollers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return [line for lines in out for line in lines]


def verify_clients(urls, clients) -> list:
    """``Client.verify`` for every client, against its pool's records."""
    bad = []
    for url in urls:
        with session(url, "soak-verify") as s:
            vms = s.xenapi.VM.get_all_records()
            pools = s.xenapi.pool.get_all_records()
        for c in clients:
            if c.url == url:
                bad += c.verify(vms[c.vm], pools[c.pool])
    return bad


def all_invariants(urls, labels=("alpha", "beta")) -> list:
    """``check_invariants`` of every pool (one URL each)."""
    bad = []
    for url, label in zip(urls, labels, strict=False):
        with session(url, "soak-check") as s:
            bad += check_invariants(s, label)
    return bad


def all_vm_records(urls) -> dict:
    """URL -> that pool's ``VM.get_all_records()``."""
    records = {}
    for url in urls:
        with session(url, "soak-records") as s:
            records[url] = s.xenapi.VM.get_all_records()
    return records
