"""Ansible's ``community.general`` XenServer modules against a running world.

``ansible-playbook`` (ansible-core and the collection from PyPI's ``ansible`` package, the
``test`` extra) runs as a subprocess against the master's URL: ``xenserver_guest`` deploys a
VM from the "CentOS 7" template with a disk on the default SR and a network, a
``state=present`` re-run reconfigures the existing VM (vCPUs, memory, a second disk, a
second NIC), ``xenserver_guest_info`` reports what the API holds; after the guest's PV
drivers are installed (``sim.vm_set_pv_drivers``), ``xenserver_guest_powerstate`` powers
it on and waits for its IP address, shuts it down through the guest, powers it on and off,
and ``xenserver_guest state=absent`` removes it. The json stdout callback gives every
task's result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import XenAPI

from xapi_sim.testing import running_world

PLAYBOOK = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)) or shutil.which(
    "ansible-playbook"
)

HEAD = """
- hosts: localhost
  connection: local
  gather_facts: false
  environment:
    XENSERVER_HOST: "{{ xs_host }}"
    XENSERVER_USER: root
    XENSERVER_PASSWORD: xenroot
  tasks:
"""

DEPLOY = (
    HEAD
    + """
    - name: deploy
      community.general.xenserver_guest:
        name: ans1
        state: present
        template: CentOS 7
        disks: [{size_gb: 10}]
        hardware: {num_cpus: 1, memory_mb: 1024}
        networks: [{name: Pool-wide network associated with eth0}]
    - name: reconfigure
      community.general.xenserver_guest:
        name: ans1
        state: present
        disks: [{size_gb: 10}, {size_gb: 1, name: second}]
        hardware: {num_cpus: 2, memory_mb: 2048}
        networks:
          - {name: Pool-wide network associated with eth0}
          - {name: Pool-wide network associated with eth1}
    - name: unchanged
      community.general.xenserver_guest:
        name: ans1
        state: present
        hardware: {num_cpus: 2, memory_mb: 2048}
    - name: info
      community.general.xenserver_guest_info:
        name: ans1
"""
)

POWER = (
    HEAD
    + """
    - name: poweredon
      community.general.xenserver_guest_powerstate:
        name: ans1
        state: powered-on
        wait_for_ip_address: true
        state_change_timeout: 20
    - name: info
      community.general.xenserver_guest_info:
        name: ans1
    - name: shutdownguest
      community.general.xenserver_guest_powerstate:
        name: ans1
        state: shutdown-guest
        state_change_timeout: 20
    - name: poweredon again
      community.general.xenserver_guest_powerstate:
        name: ans1
        state: powered-on
    - name: poweredoff
      community.general.xenserver_guest_powerstate:
        name: ans1
        state: powered-off
    - name: absent
      community.general.xenserver_guest:
        name: ans1
        state: absent
"""
)


def _play(w, tmp_path, name, text) -> dict:
    if PLAYBOOK is None:
        pytest.fail("ansible-playbook is not installed (pip install -e '.[test]')")
    path = tmp_path / f"{name}.yml"
    path.write_text(text)
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
    )
    proc = subprocess.run(
        [PLAYBOOK, str(path), "-e", "xs_host=" + w.master_url()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    out = json.loads(proc.stdout)
    results = {t["task"]["name"]: t["hosts"]["localhost"] for p in out["plays"] for t in p["tasks"]}
    failed = {k: r.get("msg") for k, r in results.items() if r.get("failed")}
    assert proc.returncode == 0 and not failed, (failed, proc.stderr[-2000:])
    return results


@pytest.fixture(scope="module")
def ansible_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ansible")
    with running_world(seed=1) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        x = s.xenapi
        deploy = _play(w, tmp, "deploy", DEPLOY)
        (vm,) = x.VM.get_by_name_label("ans1")
        api = {
            "disks": sorted(
                (x.VBD.get_userdevice(b), x.VDI.get_virtual_size(x.VBD.get_VDI(b)))
                for b in x.VM.get_VBDs(vm)
            ),
            "vifs": sorted(
                (v["device"], v["MAC"], x.network.get_name_label(v["network"]))
                for v in map(x.VIF.get_record, x.VM.get_VIFs(vm))
            ),
            "vcpus": x.VM.get_VCPUs_max(vm),
            "memory": x.VM.get_memory_static_max(vm),
        }
        # the guest OS gets its PV tools (the simulator runs no guest)
        x.sim.vm_set_pv_drivers(vm, True)
        power = _play(w, tmp, "power", POWER)
        yield deploy, power, api, x


def test_deploy_from_a_template_with_a_disk_and_a_network(ansible_run):
    deploy, _, api, _ = ansible_run
    inst = deploy["deploy"]["instance"]
    assert deploy["deploy"]["changed"] is True and inst["state"] == "poweredoff"
    assert [(d["vbd_userdevice"], d["size"], d["sr"]) for d in inst["disks"]] == [
        ("0", 10 << 30, "Local storage")
    ]
    assert [n["name"] for n in inst["networks"]] == ["Pool-wide network associated with eth0"]
    assert inst["other_config"]["base_template_name"] == "CentOS 7"


def test_present_rerun_reconfigures_the_existing_vm(ansible_run):
    deploy, _, api, _ = ansible_run
    r = deploy["reconfigure"]
    assert r["changed"] is True
    assert {"hardware": ["num_cpus", "memory_mb"]} in r["changes"]
    assert deploy["unchanged"]["changed"] is False
    assert api["vcpus"] == "2" and api["memory"] == str(2048 << 20)
    assert api["disks"] == [("0", str(10 << 30)), ("1", str(1 << 30))]


def test_guest_info_matches_the_api(ansible_run):
    deploy, _, api, _ = ansible_run
    inst = deploy["info"]["instance"]
    assert sorted((d["vbd_userdevice"], str(d["size"])) for d in inst["disks"]) == api["disks"]
    assert sorted((n["vif_device"], n["mac"], n["name"]) for n in inst["networks"]) == api["vifs"]
    assert inst["hardware"] == {"memory_mb": 2048, "num_cpu_cores_per_socket": 1, "num_cpus": 2}


def test_power_states_and_the_guests_ip_address(ansible_run):
    _, power, api, x = ansible_run
    on = power["poweredon"]["instance"]
    assert on["state"] == "poweredon"
    ips = {n["vif_device"]: n["ip"] for n in on["networks"]}
    assert all(ips.values()) and set(ips) == {"0", "1"}
    assert {n["vif_device"]: n["ip"] for n in power["info"]["instance"]["networks"]} == ips
    assert power["shutdownguest"]["instance"]["state"] == "poweredoff"
    assert power["poweredon again"]["instance"]["state"] == "poweredon"
    assert power["poweredoff"]["instance"]["state"] == "poweredoff"
    assert power["absent"]["changed"] is True
    assert x.VM.get_by_name_label("ans1") == []
