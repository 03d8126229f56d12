"""Control calls that describe the simulated world as a whole (docs/control-api.md).

A client of one XAPI pool sees only that pool; the page at ``/sim/`` (``xapi_sim/web``)
shows every pool of the world, so it asks here which pools exist, who their masters are and
at which endpoint each host answers, then logs in to each master over the public API. Not
part of XAPI: a XenServer host knows nothing of hosts outside its pool.
"""

from __future__ import annotations

from ..dispatch import control
from ..levelling import cpus


def _http_url(h) -> str:
    """The host's plain-HTTP endpoint (every endpoint serves HTTP and HTTPS on one port);
    ``""`` when it has no listener (an in-process world without a simulator)."""
    if not h.port:
        return ""
    return f"http://{h.address_for_url}:{h.port}/"


@control("sim.world", 1)
def world(call):
    """Every pool of the world, standalone hosts included (a pool of one): ``{pools: [{ref,
    uuid, name_label, master, rolling_upgrade, hosts: [{ref, uuid, name_label, address, url,
    state, master}]}]}``. ``state`` is ``up``, ``down`` (shut down) or ``crashed``; ``url`` is
    the host's plain-HTTP endpoint. Rows are read without taking the pools' locks (each row is
    replaced whole on write, so every row read is consistent)."""
    pools = []
    for p in list(call.world.pools):
        prow = p.db.tables["pool"].get(p.ref)
        if prow is None:
            continue  # dissolved by a pool.join meanwhile
        hosts = []
        for h in sorted(p.hosts(), key=lambda h: (not h.is_master, h.name_label)):
            hosts.append(
                {
                    "ref": h.ref,
                    "uuid": h.uuid,
                    "name_label": h.name_label,
                    "address": h.address,
                    "url": _http_url(h),
                    "state": h.state,
                    "master": h.is_master,
                }
            )
        pools.append(
            {
                "ref": p.ref,
                "uuid": prow["uuid"],
                "name_label": prow["name_label"],
                "master": p.master.ref,
                "rolling_upgrade": "rolling_upgrade_in_progress" in prow["other_config"],
                "hosts": hosts,
            }
        )
    pools.sort(key=lambda p: (len(p["hosts"]) == 1, p["name_label"], p["hosts"][0]["name_label"]))
    return {"pools": pools}


@control("sim.cpu_features", 1)
def cpu_features(call):
    """The named CPU features of the levelling catalogue (``data/cpus.json``, Xen's
    ``cpufeatureset.h``) and its CPU models: ``{words: [{index, name}], features: [{name, word,
    bit}], models: [{name, vendor, modelname}]}``, words
    named by their CPUID leaf as Xen's ``featureset_words`` does (``1d``, ``1c``, ``e1d``,
    ...), features in (word, bit) order."""
    words = [{"index": w["index"], "name": w["name"]} for w in cpus.DATA["featureset_words"]]
    feats = sorted(cpus.FEATURES.values(), key=lambda f: (f.word, f.bit))
    return {
        "words": words,
        "features": [{"name": f.name, "word": f.word, "bit": f.bit} for f in feats],
        "models": [
            {"name": m.name, "vendor": m.vendor, "modelname": m.modelname}
            for m in cpus.MODELS.values()
        ],
    }
