"""The report page in a real browser: headless Chromium (Debian's `chromium`, which `make test` and `.ci/run`
install where missing) driven by Playwright, with no browser download. Skipped, with the reason, only where
Chromium or Playwright is absent; under CI=true their absence fails the test."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mfsweep.report.page import build_report, write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No first-run work, no network, no GPU, and no sandbox (tests may run as root in a container).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true needs the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        _unavailable("no chromium (`make chromium` installs Debian's package as root)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page_file(tiny_sweep, tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("browser") / "sweep"
    shutil.copytree(tiny_sweep, root)
    report = build_report(root)
    return write_report(report)["html"], report


def test_report_renders_in_chromium(browser, page_file, tmp_path):
    path, report = page_file
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri(), wait_until="load")
    # Every image decodes (decode() rejects a broken one) and has a non-zero natural size.
    images = page.evaluate("""async () => Promise.all(Array.from(document.images).map(async i => {
        try { await i.decode(); } catch (e) { return [i.alt, 0, 0, String(e)]; }
        return [i.alt, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width];
    }))""")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'report.png'}")
    assert errors == []
    assert sorted(alt for alt, *_ in images) == sorted(report.figures)
    for alt, width, height, shown in images:
        assert width > 0 and height > 0, f"{alt}: {shown}"
        assert shown >= 0.9 * min(width / 2, 1100 - 32), f"{alt} shown {shown} px wide, natural {width}"
    text = page.inner_text("body")
    for v in report.verdicts:
        assert v.sentence() in text
    assert text.index(report.verdicts[0].sentence()) < text.index("SW1 by setting and alpha")  # verdict first
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    page.close()


def test_every_table_fits_the_page_at_1400_px(browser, page_file):
    """No table hides columns behind its own scroll bar at 1,400 px (the settings table's long loss keys once
    ran off the right edge): each table is no wider than the box it sits in."""
    path, report = page_file
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(path.as_uri(), wait_until="load")
    widths = page.evaluate("""() => Array.from(document.querySelectorAll('div.wide')).map(d => [
        (d.previousElementSibling && d.previousElementSibling.tagName === 'H3' ? d.previousElementSibling.innerText
         : d.querySelector('th').innerText), d.querySelector('table').getBoundingClientRect().width, d.clientWidth])""")
    page.close()
    assert len(widths) == sum(len(s.tables) for s in report.sections)
    assert "Settings" in [title for title, *_ in widths]
    too_wide = [(title, round(table), box) for title, table, box in widths if table > box]
    assert too_wide == []
