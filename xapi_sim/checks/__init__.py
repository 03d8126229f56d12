"""XAPI's per-class operation checks, transcribed from xen-api at the Dundee fork (pure).

One module per class family, each with one ``check_operation_error`` (or
``valid_operations``) that both refuses calls and fills ``allowed_operations``, as xen-api
does. Source: xen-api branch ``dundee-lcm`` (XenServer 7.0 LCM branch, commit
``a1cce4a026``; its tree is identical to tag ``v1.9.83``):

* :mod:`.vm` -- ``ocaml/xapi/xapi_vm_lifecycle.ml``
* :mod:`.host` -- ``ocaml/xapi/xapi_host_helpers.ml``
* :mod:`.pool` -- ``ocaml/xapi/xapi_pool_helpers.ml``
* :mod:`.storage` -- ``xapi_sr_operations.ml`` (SR), ``xapi_vdi.ml`` (VDI),
  ``xapi_vbd_helpers.ml`` (VBD)
* :mod:`.network` -- ``xapi_vif_helpers.ml`` (VIF), ``xapi_pif.ml`` (PIF preconditions)
* :mod:`.operations` -- what they share: the first-error-wins table, Record_util strings,
  OCaml list helpers.

Inputs are rows as the store holds them (dicts keyed by datamodel field names) plus the
facts a rule needs from other objects, passed explicitly; outputs are ``None`` or
``(code, [params])`` -- never an exception for a valid operation name.
"""
