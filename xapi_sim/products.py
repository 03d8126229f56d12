"""The product releases a simulated host can run, with what each reports about itself.

Loaded from the committed ``data/releases.json`` (``scripts/derive_releases.py``): per
profile (``cream`` = XenServer 6.5 SP1, ``dundee`` = 7.0, ``ely`` = 7.1, ``stockholm`` =
Citrix Hypervisor 8.2 CU1, ``nile`` = XenServer 8, ``xcp-ng-8.3``) the API version
(``api_version_major/minor`` of xen-api ``ocaml/idl/datamodel_common.ml`` at the profile's
revision), the ``software_version`` map in XAPI's key order (``Xapi_globs.software_version``
+ ``Create_misc.make_software_version``), the datamodel release whose lifecycles give the
API surface, the template and SM catalogue releases, the levelling rules and the TLS
defaults. ``docs/releases.md`` has the table. A host's ``version`` (scenario key,
``sim.host_install``) is a profile name or its ``product_version``.
"""

from __future__ import annotations

import json
from importlib import resources

import attrs


@attrs.frozen
class Product:
    version: str  # = software_version["product_version"]
    release: str  # datamodel release whose lifecycles give the API (Schema.for_release)
    api_major: int
    api_minor: int
    platform_version: str
    software_version: tuple  # ((key, value), ...) in XAPI's order
    name: str = ""  # profile name (docs/releases.md)
    title: str = ""
    templates_release: str = ""
    sm_release: str = ""
    levelling: str = ""  # levelling.rules profile
    tls_verification: bool = False  # a fresh pool's pool.tls_verification_enabled

    def software_version_map(self, hostname: str) -> dict:
        return dict(self.software_version)

    @property
    def profile(self) -> str:
        return self.name or self.release


def _load() -> list:
    with resources.files("xapi_sim").joinpath("data/releases.json").open("rb") as fh:
        return json.load(fh)["releases"]


def _product(r: dict) -> Product:
    sv = tuple((k, v) for k, v in r["software_version"])
    return Product(
        version=r["version"],
        release=r["datamodel_release"],
        api_major=r["api_major"],
        api_minor=r["api_minor"],
        platform_version=dict(sv)["platform_version"],
        software_version=sv,
        name=r["name"],
        title=r["title"],
        templates_release=r["templates_release"],
        sm_release=r["sm_release"],
        levelling=r["levelling"],
        tls_verification=r["tls"]["tls_verification"],
    )


PROFILES: dict[str, Product] = {r["name"]: _product(r) for r in _load()}
PRODUCTS: dict[str, Product] = {p.version: p for p in PROFILES.values()}
DEFAULT_VERSION = "7.0.0"
DEFAULT_RELEASE = "dundee"


def lookup(version: str) -> Product:
    """The profile named ``version``: a profile name (``stockholm``) or a product version
    (``8.2.1``); ValueError if neither."""
    p = PRODUCTS.get(version) or PROFILES.get(version)
    if p is None:
        known = ", ".join(f"{n} ({p.version})" for n, p in PROFILES.items())
        raise ValueError(f"unknown product version {version!r} (known: {known})")
    return p


def product(version: str, build_number: str | None = None) -> Product:
    """The release a host runs; ``build_number`` overrides the build it reports (a host
    with a hotfix or a different build: pool.join's software check compares it)."""
    p = lookup(version)
    old = dict(p.software_version)["build_number"]
    if build_number is None or build_number == old:
        return p
    sv = tuple(
        (
            k,
            build_number
            if k == "build_number"
            else v.replace(old, build_number)
            if k.startswith("xs:")
            else v,
        )
        for k, v in p.software_version
    )
    return attrs.evolve(p, software_version=sv)


def profile_of_release(release: str) -> Product | None:
    """The profile whose datamodel release is ``release`` (None for a release no profile
    emulates, e.g. a played-back database's)."""
    for p in PROFILES.values():
        if p.release == release:
            return p
    return None
