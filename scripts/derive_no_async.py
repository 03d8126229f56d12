#!/usr/bin/env python3
"""Derive xapi_sim/data/no_async.json: the custom messages XAPI declares without an async
mode (``call ~flags:[`Session]`` in ``ocaml/idl/datamodel*.ml``; the default is
``[`Session; `Async]``, datamodel_common.ml). ``xenapi.json`` does not carry this flag.

Usage: python scripts/derive_no_async.py XEN_API_CHECKOUT_OR_DIR_OF_ML_FILES

Parses each ``let NAME = call ... ()`` binding for ``~name`` and ``~flags``, then each
``create_obj ... ~name:<cls> ... ~messages:[...]`` for the bindings a class lists.
"""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CALL = re.compile(
    r"let\s+(\w+)\s*=\s*call\b(.*?)\(\)\s*(?=\n\s*(?:let|and|\(\*|end|module|$))", re.S
)
NAME = re.compile(r'~name:"([^"]+)"')
CLASSNAME = re.compile(r'~name:(?:_(\w+)|"(\w+)")')
OBJ = re.compile(r"create_obj\b(.*?)~messages:\s*\[(.*?)\]", re.S)


def parse(text):
    calls = {}
    for m in CALL.finditer(text):
        ident, body = m.group(1), m.group(2)
        nm = NAME.search(body)
        if not nm:
            continue
        session_only = re.search(r"~flags:\s*\[\s*`Session\s*\]", body) is not None
        calls[ident] = (nm.group(1), session_only)
    out = {}
    for m in OBJ.finditer(text):
        head, msgs = m.group(1), m.group(2)
        cn = CLASSNAME.search(head)
        if not cn:
            continue
        cls = cn.group(1) or cn.group(2)
        for ident in re.findall(r"[\w.]+", msgs):
            key = ident.split(".")[-1]
            if key in calls and calls[key][1]:
                out.setdefault(cls, set()).add(calls[key][0])
    return out


def main(argv):
    src = pathlib.Path(argv[1])
    idl = src / "ocaml" / "idl" if (src / "ocaml").exists() else src
    found = {}
    for f in sorted(idl.glob("datamodel*.ml")):
        for cls, names in parse(f.read_text()).items():
            found.setdefault(cls, set()).update(names)
    # class names in the datamodel are _vm = "VM", _host = "host", ...
    consts = {
        "vm": "VM",
        "vm_metrics": "VM_metrics",
        "vm_guest_metrics": "VM_guest_metrics",
        "sr": "SR",
        "vdi": "VDI",
        "vbd": "VBD",
        "vif": "VIF",
        "pif": "PIF",
        "pbd": "PBD",
        "sm": "SM",
        "vlan": "VLAN",
        "bond": "Bond",
        "vgpu": "VGPU",
        "pgpu": "PGPU",
        "pci": "PCI",
        "vmpp": "VMPP",
        "vmss": "VMSS",
        "vm_appliance": "VM_appliance",
        "dr_task": "DR_task",
        "lvhd": "LVHD",
        "gpu_group": "GPU_group",
        "vgpu_type": "VGPU_type",
        "vtpm": "VTPM",
        "pusb": "PUSB",
        "usb_group": "USB_group",
        "vusb": "VUSB",
        "sdn_controller": "SDN_controller",
        "feature": "Feature",
        "cluster": "Cluster",
        "cluster_host": "Cluster_host",
    }
    out = {consts.get(c, c): sorted(n) for c, n in sorted(found.items())}
    dest = ROOT / "xapi_sim" / "data" / "no_async.json"
    dest.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sum(map(len, out.values()))} messages of {len(out)} classes to {dest}")


if __name__ == "__main__":
    main(sys.argv)
