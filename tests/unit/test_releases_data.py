"""The committed release data matches scripts/derive_releases.py's facts, and the per-release
error tables differ from today's only where the release's datamodel said otherwise."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from importlib import resources

from xapi_sim import errors, products

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_derive_releases_check():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "derive_releases.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def test_error_tables_are_well_formed():
    raw = json.loads(resources.files("xapi_sim").joinpath("data/errors_releases.json").read_text())
    assert set(raw) == set(products.PROFILES)
    for profile, table in raw.items():
        for code, (params, doc) in table.items():
            assert code.isupper() and isinstance(params, list) and doc, (profile, code)
            assert errors.errors_for(profile)[code] == [params, doc]
            assert errors.ERRORS.get(code) != [params, doc]
    assert errors.errors_for(None) is errors.ERRORS
    assert errors.doc("HOST_IS_SLAVE", "dundee").endswith("via the master host.")
