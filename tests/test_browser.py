"""Open every page of the built website in headless Chromium, as a reader would.

Run after the book build (`make browser`, part of `make test`). For each page it asserts that no
JavaScript error was raised, no local resource failed to load, every image loaded, every formula
was typeset by MathJax, every plotly figure drew its SVG and no MyST markup is left in the text
(a `$` around a formula that did not parse, an unresolved `{glue:text}` or `{cite}` role, a `:::`
fence). A full-page screenshot of each page is saved in _build/screenshots/.

It also checks what WCAG 2.1 AA (the accessibility standard most universities require of course
material) asks that a machine can check: axe-core's WCAG 2.0/2.1 A and AA rules, failing on any
serious or critical finding, and a text alternative (an aria-label on an element with role "img"
or "figure", which rlhf_lib's "rlhf_site" renderer writes) for every plotly figure.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from pdf import CHROMIUM_ARGS, MATHJAX, PLOTLY, wait_until_rendered  # noqa: E402  (tools/pdf.py)

pytestmark = pytest.mark.browser

HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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


# axe-core (https://github.com/dequelabs/axe-core) rules for WCAG 2.0 and 2.1, levels A and AA.
# Moderate and minor findings (best practice, or no barrier on their own) are left out.
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
AXE_FAILING_IMPACTS = ("serious", "critical")
# Every plotly figure must be inside an element that names it for a screen reader (WCAG 1.1.1).
UNLABELLED_FIGURES_JS = """() => [...document.querySelectorAll("div.plotly-graph-div")]
    .map((div, i) => [div, i])
    .filter(([div]) => {
        const box = div.closest('[role="img"], [role="figure"]');
        return !box || !(box.getAttribute("aria-label") || "").trim();
    })
    .map(([div, i]) => `figure ${i + 1}: ${div.layout?.title?.text || "(no title)"}`)"""
# jupyter-book's root index.html: a bare redirect to the introduction
META_REFRESH = re.compile(r'http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


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


@pytest.fixture(scope="module")
def axe():
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        pytest.fail(
            "axe-core, for the accessibility check, is missing. Install it with\n"
            "    pip install axe-playwright-python==0.1.8\n"
            "(it is in requirements.txt), then run `make browser` again."
        )
    return Axe()


def test_site_was_built():
    assert built_pages(), "No pages found in _build/html: build the book first (`make book`)."
    assert "book/intro.html" in built_pages()


@pytest.mark.parametrize("page_path", built_pages())
def test_page_renders(browser, site_url, axe, page_path):
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
    redirect = META_REFRESH.search((HTML / page_path).read_text(encoding="utf-8"))
    if redirect:  # check the page it leads to, once loaded (not a document being replaced)
        page.wait_for_url(urljoin(f"{site_url}/{page_path}", redirect[1]), wait_until="load")

    n_figures = wait_until_rendered(page, PLOTLY, timeout_ms=30_000)
    drawn = page.locator("div.plotly-graph-div:has(svg.main-svg)").count()
    wait_until_rendered(page, MATHJAX, timeout_ms=30_000)  # MathJax typesets every formula
    raw_markup = _raw_markup(page.evaluate(PROSE_TEXT_JS))
    unlabelled = page.evaluate(UNLABELLED_FIGURES_JS)
    # axe-core fetches the page's stylesheets again to read them, and resolves the theme's
    # `@import "../basic.css"` against the page instead of the stylesheet: a 404 of axe's own that
    # no reader causes. The page has loaded all it needs by now, so stop listening first.
    page.remove_listener("console", on_console)
    accessibility = _axe_findings(axe.run(page, options=AXE_OPTIONS).response)
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
    assert not unlabelled, (
        f"{page_path}: plotly figures with no text alternative (an aria-label on an element with "
        "role img or figure; the book build's renderer, rlhf_lib.notebook, writes it): "
        f"{unlabelled}"
    )
    assert not accessibility, f"{page_path}: axe-core (WCAG 2.1 AA) found:\n" + "\n".join(
        accessibility
    )


def _axe_findings(response: dict, shown_targets: int = 3) -> list[str]:
    """One line per serious or critical axe violation: rule, impact, where, and what to do."""
    findings = []
    for violation in response["violations"]:
        if violation["impact"] not in AXE_FAILING_IMPACTS:
            continue
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]]
        where = ", ".join(targets[:shown_targets])
        if len(targets) > shown_targets:
            where += f" and {len(targets) - shown_targets} more"
        findings.append(
            f"- {violation['id']} ({violation['impact']}) at {where}: {violation['help']} "
            f"({violation['helpUrl']})"
        )
    return findings


def test_axe_findings_name_rule_impact_target_and_help():
    def violation(rule, impact, targets):
        nodes = [{"target": [target]} for target in targets]
        return {"id": rule, "impact": impact, "nodes": nodes, "help": f"Fix {rule}",
                "helpUrl": f"https://dequeuniversity.com/rules/axe/4.12/{rule}"}  # fmt: skip

    response = {"violations": [
        violation("aria-required-children", "critical", [".citation-list"]),
        violation("color-contrast", "serious", ["p.a", "p.b", "p.c", "p.d"]),
        violation("aria-deprecated-role", "minor", ["#id35"]),
    ]}  # fmt: skip
    findings = _axe_findings(response)
    assert len(findings) == 2, "minor and moderate findings do not fail the test"
    assert findings[0].startswith("- aria-required-children (critical) at .citation-list: Fix")
    assert "at p.a, p.b, p.c and 1 more: Fix color-contrast" in findings[1]


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
