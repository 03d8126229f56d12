"""A real headless browser for the page tests: Debian's chromium, driven by Playwright.

One browser per test module (``browser`` is module-scoped). Playwright's own browser
downloads are never used: ``executable_path`` points at the system chromium (installed by
.ci/run and the README's test set-up).
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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


def launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        b = launch(pw)
        try:
            yield b
        finally:
            b.close()


def _login(page, url, user="root", password="xenroot"):
    """Open the page at ``url``, log in, and wait for the World view."""
    page.goto(url + "sim/")
    page.fill("#user", user)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_selector("section.pool table.hosts")


@pytest.fixture(scope="session")
def login():
    """``login(page, url)``: open the page at ``url`` and log in as root."""
    return _login
