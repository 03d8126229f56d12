"""docs/coverage.md is generated from the code; a stale file fails the suite."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_coverage_doc_is_current():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "coverage.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
