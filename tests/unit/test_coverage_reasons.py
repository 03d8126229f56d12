"""Every NOT_IMPLEMENTED message has a reason in scripts/coverage_reasons.toml, and the
reasons' patterns each still match something (a stale pattern hides nothing but misleads)."""

import fnmatch
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("coverage_script", ROOT / "scripts" / "coverage.py")
coverage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(coverage)


def _not_implemented() -> set:
    out = set()
    for release in {p.release for p in coverage.products.PRODUCTS.values()}:
        for cname, c in coverage.Schema.for_release(release).classes.items():
            for m in c.messages.values():
                if coverage.status(m) == "NOT_IMPLEMENTED":
                    out.add(f"{cname}.{m.name}")
    return out


def test_every_not_implemented_message_has_a_reason():
    assert coverage.unexplained() == []


def test_every_reason_explains_something():
    missing = _not_implemented()
    for text, patterns in coverage.load_reasons():
        assert any(fnmatch.fnmatchcase(n, p) for n in missing for p in patterns), text
