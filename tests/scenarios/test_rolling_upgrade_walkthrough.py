"""Issue 5: the full RPU walk-through of docs/rolling-upgrade.md runs and says what it should."""

from __future__ import annotations

import pathlib
import runpy

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_rolling_upgrade_walkthrough():
    mod = runpy.run_path(str(ROOT / "examples" / "rolling_upgrade.py"))
    from xapi_sim.testing import running_world

    lines = []
    with running_world(ROOT / "examples" / "rpu-from-6.5.toml", seed=1) as w:
        mod["walk"]({h["name_label"]: h["url"] for h in w.describe()["hosts"]}, lines.append)
    text = "\n".join(lines)
    assert "{'rolling_upgrade_in_progress': 'true'}" in text
    assert "and not back to an old host: ['NOT_SUPPORTED_DURING_UPGRADE']" in text
    assert "old-ivy upgraded" in text and "RPU in progress" in text
    assert "old-sandy upgraded" in text and "RPU finished" in text
    assert "CPU alerts raised during the upgrade: 0" in text
    assert text.count("(= pool level: True)") == 2
    # the documented output is what the example prints
    doc = (ROOT / "docs" / "rolling-upgrade.md").read_text()
    for line in lines:
        assert line in doc


def test_levelling_story_matches_docs():
    """docs/levelling.md shows the real output of examples/levelling_story.py."""
    mod = runpy.run_path(str(ROOT / "examples" / "levelling_story.py"))
    from xapi_sim.testing import running_world

    lines = []
    with running_world(seed=1) as w:
        mod["story"]({h["name_label"]: h["url"] for h in w.describe()["hosts"]}, lines.append)
    doc = (ROOT / "docs" / "levelling.md").read_text()
    for line in lines:
        assert line in doc
