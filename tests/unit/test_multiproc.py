"""``serve --workers N``'s split of a scenario among children (xapi_sim/multiproc.py):
every pool whole in one child, no child empty, balanced by hosts + VMs, deterministic; the
sub-scenarios together are the scenario; child seeds distinct and reproducible."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim import multiproc
from xapi_sim import scenario_spec as spec


@st.composite
def scenarios(draw):
    """Pools of 1-4 hosts (one-host entries standalone or [[pool]]s), VMs on any host or
    on none (the first host's pool), SRs and networks per pool."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=9))
    hosts, pools, srs, nets, k = [], [], [], [], 0
    for i, n in enumerate(sizes):
        names = [f"h{k + j}" for j in range(n)]
        k += n
        hosts += [{"name_label": h} for h in names]
        if n > 1 or draw(st.booleans()):
            pools.append({"name_label": f"p{i}", "master": names[0], "members": names[1:]})
        if draw(st.booleans()):
            srs.append({"name_label": f"sr{i}", "type": "nfs", "hosts": names, "shared": True})
        if draw(st.booleans()):
            nets.append({"name_label": f"net{i}", "host": names[0]})
    vms = []
    for j, h in enumerate(draw(st.lists(st.sampled_from([None, *range(k)]), max_size=12))):
        vms.append({"name_label": f"vm{j}"} | ({} if h is None else {"host": f"h{h}"}))
    data = {"host": hosts, "pool": pools, "vm": vms, "sr": srs, "network": nets}
    return spec.from_dict(data, "<test>")


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(1, 9))
def test_split_whole_pools_balanced(scn, n):
    units = multiproc.units(scn)
    if n > len(units):
        with pytest.raises(ValueError, match=f"only {len(units)} pool"):
            multiproc.split(scn, n)
        return
    shares = multiproc.split(scn, n)
    assert shares == multiproc.split(scn, n)  # deterministic
    assert len(shares) == n and all(shares)
    names = [h for s in shares for h in s]
    assert sorted(names) == sorted(h.name_label for h in scn.hosts)  # each host once
    child = {h: i for i, s in enumerate(shares) for h in s}
    for members, _ in units:  # a pool lies whole in one child
        assert len({child[h] for h in members}) == 1
    loads = [sum(w for m, w in units if child[m[0]] == i) for i in range(n)]
    assert max(loads) - min(loads) <= max(w for _, w in units)
    # the children's sub-scenarios hold every entry exactly once
    subs = [multiproc.sub_scenario(scn, s) for s in shares]
    for field in ("hosts", "pools", "vms", "srs", "networks"):
        got = sorted(x.name_label for sub in subs for x in getattr(sub, field))
        assert got == sorted(x.name_label for x in getattr(scn, field))
    first = scn.hosts[0].name_label
    for sub, s in zip(subs, shares, strict=True):
        for v in sub.vms:  # a VM without a host stays in the first host's pool
            assert (v.host or first) in s


def test_child_seeds():
    seeds = [multiproc.child_seed(7, 4, i) for i in range(4)]
    assert len(set(seeds)) == 4
    assert seeds == [multiproc.child_seed(7, 4, i) for i in range(4)]
    assert multiproc.child_seed(7, 2, 0) != seeds[0]
    assert multiproc.child_seed(None, 2, 0) is None
