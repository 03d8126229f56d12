"""The page at /sim/ in a real headless browser (Debian's chromium, driven by Playwright).

One world and one browser for the module; the tests run in order on the same world and
page, as a user would: log in, follow a host reboot after a hardware change and see the pool
level narrow, see a refused migration's reason, see an ``xe`` change appear without reload,
and move around with the keyboard.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xapi_sim.testing import running_world

WAIT = 10_000  # ms: generous under load; the page itself follows changes within a second


@pytest.fixture(scope="module")
def rw():
    with running_world() as w:
        yield w


@pytest.fixture(scope="module")
def page(browser, rw):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    p = ctx.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.errors = errors
    yield p
    ctx.close()
    assert not errors, errors


def outcome(page):
    page.wait_for_selector("#outcome.ok, #outcome.refused", timeout=WAIT)
    return page.inner_text("#outcome")


def test_wrong_password_is_refused_then_login_from_a_member(page, rw, login):
    page.goto(rw.url("xs2") + "sim/")
    page.fill("#password", "wrong")
    page.click("#login-button")
    page.wait_for_selector("#login-error:has-text('SESSION_AUTHENTICATION_FAILED')", timeout=WAIT)
    # xs2 is a member: the page follows HOST_IS_SLAVE to the master, as clients do
    login(page, rw.url("xs2"))
    for name in ("xs1", "xs2", "xs3", "xs4", "xs5"):
        page.wait_for_selector(f"tr[data-host={name}]", timeout=WAIT)
    assert page.locator("section.pool h2").all_inner_texts()[:3] == [
        "Pool pool-a",
        "Standalone host xs4",
        "Standalone host xs5",
    ]
    # the row is drawn from sim.world first; its state and CPU cells once the pool's first
    # event batch has arrived
    page.wait_for_selector("tr[data-host=xs3]:has-text('Ivy Bridge')", timeout=WAIT)
    xs3 = page.inner_text("tr[data-host=xs3]")
    assert "Ivy Bridge" in xs3 and "GenuineIntel" in xs3 and "2 × 6 = 12" in xs3


def test_hardware_change_and_reboot_narrow_the_pool_level(page):
    # aesni is in pool-a's level (Ivy Bridge has it); hide it on xs3
    page.click("#tab-features")
    level = "tr.level td[data-feature=aesni]"
    page.wait_for_selector(f"section:has(h2:text-is('Pool pool-a')) {level}[data-state=in]")
    # db1 runs on xs3: move it away first (host.reboot needs no resident VMs)
    page.click("#tab-vms")
    row = page.locator("tr[data-vm=db1]")
    row.locator("select").select_option(label="xs1")
    row.locator("button:text-is('Migrate')").click()
    assert "VM.pool_migrate db1 → xs1: done" in outcome(page)
    page.wait_for_selector("tr[data-vm=db1] td.vmhost:text-is('xs1')", timeout=WAIT)
    page.click("#tab-controls")
    page.select_option("select[data-key=hw-host]", label="xs3")
    page.fill("input[data-key=hw-hidden]", "aesni")
    page.click("button[data-key=hw-stage]")
    assert "done" in outcome(page)
    for button, text in (("hw-disable", "host.disable xs3"), ("hw-reboot", "host.reboot xs3")):
        page.click(f"button[data-key={button}]")
        assert f"{text}: done" in outcome(page)
    page.click("#tab-features")
    pool = "section:has(h2:text-is('Pool pool-a'))"
    page.wait_for_selector(f"{pool} {level}[data-state=absent]", timeout=WAIT)
    xs1 = page.locator(f"{pool} tr:has(th:text-is('xs1 features_hvm')) td[data-feature=aesni]")
    assert xs1.get_attribute("data-state") == "extra"
    assert xs1.inner_text() == "▲"  # a symbol, not colour alone
    assert "present, but not in the pool level" in xs1.get_attribute("title")
    # the alerts feed shows XAPI's messages, newest first
    page.click("#tab-world")
    page.wait_for_selector(".feed li:has-text('POOL_CPU_FEATURES_DOWN')", timeout=WAIT)


def test_refused_migration_shows_xapi_reason(page):
    page.click("#tab-vms")
    # web1 booted with the old level (aesni included): xs3 now lacks it
    cell = "tr[data-vm=web1] ul.canrun li[data-host=xs3]"
    page.wait_for_selector(f"{cell}.no:has-text('VM_INCOMPATIBLE_WITH_THIS_HOST')", timeout=WAIT)
    assert "features this host's CPU does not have" in page.inner_text(cell)
    row = page.locator("tr[data-vm=web1]")
    row.locator("select").select_option(label="xs3")
    row.locator("button:text-is('Migrate')").click()
    text = outcome(page)
    assert "refused" in text and "VM_INCOMPATIBLE_WITH_THIS_HOST" in text
    assert "VM last booted on a CPU with features this host's CPU does not have." in text


def test_xe_change_appears_without_reload(page, rw, tmp_path):
    page.click("#tab-vms")
    page.wait_for_selector("tr[data-vm=web2]")
    page.evaluate("window.__noReload = true")
    vm = rw.world.pools[0]
    uuid = next(r["uuid"] for r in vm.db.tables["VM"].values() if r["name_label"] == "web2")
    h = rw.host("xs1")
    cmd = [sys.executable, "-m", "xapi_sim.xe", "-s", h.address, "-p", str(h.port)]
    cmd += ["-u", rw.user, "-pw", rw.password, "vm-param-set", f"uuid={uuid}"]
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run(cmd + ["name-label=web2-renamed"], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    page.wait_for_selector("tr[data-vm=web2-renamed]", timeout=WAIT)
    assert page.evaluate("window.__noReload") is True  # the same document: no reload


def test_keyboard_navigation(page):
    page.click("#tab-world")
    page.focus("#tab-world")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-features"
    assert page.get_attribute("#tab-features", "aria-selected") == "true"
    page.wait_for_selector("table.matrix")
    # the grid is one tab stop; arrow keys move inside it
    first = page.locator("table.matrix td[tabindex='0']").first
    first.focus()
    start = int(first.get_attribute("data-c"))
    page.keyboard.press("ArrowRight")
    active = page.evaluate("[document.activeElement.dataset.c, document.activeElement.title]")
    assert int(active[0]) == start + 1
    info = page.inner_text("#cellinfo")
    assert info == active[1] and "word" in info and "bit" in info
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.r") == "1"
    # the HVM/PV toggle and the other views by keyboard alone
    page.focus("button[data-key='mode:pv']")
    page.keyboard.press("Enter")
    page.wait_for_selector("table.matrix[aria-label$=features_pv]")
    page.focus("#tab-features")
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-story"
    page.wait_for_selector("ol.steps")
