"""The benchmark's load client and floors drive real servers correctly (no timing asserted)."""

import json
import subprocess
import sys

from xapi_sim import bench, bench_load
from xapi_sim.testing import running_world


def _spec(url):
    host, port = url[len("http://") :].rstrip("/").split(":")
    return {"host": host, "port": int(port)}


def test_rate_burst_and_events_against_a_world():
    with running_world(seed=1) as w:
        base = _spec(w.master_url())
        for proto in ("xml", "json"):
            r = bench_load.rate({**base, "proto": proto, "clients": 3, "seconds": 0.05})
            assert r["calls"] > 0
            b = bench_load.burst(
                {**base, "proto": proto, "clients": 2, "method": "VM.get_all_records", "params": []}
            )
            assert len(b["reply_bytes"]) == 2 and min(b["reply_bytes"]) > 1000
        ev = bench_load.events({**base, "proto": "xml", "waiters": 3, "rounds": 2})
        assert len(ev["latencies_s"]) == len(ev["seen_latencies_s"]) == 6
        # a reply is received before the selector reports it; both within the round
        assert 0 < ev["latencies_s"][0] and ev["seen_latencies_s"][-1] < 5
        if ev["kernel_stamps"]:
            assert ev["latencies_s"][-1] <= ev["seen_latencies_s"][-1] + 0.001


def test_floors_answer_the_load_client():
    for kind in ("xml", "json"):
        with bench.floor_server(kind) as srv:
            r = bench.load(srv, mode="rate", proto=kind, clients=2, seconds=0.05)
            assert r["calls"] > 0


def test_load_client_reports_failures():
    with running_world(seed=1) as w:
        spec = {**_spec(w.master_url()), "mode": "rate", "proto": "xml", "clients": 1}
        spec.update(seconds=0.05, vm="no such vm")
        p = subprocess.run(
            [sys.executable, "-m", "xapi_sim.bench_load", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode != 0


def test_rate_spreads_connections_over_several_targets():
    """``targets``: connections spread over several pools' masters, a session each (the
    ``workers`` figure drives the 8 masters of ``bench.pools_toml`` this way)."""
    with running_world(scenario=bench.pools_toml(pools=2, hosts=1, vms=1), seed=1) as w:
        targets = []
        for i, p in enumerate(w.world.pools):
            targets.append({**_spec(w.master_url(i)), "vm": f"{p.master.name_label[:2]}-vm0"})
        r = bench_load.rate({"targets": targets, "proto": "xml", "clients": 4, "seconds": 0.05})
        assert r["calls"] > 0 and r["total_calls"] >= r["calls"]
