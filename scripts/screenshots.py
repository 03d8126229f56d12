"""Regenerate the page's screenshots in docs/ (docs/page.md shows them).

Starts the default world in process, opens /sim/ in Debian's headless chromium through
Playwright (never a downloaded browser), logs in, and saves one PNG per view:

    python3 scripts/screenshots.py            # writes docs/page-*.png

The story view is captured after its first four steps, so the matrix and the alerts show
xs4 joining pool-a. Needs the `test` extra (playwright) and `chromium`.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

from playwright.sync_api import sync_playwright

from xapi_sim.testing import running_world

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def shoot(page, view: str, name: str, settle: str) -> None:
    page.click(f"#tab-{view}")
    page.wait_for_selector(settle)
    page.wait_for_timeout(400)  # let the can-run-where answers and free memory arrive
    path = DOCS / f"page-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path.relative_to(DOCS.parent)}")


def main() -> int:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with running_world(seed=1) as rw, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(rw.url("xs1") + "sim/")
            page.fill("#password", rw.password)
            page.click("#login-button")
            page.wait_for_selector("section.pool table.hosts")
            page.wait_for_timeout(600)
            shoot(page, "vms", "vms", "ul.canrun li.yes")
            shoot(page, "controls", "controls", "fieldset")
            page.click("#tab-story")
            for i in range(5):
                page.click(f"button[data-key='story:{i}']")
                page.wait_for_selector(f"ol.steps li:nth-child({i + 1}) pre.result")
            shoot(page, "story", "story", "ol.steps li.refused")
            shoot(page, "world", "world", ".feed li")
            page.click("#tab-features")
            page.check("input[data-key=diff]")
            shoot(page, "features", "features", "table.matrix")
            page.click("#tab-vms")
            shoot(page, "vms", "vms-refused", "ul.canrun li.no")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
