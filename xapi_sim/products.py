"""The product releases a simulated host can run, with what each reports about itself.

``software_version`` keys and order follow xen-api ``Create_misc.make_software_version``
(Dundee); API versions follow ``Xapi_globs.api_version_major/minor`` (7.0 = 2.5, 6.5 SP1 = 2.4).
Values the source does not pin (build numbers, Xen/Linux versions, build host and date) are
plausible fixed values, documented as such in ``docs/scenarios.md``.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Product:
    version: str  # scenario key, = software_version["product_version"]
    release: str  # datamodel release code name
    api_major: int
    api_minor: int
    platform_version: str
    software_version: tuple  # ((key, value), ...) in XAPI's order

    def software_version_map(self, hostname: str) -> dict:
        return dict(self.software_version)


def _sv(product_version, text, brand, build, platform_version, date, xen, linux, xc, dbv, pack):
    return (
        ("product_version", product_version),
        ("product_version_text", text),
        ("product_version_text_short", text),
        ("platform_name", "XCP"),
        ("platform_version", platform_version),
        ("product_brand", brand),
        ("build_number", build),
        ("git_id", "0"),
        ("hostname", "xenbuild"),
        ("date", date),
        ("dbv", dbv),
        ("xapi", "1.9"),
        ("xen", xen),
        ("linux", linux),
        ("xencenter_min", xc),
        ("xencenter_max", xc),
        ("network_backend", "openvswitch"),
        ("xs:main", pack),
    )


PRODUCTS = {
    "7.0.0": Product(
        "7.0.0",
        "dundee",
        2,
        5,
        "2.1.0",
        _sv(
            "7.0.0",
            "7.0",
            "XenServer",
            "125380c",
            "2.1.0",
            "2016-05-13",
            "4.6.1-xs125300",
            "3.10.0+10",
            "2.5",
            "2016.0520",
            "Base Pack, version 7.0.0-125380c",
        ),
    ),
    "6.5.0": Product(
        "6.5.0",
        "cream",
        2,
        4,
        "1.9.0",
        _sv(
            "6.5.0",
            "6.5",
            "XenServer",
            "90233c",
            "1.9.0",
            "2015-01-06",
            "4.4.1-xs90192",
            "3.10.0+2",
            "2.4",
            "2014.1217",
            "Base Pack, version 6.5.0-90233c",
        ),
    ),
}
DEFAULT_VERSION = "7.0.0"


def product(version: str, build_number: str | None = None) -> Product:
    """The release a host runs; ``build_number`` overrides the build it reports (a host
    with a hotfix or a different build: pool.join's software check compares it)."""
    try:
        p = PRODUCTS[version]
    except KeyError:
        raise ValueError(
            f"unknown product version {version!r} (known: {', '.join(sorted(PRODUCTS))})"
        ) from None
    if build_number is None or build_number == dict(p.software_version)["build_number"]:
        return p
    sv = tuple(
        (
            k,
            build_number
            if k == "build_number"
            else v.replace(dict(p.software_version)["build_number"], build_number)
            if k == "xs:main"
            else v,
        )
        for k, v in p.software_version
    )
    return attrs.evolve(p, software_version=sv)
