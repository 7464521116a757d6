"""Open every page of the built website in headless Chromium, as a reader would.

Run after the book build (`make browser`, part of `make test`). For each page it asserts that no
JavaScript error was raised, no local resource failed to load, every image loaded, every formula
was typeset by MathJax, every plotly figure drew its SVG and no MyST markup is left in the text
(a `$` around a formula that did not parse, an unresolved `{glue:text}` or `{cite}` role, a `:::`
fence). A full-page screenshot of each page is saved in _build/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a machine with no network: without them Chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
# MyST markup that a reader should never see in a page's text: each is a formula, role or fence
# that did not parse. Code, cell outputs printed in <pre>, formulas and figures are left out.
RAW_MARKUP = ("$", "{glue", "{cite", ":::", "{doc}")
PROSE_TEXT_JS = """() => {
    const skip = "pre, script, style, noscript, .math, mjx-container, .plotly-graph-div";
    if (!document.body) return "";  // the root page is a bare redirect
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const parts = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (!node.parentElement.closest(skip)) parts.push(node.nodeValue);
    }
    return parts.join("");
}"""


def built_pages() -> list[str]:
    if not (HTML / "index.html").exists():
        return []
    return sorted(
        str(path.relative_to(HTML))
        for path in HTML.rglob("*.html")
        if not path.relative_to(HTML).parts[0].startswith("_") and path.name not in SKIPPED_PAGES
    )


@pytest.fixture(scope="module")
def site_url():
    if not (HTML / "index.html").exists():
        pytest.fail(
            "No built website in _build/html: run `make book` (or `make book-strict`) first."
        )
    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Headless Chromium is needed for the browser test and was not found. Install it with\n"
            "    sudo apt-get install -y chromium\n"
            "(Debian/Ubuntu; CI does this in .ci/run), then run `make browser` again."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_site_was_built():
    assert built_pages(), "No pages found in _build/html: build the book first (`make book`)."
    assert "book/intro.html" in built_pages()


@pytest.mark.parametrize("page_path", built_pages())
def test_page_renders(browser, site_url, page_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    js_errors, local_failures = [], []
    page.on("pageerror", lambda error: js_errors.append(str(error)))

    def on_console(message):
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        # An unreachable external host (a font or MathJax CDN) is expected on this offline machine;
        # on the public website it loads. Anything else is a bug in the page.
        if message.text.startswith("Failed to load resource") and not _is_local(url, site_url):
            return
        js_errors.append(f"console: {message.text} ({url})")

    page.on("console", on_console)
    page.on(
        "requestfailed",
        lambda request: _is_local(request.url, site_url) and local_failures.append(request.url),
    )
    page.goto(f"{site_url}/{page_path}", wait_until="load")

    n_figures = page.locator("div.plotly-graph-div").count()
    if n_figures:
        page.wait_for_function(
            "n => document.querySelectorAll('div.plotly-graph-div svg.main-svg').length >= n",
            arg=n_figures,
            timeout=30_000,
        )
    drawn = page.locator("div.plotly-graph-div:has(svg.main-svg)").count()
    n_formulas = page.locator(".math").count()
    if n_formulas:  # MathJax (served with the site) typesets every formula
        page.wait_for_function(
            "n => document.querySelectorAll('.math mjx-container').length >= n",
            arg=n_formulas,
            timeout=30_000,
        )
    raw_markup = _raw_markup(page.evaluate(PROSE_TEXT_JS))
    broken_images = page.evaluate(
        "[...document.images].filter(img => !img.complete || img.naturalWidth === 0)"
        ".map(img => img.src)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / (page_path.replace("/", "__") + ".png"), full_page=True)
    page.close()

    assert not js_errors, f"{page_path}: JavaScript errors: {js_errors}"
    assert not local_failures, f"{page_path}: resources that failed to load: {local_failures}"
    assert not broken_images, f"{page_path}: images that did not load: {broken_images}"
    assert drawn == n_figures, f"{page_path}: only {drawn} of {n_figures} plotly figures drew"
    if page_path == "book/intro.html":
        assert n_figures >= 1, "the introduction must show the pipeline map"
    assert not raw_markup, (
        f"{page_path}: MyST markup shows as text (fix it in the page's .md): {raw_markup}"
    )


def _raw_markup(text: str, context: int = 30) -> list[str]:
    """Each occurrence of RAW_MARKUP in ``text``, with a little of the text around it."""
    found = []
    for mark in RAW_MARKUP:
        start = text.find(mark)
        while start != -1:
            snippet = text[max(0, start - context) : start + len(mark) + context]
            found.append(f"{mark!r} in …{' '.join(snippet.split())}…")
            start = text.find(mark, start + len(mark))
    return found


def test_raw_markup_finds_what_myst_left_unparsed():
    text = "score $s_ij$ from {glue:text}`x`, {cite}`a`, :::{note} and {doc}`b`"
    marks = [finding.split(" in ")[0] for finding in _raw_markup(text)]
    assert marks == ["'$'", "'$'", "'{glue'", "'{cite'", "':::'", "'{doc}'"]
    assert _raw_markup("a formula typeset by MathJax and plain prose") == []


def _is_local(url: str, site_url: str) -> bool:
    return urlparse(url).netloc == urlparse(site_url).netloc
