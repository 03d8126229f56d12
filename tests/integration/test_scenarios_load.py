"""Scenario files: the built-in default loads and builds as documented, every example under
``examples/`` and ``docs/`` loads and builds (the glob picks up files added later; TOML
scenario blocks inside ``docs/*.md`` count too), and bad scenarios fail with one message naming
the file, the entry and the field.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from xapi_sim import scenario
from xapi_sim.testing import running_world

ROOT = pathlib.Path(__file__).resolve().parents[2]


def example_files():
    files = []
    for d in ("examples", "docs"):
        for pattern in ("*.toml", "*.json", "**/*.toml", "**/*.json"):
            files.extend((ROOT / d).glob(pattern))
    return sorted(set(files))


def doc_blocks():
    """TOML fenced blocks in docs/*.md that are scenarios (declare a [[host]])."""
    out = []
    for md in sorted((ROOT / "docs").glob("**/*.md")):
        for i, m in enumerate(re.finditer(r"```toml\n(.*?)```", md.read_text(), re.S)):
            if "[[host]]" in m.group(1):
                out.append((f"{md.relative_to(ROOT)}#block{i}", m.group(1)))
    return out


# -- the default ----------------------------------------------------------------------------


def test_default_scenario_loads_and_builds():
    scn = scenario.default()
    assert [h.name_label for h in scn.hosts] == ["xs1", "xs2", "xs3", "xs4", "xs5"]
    (pool,) = scn.pools
    assert (pool.name_label, pool.master, tuple(pool.members)) == ("pool-a", "xs1", ("xs2", "xs3"))
    assert {v.name_label for v in scn.vms} >= {
        "web1",
        "web2",
        "db1",
        "batch1",
        "legacy1",
        "scratch1",
    }
    world = scenario.build(scn, seed=3)
    assert len(world.pools) == 3  # pool-a, and xs4, xs5 on their own
    masters = sorted(p.master.name_label for p in world.pools)
    assert masters == ["xs1", "xs4", "xs5"]
    pool_a = next(p for p in world.pools if p.master.name_label == "xs1")
    assert sorted(h.name_label for h in pool_a.hosts()) == ["xs1", "xs2", "xs3"]
    db = pool_a.db
    by_label = {row["name_label"]: row for _, row in db.rows("VM")}
    assert by_label["web1"]["power_state"] == "Running"
    assert by_label["legacy1"]["power_state"] == "Suspended"
    assert by_label["batch1"]["power_state"] == "Halted"
    # Dundee has no VM.domain_type: a PV guest is one without an HVM boot policy
    assert by_label["db1"]["HVM_boot_policy"] == "" and by_label["db1"]["PV_bootloader"]
    assert by_label["web1"]["HVM_boot_policy"] == "BIOS order"
    prow = db.get("pool", pool_a.ref)
    assert prow["name_label"] == "pool-a" and prow["master"] == pool_a.master.ref


def test_default_scenario_file_loads_from_disk():
    path = ROOT / "xapi_sim" / "scenarios" / "default.toml"
    assert scenario.load(path).hosts == scenario.default().hosts


# -- every example ---------------------------------------------------------------------------


def test_every_example_scenario_loads_and_builds():
    files = example_files()
    failures = []
    for f in files:
        try:
            scn = scenario.load(f)
            world = scenario.build(scn, seed=1)
            assert world.hosts, "no hosts"
        except Exception as e:  # noqa: BLE001 -- report them all at once
            failures.append(f"{f.relative_to(ROOT)}: {type(e).__name__}: {e}")
    for name, text in doc_blocks():
        try:
            scenario.build(scenario.loads(text, name), seed=1)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{name}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)


def test_examples_exist_in_both_formats():
    suffixes = {f.suffix for f in example_files()}
    assert {".toml", ".json"} <= suffixes


def test_an_example_serves(login):
    """One example end to end: served and reachable with XenAPI."""
    f = ROOT / "examples" / "minimal.json"
    if not f.exists():
        f = example_files()[0]
    scn = scenario.load(f)
    with running_world(f) as w:
        s = login(w.master_url())
        assert len(s.xenapi.host.get_all()) >= 1
        names = {r["name_label"] for r in s.xenapi.VM.get_all_records().values()}
        pool0 = {
            v.name_label
            for v in scn.vms
            if v.host is None or v.host in {h.name_label for h in w.world.pools[0].hosts()}
        }
        assert pool0 <= names
        s.xenapi.session.logout()


def test_toml_and_json_forms_are_equivalent(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[[host]]\nname_label = "a"\ncpu = "EPYC"\nmemory = "32GiB"\n'
        '[[vm]]\nname_label = "v"\nhost = "a"\npower_state = "Running"\n'
        'memory = "1GiB"\n'
    )
    js = tmp_path / "s.json"
    js.write_text(
        json.dumps(
            {
                "host": [{"name_label": "a", "cpu": "EPYC", "memory": "32GiB"}],
                "vm": [
                    {"name_label": "v", "host": "a", "power_state": "Running", "memory": "1GiB"}
                ],
            }
        )
    )
    a, b = scenario.load(toml), scenario.load(js)
    assert (a.hosts, a.pools, a.vms) == (b.hosts, b.pools, b.vms)


# -- bad scenarios ---------------------------------------------------------------------------

BAD = [
    # (file text, suffix, entry, field)
    ('[[host]]\nname_label = "h1"\ncpu = "Pentium-9000"\n', ".toml", "host[0]", "cpu"),
    ('[[host]]\nname_label = "h1"\nmemory = "lots"\n', ".toml", "host[0]", "memory"),
    ('[[host]]\nname_label = "h1"\nsockets = 0\n', ".toml", "host[0]", "sockets"),
    ('[[host]]\nname_label = "h1"\ncolour = "red"\n', ".toml", "host[0]", "colour"),
    (
        '[[host]]\nname_label = "h1"\n[[host]]\nname_label = "h1"\n',
        ".toml",
        "host[1]",
        "name_label",
    ),
    ('[[host]]\nname_label = "h1"\nversion = "99.0"\n', ".toml", "host[0]", "version"),
    (
        '[[host]]\nname_label = "h1"\n[[pool]]\nname_label = "p"\nmaster = "nobody"\n',
        ".toml",
        "pool[0]",
        "master",
    ),
    (
        '[[host]]\nname_label = "h1"\n[[host]]\nname_label = "h2"\n[[pool]]\nname_label = "p"\n'
        'master = "h1"\nmembers = ["h3"]\n',
        ".toml",
        "pool[0]",
        "members",
    ),
    (
        '[[host]]\nname_label = "h1"\n[[vm]]\nname_label = "v"\npower_state = "Running"\n',
        ".toml",
        "vm[0]",
        "host",
    ),
    (
        '[[host]]\nname_label = "h1"\n[[vm]]\nname_label = "v"\nvcpus = 0\n',
        ".toml",
        "vm[0]",
        "vcpus",
    ),
    (
        '[[host]]\nname_label = "h1"\n[[vm]]\nname_label = "v"\npower_state = "Exploded"\n',
        ".toml",
        "vm[0]",
        "power_state",
    ),
    (
        '[[host]]\nname_label = "h1"\n[[vm]]\nname_label = "v"\ndomain_type = "pvh2"\n',
        ".toml",
        "vm[0]",
        "domain_type",
    ),
    (
        json.dumps({"host": [{"name_label": "h1", "cpus_per_socket": "eight"}]}),
        ".json",
        "host[0]",
        "cpus_per_socket",
    ),
    (
        json.dumps({"host": [{"name_label": "h1"}], "vm": [{"name_label": "v", "host": "h9"}]}),
        ".json",
        "vm[0]",
        "host",
    ),
]


@pytest.mark.parametrize("text,suffix,entry,field", BAD, ids=[f"{e}-{f}" for _, _, e, f in BAD])
def test_bad_scenario_names_file_entry_and_field(tmp_path, text, suffix, entry, field):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.build(scenario.load(path), seed=1)
    msg = str(e.value)
    assert str(path) in msg
    assert entry in msg
    assert f"'{field}'" in msg or f'"{field}"' in msg
    assert "\n" not in msg


def test_bad_scenario_found_while_building(tmp_path):
    """A VM that does not fit on its host is refused, naming the VM and its field."""
    path = tmp_path / "overfull.toml"
    path.write_text(
        '[[host]]\nname_label = "small"\nmemory = "4GiB"\n'
        '[[vm]]\nname_label = "big"\nhost = "small"\npower_state = "Running"\n'
        'memory = "64GiB"\n'
    )
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.build(scenario.load(path), seed=1)
    msg = str(e.value)
    assert str(path) in msg and "vm[0]" in msg and "'memory'" in msg


@pytest.mark.parametrize(
    "text,suffix",
    [
        ('[[host]\nname_label = "h1"\n', ".toml"),
        ("{not json", ".json"),
        ("", ".toml"),
        ('host = "x"\n', ".toml"),
        ('[[planet]]\nname_label = "p"\n', ".toml"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, text, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_text(text)
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.load(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.load(path)
    assert str(path) in str(e.value)
