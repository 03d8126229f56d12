"""``xe`` storage, network and VM-device commands against a simulated pool: golden outputs.

The installed ``xe`` runs one scripted session against ``running_world(seed=1)`` (the
default scenario; ids are seeded, so a sequential run is reproducible): the lists of the
installer's objects, then ``vm-install`` from a template, SR/VDI/VBD/VIF/network creation
and removal, CD insert/eject, and the errors XAPI's checks give on the way. Each step's
transcript is compared with ``tests/golden/xe/obj-<step>.txt`` (``XE_GOLDEN_UPDATE=1``
rewrites them; review the diff). Helpers come from ``test_xe.py``.
"""

from __future__ import annotations

import re

import pytest
from test_xe import XE, check, xe

from xapi_sim.testing import running_world

pytestmark = pytest.mark.skipif(XE is None, reason="the xe console script is not installed")

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# (step, command line with {names} of earlier outputs, expected exit status, output name)
SCRIPT = [
    ("host-xs1", "host-list name-label=xs1 --minimal", 0, "xs1"),
    ("sr-list", "sr-list", 0, None),
    ("sr-list-params", "sr-list params=name-label,type,shared,physical-size host=xs2", 0, None),
    (
        "pbd-list",
        "pbd-list params=uuid,sr-name-label,currently-attached host-name-label=xs1",
        0,
        None,
    ),
    ("network-list", "network-list", 0, None),
    ("pif-list", "pif-list host-name-label=xs1", 0, None),
    ("pif-list-params", "pif-list device=eth0 params=host-name-label,MAC,IP,management", 0, None),
    ("vdi-list", "vdi-list", 0, None),
    ("template-list-centos", "template-list name-label=CentOS\\ 7", 0, None),
    ("vm-install", "vm-install template=CentOS\\ 7 new-name-label=c7", 0, "c7"),
    ("vm-install-no-template", "vm-install template=nosuch new-name-label=x", 1, None),
    ("vm-install-no-name", "vm-install template=CentOS\\ 7", 1, None),
    ("vm-disk-list", "vm-disk-list vm=c7", 0, None),
    ("vm-param-get-description", "vm-param-get uuid={c7} param-name=name-description", 0, None),
    ("vbd-list-c7", "vbd-list vm-uuid={c7}", 0, None),
    (
        "sr-create",
        "sr-create name-label=nfs1 type=nfs shared=true device-config:server=10.0.0.9 "
        "device-config:serverpath=/export/vms content-type=user",
        0,
        "nfs1",
    ),
    (
        "sr-create-missing-serverpath",
        "sr-create name-label=bad type=nfs shared=true device-config:server=10.0.0.9",
        1,
        None,
    ),
    ("sr-create-no-host", "sr-create name-label=bad type=zfs", 1, None),
    ("sr-create-unknown-type", "sr-create name-label=bad type=zfs shared=true", 1, None),
    ("sr-param-list", "sr-param-list uuid={nfs1}", 0, None),
    ("vdi-create", "vdi-create sr-uuid={nfs1} name-label=data virtual-size=2GiB", 0, "data"),
    (
        "vdi-create-bad-type",
        "vdi-create sr-uuid={nfs1} name-label=x virtual-size=1 type=foo",
        1,
        None,
    ),
    ("vdi-resize", "vdi-resize uuid={data} disk-size=4GiB", 0, None),
    ("vdi-resize-shrink", "vdi-resize uuid={data} disk-size=1GiB", 1, None),
    ("vdi-clone", "vdi-clone uuid={data} new-name-label=data-copy", 0, "copy"),
    ("vdi-snapshot", "vdi-snapshot uuid={data}", 0, "snap"),
    ("vdi-param-list", "vdi-param-list uuid={snap}", 0, None),
    ("vbd-create", "vbd-create vm-uuid={c7} vdi-uuid={data} device=1", 0, "vbd1"),
    ("vbd-create-same-device", "vbd-create vm-uuid={c7} vdi-uuid={copy} device=1", 1, None),
    ("vbd-create-empty-disk", "vbd-create vm-uuid={c7} device=2", 1, None),
    ("vbd-create-cd", "vbd-create vm-uuid={c7} device=3 type=CD mode=RO", 0, "cd"),
    ("vm-cd-insert", "vm-cd-insert vm=c7 cd-name=xs-tools.iso", 0, None),
    ("vm-cd-insert-unknown", "vm-cd-insert vm=c7 cd-name=nosuch.iso", 1, None),
    ("vm-cd-list", "vm-cd-list vm=c7", 0, None),
    ("vm-cd-eject", "vm-cd-eject vm=c7", 0, None),
    ("vm-cd-eject-empty", "vm-cd-eject vm=c7", 1, None),
    ("vbd-param-list", "vbd-param-list uuid={vbd1}", 0, None),
    ("vm-disk-list-2", "vm-disk-list vm=c7 vdi-params=uuid,name-label,sr-name-label", 0, None),
    ("network-create", "network-create name-label=backend MTU=9000", 0, "net"),
    ("vif-create", "vif-create vm-uuid={c7} network-uuid={net} device=0", 0, "vif"),
    ("vif-create-same-device", "vif-create vm-uuid={c7} network-uuid={net} device=0", 1, None),
    ("vif-create-bad-mac", "vif-create vm-uuid={c7} network-uuid={net} device=1 mac=zz", 1, None),
    ("vm-vif-list", "vm-vif-list vm=c7", 0, None),
    ("vif-param-list", "vif-param-list uuid={vif}", 0, None),
    ("network-param-list", "network-param-list uuid={net}", 0, None),
    ("vm-start", "vm-start vm=c7", 0, None),
    (
        "vbd-list-running",
        "vbd-list vm-uuid={c7} params=userdevice,device,currently-attached",
        0,
        None,
    ),
    ("vif-destroy-running", "vif-destroy uuid={vif}", 1, None),
    ("vm-shutdown", "vm-shutdown vm=c7 --force", 0, None),
    ("vif-destroy", "vif-destroy uuid={vif}", 0, None),
    ("network-destroy", "network-destroy uuid={net}", 0, None),
    ("vbd-destroy", "vbd-destroy uuid={vbd1}", 0, None),
    ("vdi-destroy", "vdi-destroy uuid={copy}", 0, None),
    ("sr-destroy-not-empty", "sr-destroy uuid={nfs1}", 1, None),
    ("vm-install-sr", "vm-install template=CentOS\\ 7 new-name-label=c7b sr-uuid={nfs1}", 0, "c7b"),
    ("vm-disk-list-sr", "vm-disk-list vm=c7b", 0, None),
    ("sr-scan", "sr-scan uuid={nfs1}", 0, None),
    ("vdi-of-c7b", "vbd-list vm-uuid={c7b} params=vdi-uuid --minimal", 0, "c7b_vdi"),
    ("sr-local-xs2", "sr-list name-label=Local\\ storage host=xs2 --minimal", 0, "xs2_local"),
    (
        "vm-migrate-storage",
        "vm-migrate vm=c7b remote-master=127.0.0.1 remote-username=root remote-password=xenroot "
        "host=xs2 vdi:{c7b_vdi}={xs2_local}",
        0,
        None,
    ),
    ("vm-disk-list-migrated", "vm-disk-list vm=c7b vdi-params=name-label,sr-name-label", 0, None),
    ("vdi-pool-migrate-moved-away", "vdi-pool-migrate uuid={c7b_vdi} sr-uuid={nfs1}", 1, None),
    ("vdi-of-c7b-2", "vbd-list vm-uuid={c7b} params=vdi-uuid --minimal", 0, "c7b_vdi2"),
    ("vdi-pool-migrate-back", "vdi-pool-migrate uuid={c7b_vdi2} sr-uuid={nfs1}", 0, "c7b_vdi3"),
    ("vdi-copy", "vdi-copy uuid={data} sr-uuid={nfs1}", 0, "data2"),
    ("vdi-copy-both", "vdi-copy uuid={data} sr-uuid={nfs1} into-vdi-uuid={data2}", 1, None),
    ("vdi-forget", "vdi-forget uuid={data2}", 0, None),
    ("tools-iso", "vdi-list name-label=xs-tools.iso --minimal", 0, "iso"),
    ("vbd-insert", "vbd-insert uuid={cd} vdi-uuid={iso}", 0, None),
    ("vbd-insert-full", "vbd-insert uuid={cd} vdi-uuid={iso}", 1, None),
    ("vbd-eject", "vbd-eject uuid={cd}", 0, None),
    (
        "sr-introduce",
        "sr-introduce uuid=0bad5eed-0000-4000-8000-000000000001 name-label=intro type=nfs "
        "shared=true content-type=user",
        0,
        "intro",
    ),
    (
        "pbd-create",
        "pbd-create host-uuid={xs1} sr-uuid={intro} device-config:server=10.0.0.9 "
        "device-config:serverpath=/export/intro",
        0,
        "intro_pbd",
    ),
    ("pbd-create-exists", "pbd-create host-uuid={xs1} sr-uuid={intro}", 1, None),
    ("pbd-plug", "pbd-plug uuid={intro_pbd}", 0, None),
    ("pbd-unplug", "pbd-unplug uuid={intro_pbd}", 0, None),
    ("pbd-destroy", "pbd-destroy uuid={intro_pbd}", 0, None),
    ("sr-forget", "sr-forget uuid={intro}", 0, None),
    ("pif-of-xs1", "pif-list host-name-label=xs1 device=eth1 --minimal", 0, "pif"),
    ("pif-unplug", "pif-unplug uuid={pif}", 0, None),
    ("pif-param-get-attached", "pif-param-get uuid={pif} param-name=currently-attached", 0, None),
    ("pif-plug", "pif-plug uuid={pif}", 0, None),
    ("pbd-list-nfs", "pbd-list sr-uuid={nfs1} params=uuid --minimal", 0, "pbds"),
]


@pytest.fixture(scope="module")
def session_runs(tmp_path_factory):
    """Run the whole script once, in order, against one fresh world."""
    home = tmp_path_factory.mktemp("home")
    names: dict[str, str] = {}
    runs = {}
    with running_world(seed=1) as w:
        for step, line, _rc, out in SCRIPT:
            argv = [a.replace("\\ ", " ") for a in re.split(r"(?<!\\) ", line.format(**names))]
            r = xe(w, home, argv)
            runs[step] = r
            if out is not None and r.rc == 0:
                names[out] = r.out.strip()
    return runs, names


@pytest.mark.parametrize("step,line,rc,out", SCRIPT, ids=[s[0] for s in SCRIPT])
def test_xe_object_commands(session_runs, step, line, rc, out):
    runs, names = session_runs
    r = check(f"obj-{step}", runs[step])
    assert r.rc == rc, r.transcript()
    if out is not None and out in ("c7", "nfs1", "data", "copy", "snap", "vbd1", "cd", "net"):
        assert UUID.match(names[out]), r.transcript()


def test_the_installed_vm_is_what_vm_install_makes(session_runs):
    """vm-install is clone + provision: a disk on the default SR, is-a-template false."""
    runs, names = session_runs
    text = runs["vm-disk-list"].out
    assert "Disk 0 VDI:" in text and "sr-name-label ( RO): Local storage" in text
    assert "sr-name-label ( RO): nfs1" in runs["vm-disk-list-sr"].out
    assert runs["vm-param-get-description"].out == "Installed via xe CLI\n"
    assert len(names["pbds"].split(",")) == 3  # one PBD per host of the pool
    # storage motion moved c7b's disk to xs2's local SR
    migrated = runs["vm-disk-list-migrated"].out
    assert "sr-name-label ( RO): Local storage" in migrated and "nfs1" not in migrated
