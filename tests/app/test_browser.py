"""A real browser on the app: Debian's chromium driven by the PyPI ``playwright`` package.

Playwright's own browser download does not work offline, so the test uses
``/usr/bin/chromium`` (``.ci/run`` installs it when missing) and skips, visibly, only when
it is absent. On an app of its own with four runs it checks: every tab renders; four
panels get equal widths and readable metrics tables (at 1400 and 1000 px); every figure
has a legend; the slider moves every panel; an out-of-range step count keeps the previous
images; the NFE sweep draws; a removed run's panel disappears; a run trained while the
app is open appears without a restart. With ``ARCHSEARCH_UPDATE_SCREENSHOT=1`` the
screenshots replace the committed ones in docs/ (otherwise they go to the test's
temporary folder, so a test run never edits the tree).
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
DOCS = Path(__file__).resolve().parents[2] / "docs"
MIN_COL_PX = 50   # a metrics column narrower than this reads as one letter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """(url, root): the app on a results root of its own with four runs (the first
    evaluated), so the shared two-run root of the other app tests stays as it is."""
    from app.gui import build_app, launch
    from evaluator.pipeline.budgets import get_budget
    from evaluator.pipeline.evaluate import evaluate_run
    from tests.app.conftest import four_runs, free_port

    root = tmp_path_factory.mktemp("browser-results")
    runs = four_runs(root)
    evaluate_run(runs[0], get_budget("quick"), "cpu")
    demo = build_app(root)
    _, url = launch(demo, "127.0.0.1", free_port(), block=False)
    yield url, root
    demo.close()


@pytest.fixture(scope="module")
def page(four):
    if not Path(CHROMIUM).exists():
        pytest.skip("SKIPPED browser test: no chromium at /usr/bin/chromium "
                    "(install Debian's chromium: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 1300})

        def guard(route):  # nothing may leave the machine: record and refuse
            host = urlparse(route.request.url).hostname
            if host not in ("127.0.0.1", "localhost", None):
                external.append(route.request.url)
                return route.abort()
            return route.continue_()

        pg.route("**/*", guard)
        pg.goto(four[0], wait_until="load", timeout=60_000)
        pg.get_by_role("tab", name="results").wait_for(timeout=60_000)
        pg.external = external
        yield pg
        browser.close()


def _shot(page, name: str, tmp_path_factory) -> Path:
    shot = (DOCS / name if os.environ.get("ARCHSEARCH_UPDATE_SCREENSHOT") == "1"
            else tmp_path_factory.mktemp("screenshot") / name)
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    return shot


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_every_tab_renders(page, tmp_path_factory):
    _tab(page, "spec editor")
    page.locator("#spec-code").wait_for(state="visible", timeout=20_000)
    page.locator("#spec-status").get_by_text("valid").first.wait_for(timeout=30_000)
    # typing a typo shows the problem with its line, via the debounced validation
    page.locator("#spec-code .cm-content").click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("bogus_key: 1\n")
    # an intermediate text (e.g. "bogus_key" alone) may be validated first; the debounce
    # resolves to the latest text, so wait for the final one's message
    page.locator("#spec-status").get_by_text("line 1: bogus_key: unknown key").first.wait_for(
        timeout=30_000)
    assert "line 1: bogus_key: unknown key" in page.locator("#spec-status").inner_text()
    _shot(page, "app_editor_error.png", tmp_path_factory)
    _tab(page, "train / evaluate")
    page.get_by_role("button", name="start job").wait_for(state="visible", timeout=10_000)
    _tab(page, "results")  # filled when the page opened, before any query
    page.locator("#runs-table").get_by_text("mini_d").first.wait_for(timeout=30_000)
    _tab(page, "side by side")
    page.get_by_role("button", name="sample", exact=True).wait_for(state="visible",
                                                                   timeout=10_000)
    assert page.external == [], page.external


def _srcs(page, n: int) -> list[str]:
    return [page.locator(f"#panel-x0-{i} img").first.get_attribute("src") for i in range(n)]


def _widths(page, n: int) -> list[float]:
    return [page.locator(f"#panel-plot-{i}").bounding_box()["width"] for i in range(n)]


def _legends_on_every_figure(page) -> None:
    """Every visible figure has a legend; a heatmap's legend is its colour bar."""
    plots = page.locator(".js-plotly-plot:visible")
    assert plots.count() >= 1
    for i in range(plots.count()):
        fig = plots.nth(i)
        keys = fig.locator(".legend").count() + fig.locator(".colorbar").count()
        assert keys >= 1, f"figure {i} has no legend"


def _min_col(page, i: int) -> float:
    ths = page.locator(f"#panel-metrics-{i} th")
    return min(ths.nth(j).bounding_box()["width"] for j in range(ths.count()))


def test_four_panels_equal_and_readable(page, tmp_path_factory):
    _tab(page, "side by side")
    box = page.locator("#sbs-runs input").first
    for name in ("mini_c", "mini_d"):
        box.click()
        page.get_by_role("option", name=name).first.click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="sample", exact=True).click()
    for i in range(4):
        page.locator(f"#panel-x0-{i} img").first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1500)  # the slider's own update from sampling settles
    for width in (1400, 1000):
        page.set_viewport_size({"width": width, "height": 1300})
        page.wait_for_timeout(800)
        w = _widths(page, 4)
        assert max(w) - min(w) <= 2, (width, w)
        assert _min_col(page, 0) >= MIN_COL_PX, width
    page.set_viewport_size({"width": 1400, "height": 1300})
    page.locator("#band-table td").first.wait_for(timeout=30_000)
    page.wait_for_timeout(800)
    _legends_on_every_figure(page)
    before = _srcs(page, 4)
    page.locator("#step-slider input[type=range]").fill("3")
    page.wait_for_function(
        "(b) => b.every((s, i) => document.querySelector(`#panel-x0-${i} img`)"
        "?.getAttribute('src') !== s)", arg=before, timeout=30_000)
    for i in range(4):
        assert "step 3/" in page.locator(f"#panel-head-{i}").inner_text()
    _shot(page, "app_side_by_side.png", tmp_path_factory)
    assert page.external == [], page.external


def test_out_of_range_steps_keep_the_images(page):
    before = _srcs(page, 4)
    steps = page.locator("#sbs-steps input")
    for bad in ("0", "5000"):
        steps.fill(bad)
        page.get_by_role("button", name="sample", exact=True).click()
        page.locator("#sbs-message").get_by_text(f"steps: {bad} is out of range").wait_for(
            timeout=30_000)
        assert _srcs(page, 4) == before
        assert "step 3/" in page.locator("#panel-head-0").inner_text()
    steps.fill("20")


def test_nfe_sweep_view(page, tmp_path_factory):
    page.locator("#nfe-steps textarea, #nfe-steps input").first.fill("2, 4")
    page.locator("#nfe-samples input").fill("16")
    page.locator("#nfe-btn").click()
    page.locator("#nfe-message").get_by_text("N=16").wait_for(timeout=120_000)
    page.locator("#nfe-plot .legend").first.wait_for(timeout=30_000)
    page.locator("#nfe-section").scroll_into_view_if_needed()
    _shot(page, "app_nfe.png", tmp_path_factory)
    _legends_on_every_figure(page)


def test_removed_run_disappears(page):
    chip = page.locator("#sbs-runs .token").filter(has_text="mini_d")
    chip.locator(".token-remove, [role=button]").first.click()
    page.locator("#panel-head-3").wait_for(state="hidden", timeout=30_000)
    page.locator("#sbs-summary").get_by_text("shared by all 3 runs").wait_for(timeout=10_000)


def test_run_trained_while_open_appears(page, four):
    from archspec import spec_from_dict
    from evaluator.training.loop import train
    from tests.evaluator.helpers import mini_spec

    data = mini_spec(train={"steps": 3, "batch_size": 4})
    data["name"] = "late_run"
    train(spec_from_dict(data), root=four[1], device="cpu", progress=False)
    page.locator("#sbs-runs input").first.click()
    page.get_by_role("option", name="late_run").first.wait_for(timeout=30_000)
    page.keyboard.press("Escape")


@pytest.fixture(scope="module")
def study_url(tiny_study_run):
    """The app on the shared tiny study's results root (its study tab reads, never trains)."""
    from app.gui import build_app, launch
    from tests.app.conftest import free_port

    demo = build_app(tiny_study_run[1])
    _, url = launch(demo, "127.0.0.1", free_port(), block=False)
    yield url
    demo.close()


def test_study_tab_shows_every_question(page, study_url, tmp_path_factory):
    # last in this module: the page leaves the four-run app for the study's
    page.goto(study_url, wait_until="load", timeout=60_000)
    _tab(page, "study")
    page.locator("#study-header").get_by_text("all 20 trials ended").wait_for(timeout=60_000)
    for q in range(4):
        head = page.locator(f"#study-q{q}-head")
        head.wait_for(state="visible", timeout=30_000)
        assert f"Q{q + 1}" in head.inner_text()
        assert "Answer (" in page.locator(f"#study-q{q}-body").inner_text()
    page.locator("#study-q0-fig0 .legend").first.wait_for(timeout=30_000)
    _legends_on_every_figure(page)
    _shot(page, "app_study.png", tmp_path_factory)
    assert page.external == [], page.external
