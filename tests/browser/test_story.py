"""The guided story (docs/levelling.md's walk-through as buttons) and host power controls,
in a real headless browser on a fresh default world."""

from __future__ import annotations

import pytest

from xapi_sim.testing import running_world

WAIT = 10_000

EXPECTED = [
    "pool level: 17cbfbff-f7ba2223-2993fbff-00000003-00000001-00000281-",
    "equal to the pool level: true",
    "web1 is now resident on xs3",
    "xs4 joined pool-a",
    "refused: VM_INCOMPATIBLE_WITH_THIS_HOST [web1, xs4, VM last booted on a CPU with "
    "features this host's CPU does not have.]",
    "after clean_reboot: 17cbfbff-f7ba2223-2993fbff-00000003-00000001-00000281-",
    "after shutdown + start: 17cbfbff-97ba2223-2993fbff-00000003-00000001-00000000-",
    "web1 is now resident on xs4",
    "refused: HOSTS_NOT_HOMOGENEOUS [CPUs differ]",
]


@pytest.fixture(scope="module")
def page(browser, login):
    with running_world() as rw:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        p = ctx.new_page()
        errors = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        login(p, rw.url("xs1"))
        yield p
        ctx.close()
        assert not errors, errors


def test_the_levelling_story_step_by_step(page):
    page.click("#tab-story")
    for i, want in enumerate(EXPECTED):
        page.click(f"button[data-key='story:{i}']")
        result = f"ol.steps li:nth-child({i + 1}) pre.result"
        page.wait_for_selector(result, timeout=WAIT)
        assert want in page.inner_text(result), (i, page.inner_text(result))
        assert page.inner_text(f"ol.steps li:nth-child({i + 1}) p.why")  # explained
    # the other views followed: xs4 is a member, and the alert is in the feed
    page.click("#tab-world")
    page.wait_for_selector("tr[data-host=xs4] td:text-is('member')", timeout=WAIT)
    page.wait_for_selector(".feed li:has-text('POOL_CPU_FEATURES_DOWN')", timeout=WAIT)


def test_crash_and_power_on_a_host(page):
    page.click("#tab-world")
    page.click("tr[data-host=xs2] button:text-is('Crash')")
    page.wait_for_selector("#outcome.ok:has-text('sim.host_crash xs2: done')", timeout=WAIT)
    page.wait_for_selector("tr[data-host=xs2] td:has-text('crashed')", timeout=WAIT)
    # a crashed host cannot be crashed again: XAPI's error is shown
    page.wait_for_selector("tr[data-host=xs2] button:text-is('Power on')")
    page.click("tr[data-host=xs2] button:text-is('Reboot')")
    page.wait_for_selector("#outcome.refused", timeout=WAIT)
    page.click("tr[data-host=xs2] button:text-is('Power on')")
    page.wait_for_selector("#outcome.ok:has-text('sim.host_power_on xs2: done')", timeout=WAIT)
    page.wait_for_selector("tr[data-host=xs2] td:has-text('● up')", timeout=WAIT)
