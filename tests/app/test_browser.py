"""A real browser on the app: Debian's chromium driven by the PyPI ``playwright`` package.

Playwright's own browser download does not work offline, so the test uses
``/usr/bin/chromium`` (``.ci/run`` installs it when missing) and skips, visibly, only when
it is absent. It loads the app, checks every tab renders, samples two runs side by side,
moves the step slider, checks both panels change, and takes a screenshot. With
``ARCHSEARCH_UPDATE_SCREENSHOT=1`` the screenshot replaces the committed
docs/app_side_by_side.png (otherwise it goes to the test's temporary folder, so a test
run never edits the tree).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "app_side_by_side.png"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page(served_app):
    if not Path(CHROMIUM).exists():
        pytest.skip("SKIPPED browser test: no chromium at /usr/bin/chromium "
                    "(install Debian's chromium: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1500, "height": 1300})

        def guard(route):  # nothing may leave the machine: record and refuse
            host = urlparse(route.request.url).hostname
            if host not in ("127.0.0.1", "localhost", None):
                external.append(route.request.url)
                return route.abort()
            return route.continue_()

        pg.route("**/*", guard)
        pg.goto(served_app[0], wait_until="load", timeout=60_000)
        pg.get_by_role("tab", name="results").wait_for(timeout=60_000)
        pg.external = external
        yield pg
        browser.close()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_every_tab_renders(page):
    _tab(page, "spec editor")
    page.locator("#spec-code").wait_for(state="visible", timeout=20_000)
    page.locator("#spec-status").get_by_text("valid").first.wait_for(timeout=30_000)
    # typing a typo shows the problem with its line, via the debounced validation
    page.locator("#spec-code .cm-content").click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("bogus_key: 1\n")
    page.locator("#spec-status").get_by_text("bogus_key").first.wait_for(timeout=30_000)
    assert "line 1: bogus_key: unknown key" in page.locator("#spec-status").inner_text()
    _tab(page, "train / evaluate")
    page.get_by_role("button", name="start job").wait_for(state="visible", timeout=10_000)
    _tab(page, "results")
    page.get_by_role("button", name="query").click()
    page.locator("#runs-table").get_by_text("mini_b").first.wait_for(timeout=30_000)
    _tab(page, "side by side")
    page.get_by_role("button", name="sample").wait_for(state="visible", timeout=10_000)
    assert page.external == [], page.external


def _srcs(page) -> list[str]:
    return [page.locator(f"#panel-x0-{i} img").first.get_attribute("src") for i in (0, 1)]


def test_slider_moves_both_panels(page, tmp_path_factory):
    _tab(page, "side by side")
    page.get_by_role("button", name="sample").click()
    for i in (0, 1):
        page.locator(f"#panel-x0-{i} img").first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1500)  # the slider's own update from sampling settles
    before = _srcs(page)
    page.locator("#step-slider input[type=range]").fill("3")
    page.wait_for_function(
        "([a, b]) => { const s = [0, 1].map(i => document.querySelector("
        "`#panel-x0-${i} img`)?.getAttribute('src')); return s[0] !== a && s[1] !== b; }",
        arg=before, timeout=30_000)
    after = _srcs(page)
    assert after[0] != before[0] and after[1] != before[1]
    assert "step 3/" in page.locator("#panel-head-0").inner_text()
    assert "step 3/" in page.locator("#panel-head-1").inner_text()
    shot = (DOCS_SCREENSHOT if os.environ.get("ARCHSEARCH_UPDATE_SCREENSHOT") == "1"
            else tmp_path_factory.mktemp("screenshot") / DOCS_SCREENSHOT.name)
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.external == [], page.external
