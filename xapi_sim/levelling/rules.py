"""Per-release levelling rules: which ``cpu_info`` keys a host reports, which keys the pool
level combines and VMs boot with, what migration checks compare, how featuresets compare,
and whether alerts are raised. One pure table read by ``cpus`` and ``policy`` -- the
algorithms are written once and parametrised, never copied per release.

Sources (xen-api history; levelling spec §1-§4, "HEAD" sections):

* ``cream`` (6.5 SP1): levelling v1 (``features``/``physical_features``/``maskable``,
  ``set_cpu_features`` masking); no ``pool.cpu_info``.
* ``dundee`` (7.0, 27c06009b1): ``features_pv``/``features_hvm`` (+ old-style ``features``);
  pool level = intersection of every host's sets; length-sensitive comparisons; host and
  pool alerts up and down.
* ``ely`` (7.1, branch 1.14-lcm): Dundee's keys and pool rule, with the 2018 fixes
  (``Cpuid_helpers.is_equal`` zero-extends, CA-279498) and the 10-word featureset of the
  2018 microcode hotfixes.
* ``stockholm`` (8.2 CU1, branch 1.249-lcm): ``create_misc.ml`` ``create_host_cpu`` reports
  ``features_pv``/``features_hvm`` (the *max* policies, migration checks) and
  ``features_pv_host``/``features_hvm_host`` (the *default* policies, pool level and VM
  boot); no ``features`` key (f2a2b925a2, 2022); ``create_pool_cpuinfo`` combines only the
  ``_host`` keys, the HVM one over HVM-capable hosts only (``Helpers.host_supports_hvm``),
  and raises no alert (dd3dc05a66).
* ``nile`` (XenServer 8, v23.30.0): as stockholm, on the current Xen policy era.
* ``xcp-ng-8.3`` (v24.19.2): as nile, plus ``threads_per_core`` (79a0ab5609, 2024).

The pool level is combined with an intersection (an empty side is an identity); XenServer's
``xc_combine_cpu_featuresets`` also ORs a few "|" features and drops orphaned dependents,
which the catalogue's hosts never exercise (docs/levelling.md).
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Rules:
    name: str
    cpu_keys: str  # "v1" (levelling v1), "dundee" (features_pv/hvm + features), "host"
    era: str  # cpus.json era of the host featuresets
    semantics: str  # featureset comparisons: "dundee" (length-sensitive) or "2018"
    pool_keys: tuple[str, str]  # (pv, hvm) keys combined into pool.cpu_info
    boot_keys: tuple[str, str]  # (pv, hvm) pool keys VM.start copies into the VM's flags
    check_keys: tuple[str, str]  # (pv, hvm) host keys a running VM's flags must fit
    pool_hvm_capable_only: bool = False
    host_alerts: bool = True
    pool_alerts: bool = True
    threads_per_core: bool = False
    word9_backport: bool = False

    @property
    def has_pool_level(self) -> bool:
        return self.cpu_keys != "v1"


_PLAIN = ("features_pv", "features_hvm")
_HOST = ("features_pv_host", "features_hvm_host")

CREAM = Rules("cream", "v1", "xs-levelling-v1", "dundee", _PLAIN, _PLAIN, _PLAIN)
DUNDEE = Rules("dundee", "dundee", "xen-4.7", "dundee", _PLAIN, _PLAIN, _PLAIN)
ELY = Rules("ely", "dundee", "xen-4.7", "2018", _PLAIN, _PLAIN, _PLAIN, word9_backport=True)
STOCKHOLM = Rules(
    "stockholm",
    "host",
    "xs-xen4.13-2021",
    "2018",
    _HOST,
    _HOST,
    _PLAIN,
    pool_hvm_capable_only=True,
    host_alerts=False,
    pool_alerts=False,
)
NILE = attrs.evolve(STOCKHOLM, name="nile", era="latest")
XCP_NG_83 = attrs.evolve(NILE, name="xcp-ng-8.3", threads_per_core=True)

RULES: dict[str, Rules] = {r.name: r for r in (CREAM, DUNDEE, ELY, STOCKHOLM, NILE, XCP_NG_83)}


def rules(name: str) -> Rules:
    """The rules of a levelling profile (``products.Product.levelling``)."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown levelling rules {name!r}; use one of {list(RULES)}") from None
