"""``VM.copy_bios_strings`` (``Xapi_vm_helpers.copy_bios_strings``): a VM without BIOS strings
takes its host's and the host as its affinity; a second copy is
VM_BIOS_STRINGS_ALREADY_SET; a bad VM ref is reported before a bad host ref -- over the
XenAPI package, and through ``xe vm-install copy-bios-strings-from=``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from session_kit import failure, logged_in

XE = shutil.which("xe", path=os.path.dirname(sys.executable)) or shutil.which("xe")


def test_copy_bios_strings_once_then_already_set():
    with logged_in() as (w, s):
        x = s.xenapi
        tpl = x.VM.get_by_name_label("CentOS 7")[0]
        vm = x.VM.clone(tpl, "bios")
        host = x.host.get_by_name_label("xs2")[0]
        assert x.VM.get_bios_strings(vm) == {}
        assert failure(x.VM.copy_bios_strings, "OpaqueRef:bad", "OpaqueRef:worse") == [
            "HANDLE_INVALID",
            "VM",
            "OpaqueRef:bad",
        ]
        assert failure(x.VM.copy_bios_strings, vm, "OpaqueRef:worse") == [
            "HANDLE_INVALID",
            "host",
            "OpaqueRef:worse",
        ]
        x.VM.copy_bios_strings(vm, host)
        strings = x.host.get_bios_strings(host)
        assert strings and x.VM.get_bios_strings(vm) == strings
        assert x.VM.get_affinity(vm) == host
        # once set, never copied again (even before the host ref is looked at)
        assert failure(x.VM.copy_bios_strings, vm, "OpaqueRef:worse") == [
            "VM_BIOS_STRINGS_ALREADY_SET"
        ]


def test_xe_vm_install_copies_the_hosts_bios_strings(tmp_path):
    with logged_in() as (w, s):
        x = s.xenapi
        xs2 = x.host.get_by_name_label("xs2")[0]
        m = w.host("xs1")
        env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
        env["HOME"] = str(tmp_path)
        argv = [XE, "-s", m.address_for_url, "-p", str(m.port), "-u", "root", "-pw", "xenroot"]
        argv += ["vm-install", "template=CentOS 7", "new-name-label=b2"]
        argv += [f"copy-bios-strings-from={x.host.get_uuid(xs2)}"]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        vm = x.VM.get_by_uuid(r.stdout.strip())
        assert x.VM.get_bios_strings(vm) == x.host.get_bios_strings(xs2)
        assert x.VM.get_affinity(vm) == xs2
