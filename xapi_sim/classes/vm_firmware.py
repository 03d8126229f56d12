"""VM firmware: domain_type and HVM_boot_policy in step, UEFI and Secure Boot at start, NVRAM,
and the vTPM (docs/certificates-updates.md, "VM features").

Each handler exists where the emulated release's datamodel has the message. Mirrors xen-api:

- ``VM.set_domain_type`` / ``VM.set_HVM_boot_policy`` (``ocaml/xapi/xapi_vm.ml`` at
  1.249-lcm and v23.30.0): each sets the other field too (``derive_hvm_boot_policy``: "BIOS
  order" for hvm, "" otherwise; ``derive_domain_type``: "" is pv, anything else hvm);
  ``unspecified`` is INVALID_VALUE ["domain_type", "unspecified"]. Before ``domain_type``
  (jura, 7.5) only the boot policy is set.
- ``VM.set_NVRAM`` (v23.30.0 ``message_forwarding.ml``: ``with_vm_operation
  changing_NVRAM``, allowed when Halted, ``xapi_vm_lifecycle.ml``).
- At start (``Xapi_vm.start``, ``Xapi_xenops.firmware_of_vm``): ``HVM_boot_params:firmware``
  must be ``bios`` or ``uefi`` (INVALID_VALUE ["HVM-boot-params['firmware']", value]);
  ``platform:secureboot=auto`` becomes "true" when ``pool.uefi_certificates`` is set, else
  "false" (``update_platform_secureboot``); a UEFI guest's varstored writes its variable
  store on first boot (``VM.set_NVRAM_EFI_variables``, internal: ``NVRAM:EFI-variables``,
  here a fixed simulated blob); ``restart_device_model`` leaves the VM's pending
  guidances (``set_resident_on``).
- ``VTPM.create`` / ``VTPM.destroy`` (the 22.26.0 redesign, ``ocaml/xapi/xapi_vtpm.ml`` at
  v23.30.0): the VM must be Halted (VM_BAD_POWER_STATE [vm, "halted", actual]), may have
  one vTPM only (VTPM_MAX_AMOUNT_REACHED [count]), and the pool must not restrict
  ``restrict_vtpm`` (FEATURE_RESTRICTED ["restrict_vtpm"]); a vTPM's
  ``allowed_operations`` is [destroy] while its VM is Halted
  (``vtpm_update_allowed_operations``).
"""

from __future__ import annotations

import base64
import logging

from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure

log = logging.getLogger(__name__)

HVM_DEFAULT_BOOT_POLICY = "BIOS order"  # Constants.hvm_default_boot_policy
# what varstored's first write looks like to the API: a base64 variable store (simulated)
EFI_VARIABLES = base64.b64encode(b"xapi-sim simulated UEFI variable store\0").decode()


def _vm_fields(call) -> dict:
    return call.db.schema.classes["VM"].fields


@api("VM.set_domain_type")
def set_domain_type(call, self, value):
    call.db.get("VM", self)
    if value == "unspecified":
        raise Failure("INVALID_VALUE", "domain_type", value)
    call.db.update(
        "VM",
        self,
        domain_type=value,
        HVM_boot_policy=HVM_DEFAULT_BOOT_POLICY if value == "hvm" else "",
    )


@api("VM.set_HVM_boot_policy")
def set_hvm_boot_policy(call, self, value):
    call.db.get("VM", self)
    changes = {"HVM_boot_policy": value}
    if "domain_type" in _vm_fields(call):
        changes["domain_type"] = "pv" if value == "" else "hvm"
    call.db.update("VM", self, **changes)


def _assert_halted(call, vm: str) -> None:
    power = call.db.get("VM", vm)["power_state"]
    if power != "Halted":
        raise Failure("VM_BAD_POWER_STATE", vm, "halted", power.lower())


@api("VM.set_NVRAM")
def set_nvram(call, self, value):
    with call.db.lock:
        _assert_halted(call, self)
        call.db.set("VM", self, "NVRAM", dict(value))


def at_boot(call, vm: str) -> None:
    """What ``Xapi_vm.start`` does to the record before the domain is built (releases with
    ``VM.NVRAM``; an HVM guest)."""
    db = call.db
    fields = _vm_fields(call)
    row = db.get("VM", vm)
    if "NVRAM" not in fields or row["is_control_domain"] or not row["HVM_boot_policy"]:
        return
    firmware = row["HVM_boot_params"].get("firmware", "bios")
    if firmware not in ("bios", "uefi"):
        raise Failure("INVALID_VALUE", "HVM-boot-params['firmware']", firmware)
    changes: dict = {}
    platform = row["platform"]
    if platform.get("secureboot") == "auto" and "uefi_certificates" in (
        db.schema.classes["pool"].fields
    ):
        certs = db.get("pool", call.pool.ref)["uefi_certificates"]
        changes["platform"] = {**platform, "secureboot": "true" if certs else "false"}
    if firmware == "uefi" and "EFI-variables" not in row["NVRAM"]:
        changes["NVRAM"] = {**row["NVRAM"], "EFI-variables": EFI_VARIABLES}
    if changes:
        db.update("VM", vm, **changes)


# -- VTPM (22.26.0 on) ---------------------------------------------------------------------


def refresh_vtpms(call, vm: str) -> None:
    """``vtpm_update_allowed_operations`` for each of the VM's vTPMs."""
    db = call.db
    if "VTPM" not in db.schema.classes or not db.exists("VM", vm):
        return
    row = db.get("VM", vm)
    allowed = ["destroy"] if row["power_state"] == "Halted" else []
    for t in row["VTPMs"]:
        if db.exists("VTPM", t) and db.get("VTPM", t)["allowed_operations"] != allowed:
            db.set("VTPM", t, "allowed_operations", allowed)


@api("VTPM.create")
def vtpm_create(call, vM, is_unique):
    db = call.db
    with db.lock:
        row = db.get("VM", vM)
        # with_vm_operation create_vtpm: the VM's check first (power state, then count)
        _assert_halted(call, vM)
        if row["VTPMs"]:
            raise Failure("VTPM_MAX_AMOUNT_REACHED", str(len(row["VTPMs"])))
        restr = db.get("pool", call.pool.ref)["restrictions"]
        if restr.get("restrict_vtpm") != "false":
            raise Failure("FEATURE_RESTRICTED", "restrict_vtpm")
        ref = call.world.new_row(
            db,
            "VTPM",
            VM=vM,
            backend=NULL_REF,
            persistence_backend="xapi",
            is_unique=is_unique,
            is_protected=False,
            allowed_operations=["destroy"],
            current_operations={},
        )
        return ref


@api("VTPM.destroy")
def vtpm_destroy(call, self):
    db = call.db
    with db.lock:
        vm = db.get("VTPM", self)["VM"]
        if db.exists("VM", vm):
            _assert_halted(call, vm)
        db.remove("VTPM", self)
