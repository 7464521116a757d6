"""Print the built website to one PDF, for reading offline and printing (`make pdf`).

    python tools/pdf.py [--html _build/html] [--out _build/pdf/rlhf-book.pdf] [--solutions]

Needs the website built by `make book` (``_build/html``); it does not execute anything. It reads
the page order from ``_toc.yml``, opens each page in headless Chromium (Debian's ``chromium``, as
``tests/test_browser.py`` does) laid out at the width of the printed page, waits until MathJax has
typeset every formula and plotly has drawn every figure, and prints it with the site's own print
stylesheet (no sidebars, no navigation bar). The pages are then merged behind a title page that
lists the contents, with page numbers, one bookmark per part and per page, and links that work
inside the PDF: a link to another page of the book jumps to it, a link to one of the website's
other files (a downloadable notebook, the index) points at the published website. The result is
``_build/pdf/rlhf-book.pdf``, copied to ``_build/html/_static/rlhf-book.pdf``, where the
introduction links to it.

On the website, exercise solutions and long outputs are folded away behind a toggle. Paper has
no toggle: the PDF unfolds long outputs, and leaves solutions out (a line says where they are)
unless ``--solutions`` is given, which prints them too (a teacher's copy).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import html
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from twins import site_url  # noqa: E402  (the published website's address, from _config.yml)

HTML = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "pdf" / "rlhf-book.pdf"
SITE_COPY = Path("_static") / "rlhf-book.pdf"  # inside the site, where book/intro.md links
ROOT_TITLE = "Introduction"  # the root page's name in the contents (its heading is the title)
# Flags for a machine with no network: without them Chromium keeps trying to reach Google's
# hosts. tests/test_browser.py uses them too.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLOTLY = ("div.plotly-graph-div", "div.plotly-graph-div svg.main-svg")  # (figures, drawn ones)
MATHJAX = (".math", ".math mjx-container")  # (formulas, typeset ones)


def wait_until_rendered(page, items: tuple[str, str], timeout_ms: int) -> int:
    """Wait until the page holds as many rendered ``items[1]`` as ``items[0]`` (plotly figures
    with their SVG, formulas typeset by MathJax); return how many there are."""
    selector, rendered = items
    n = page.locator(selector).count()
    if n:
        page.wait_for_function(
            "([rendered, n]) => document.querySelectorAll(rendered).length >= n",
            arg=[rendered, n],
            timeout=timeout_ms,
        )
    return n


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# The printed page: A4, and the margins Chromium leaves around the site's print layout. The page
# is laid out in a window as wide as the printed text, so that plotly draws each figure at the
# width it will have on paper (a figure drawn for a wider screen would be cut off at the margin).
PAPER = "A4"
MARGINS_MM = {"top": 16, "bottom": 18, "left": 14, "right": 14}
PX_PER_MM = 96 / 25.4
TEXT_WIDTH_PX = round((210 - MARGINS_MM["left"] - MARGINS_MM["right"]) * PX_PER_MM)
RENDER_TIMEOUT_MS = 60_000

# CSS added to every page for print, on top of the theme's own print stylesheet.
PRINT_CSS = """
@media print {
  /* A code cell's frame travels with its code: otherwise an empty frame is left at the foot of
     a page and the code starts on the next. Figures and outputs are not cut in two either. */
  div.cell_input, div.cell_output, div.output, .plotly-graph-div, figure, img,
  div.admonition, table { break-inside: avoid; }
  h1, h2, h3, h4 { break-after: avoid; }
  /* Unfolded outputs fade in on screen; a page printed mid-fade would show them blank. */
  *, *::before, *::after { animation: none !important; transition: none !important; }
  /* Buttons that do nothing on paper. */
  .headerlink, .copybtn, .toggle-button, .header-article, .prev-next-area, .bd-header-article,
  div.cell details > summary { display: none !important; }
  .rlhf-pdf-solution-note { font-style: italic; color: #555; margin: 0.5em 0 1em; }
  pre, code { white-space: pre-wrap !important; word-break: break-word; }
  div.cell_output { max-height: none !important; overflow: visible !important; }
}
"""

# Run in the page after it has rendered: unfold what the site folds away (toggled outputs),
# replace solutions by a line unless asked to keep them, and shrink any figure that is wider
# than the printed text. Returns how many solutions were left out.
PREPARE_JS = """async (keepSolutions) => {
  let left_out = 0;
  for (const cell of document.querySelectorAll("div.cell")) {
    // The book folds solutions as whole cells (tag hide-cell; tools/twins.py announces them)
    const solution = cell.classList.contains("tag_hide-cell");
    if (solution && !keepSolutions) {
      const note = document.createElement("p");
      note.className = "rlhf-pdf-solution-note";
      note.textContent = "Solution: in the website's copy of this page, or in its notebook.";
      cell.replaceWith(note);
      left_out += 1;
      continue;
    }
    for (const details of cell.querySelectorAll("details")) details.open = true;
  }
  for (const details of document.querySelectorAll("details.toggle-details, details.dropdown"))
    details.open = true;
  for (const hidden of document.querySelectorAll(".toggle-hidden")) {
    hidden.classList.remove("toggle-hidden");
  }
  const resized = [];
  for (const figure of document.querySelectorAll("div.plotly-graph-div")) {
    const room = figure.parentElement.clientWidth;
    const width = figure._fullLayout ? figure._fullLayout.width : figure.clientWidth;
    if (window.Plotly && room > 0 && width > room + 1) {
      resized.push(window.Plotly.relayout(figure, {width: room}));
    }
  }
  await Promise.all(resized);
  // A wide formula or table scrolls sideways on screen; on paper it is scaled down to fit.
  const wide = "mjx-container[display='true'], div.pst-scrollable-table-container, "
    + "div.table-wrapper, div.cell_output > div.output";
  for (const box of document.querySelectorAll(wide)) {
    if (box.scrollWidth > box.clientWidth + 1 && box.clientWidth > 0) {
      const scale = Math.floor((1000 * box.clientWidth) / box.scrollWidth) / 1000;
      box.style.overflow = "visible";
      box.style.zoom = String(scale);
    }
  }
  return left_out;
}"""


# ---------------------------------------------------------------------------------------------
# Which pages, in which order (pure)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TocPage:
    """One page of ``_toc.yml``: its file (as the toc names it) and the part it belongs to."""

    file: str  # "book/ppo/training"
    part: str | None  # the part's caption; None for the root page

    @property
    def html(self) -> str:
        """The page's path inside the built website."""
        stem = self.file.removesuffix(".md").removesuffix(".ipynb")
        return f"{stem}.html"


def toc_pages(toc_file: Path = ROOT / "_toc.yml") -> list[TocPage]:
    """Every page of ``_toc.yml`` in reading order: the root page, then each part's chapters
    (and their sections), as Jupyter Book numbers and orders them."""
    toc = yaml.safe_load(Path(toc_file).read_text())
    pages = [TocPage(toc["root"], None)]

    def walk(entries, part):
        for entry in entries or []:
            if "file" in entry:
                pages.append(TocPage(entry["file"], part))
            walk(entry.get("sections"), part)
            walk(entry.get("chapters"), part)

    for part in toc.get("parts") or []:
        walk(part.get("chapters"), part.get("caption"))
    walk(toc.get("chapters"), None)  # a toc without parts
    return pages


def missing_pages(html_dir: Path, pages: list[TocPage]) -> list[str]:
    """The pages of the toc that the built website lacks (an old or failed build)."""
    return [page.html for page in pages if not (Path(html_dir) / page.html).is_file()]


def output_paths(out: Path, html_dir: Path) -> tuple[Path, Path]:
    """Where the PDF is written, and where its copy inside the website goes."""
    return Path(out), Path(html_dir) / SITE_COPY


def check_site(html_dir: Path, pages: list[TocPage], skip_missing: bool = False) -> list[TocPage]:
    """The pages to print. Stops with a message that says what to do when there is no built
    website, or when it lacks pages of the toc (unless ``skip_missing``: then they are left out,
    and a line says which)."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise SystemExit(
            f"No built website in {html_dir}: run `make book` first; `make pdf` prints that "
            "website and does not build it."
        )
    missing = missing_pages(html_dir, pages)
    if missing and not skip_missing:
        raise SystemExit(
            f"The website in {html_dir} lacks {len(missing)} page(s) of _toc.yml "
            f"({', '.join(missing)}): it is older than the table of contents or its build "
            "failed. Run `make book` again, then `make pdf` (or `python tools/pdf.py "
            "--skip-missing` to print the pages it has)."
        )
    if missing:
        print(f"[pdf] leaving out {len(missing)} page(s) the website lacks: {', '.join(missing)}")
    return [page for page in pages if page.html not in missing]


# ---------------------------------------------------------------------------------------------
# The title page (pure: HTML that Chromium prints)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrintedPage:
    """A page of the book once printed: its title, part, PDF file and number of PDF pages."""

    page: TocPage
    title: str
    pdf: Path
    n_pages: int
    solutions_left_out: int = 0


def front_matter_html(
    title: str, author: str, printed: list[PrintedPage], first_page: int, note: str
) -> str:
    """A title page with the contents: each part, each page's title and the number of the PDF
    page it starts on (the front matter's own pages come first, ``first_page`` is the number of
    the first page after them)."""
    rows, part, number = [], object(), first_page
    for entry in printed:
        if entry.page.part != part:
            part = entry.page.part
            if part:
                rows.append(f'<li class="part">{html.escape(part)}</li>')
        rows.append(
            f'<li class="page"><span class="title">{html.escape(entry.title)}</span>'
            f'<span class="dots"></span><span class="number">{number}</span></li>'
        )
        number += entry.n_pages
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
  body {{ font-family: "DejaVu Sans", "Liberation Sans", sans-serif; color: #222; margin: 0; }}
  .cover {{ height: 230mm; display: flex; flex-direction: column; justify-content: center;
            break-after: page; text-align: center; }}
  .cover h1 {{ font-size: 26pt; font-weight: 500; line-height: 1.25; margin: 0 10mm; }}
  .cover .author {{ font-size: 15pt; margin-top: 14mm; }}
  .cover .note {{ font-size: 9.5pt; color: #555; margin: 30mm 15mm 0; line-height: 1.5; }}
  h2 {{ font-size: 16pt; font-weight: 500; margin: 0 0 6mm; }}
  ul {{ list-style: none; padding: 0; margin: 0; font-size: 11pt; }}
  li.part {{ font-weight: 600; margin: 5mm 0 1.5mm; break-after: avoid; }}
  li.page {{ display: flex; margin: 1mm 0 1mm 6mm; }}
  li.page .dots {{ flex: 1; border-bottom: 1px dotted #999; margin: 0 2mm 1.2mm; }}
</style></head>
<body>
<section class="cover">
  <h1>{html.escape(title)}</h1>
  <div class="author">{html.escape(author)}</div>
  <div class="note">{html.escape(note)}</div>
</section>
<section>
  <h2>Contents</h2>
  <ul>{"".join(rows)}</ul>
</section>
</body></html>"""


def cover_note(url: str, commit: str | None, solutions: bool, date: datetime.date) -> str:
    """The small print of the title page: where the live book is, what this copy holds."""
    source = f" (the repository at commit {commit})" if commit else ""
    solutions_text = (
        "Exercise solutions are printed after each exercise."
        if solutions
        else "Exercise solutions are left out: they are on the website and in each notebook."
    )
    return (
        f"Printed on {date:%d %B %Y} from the website built by make book{source}. The website, "
        f"{url}, has the same pages with interactive figures, and opens each one in Binder or "
        f"Colab to run it. {solutions_text}"
    )


def git_commit(root: Path = ROOT) -> str | None:
    """The checked-out commit (short), saying so when the work tree has changes; None without
    git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" with uncommitted changes" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Links inside the merged PDF (pure)
# ---------------------------------------------------------------------------------------------


def link_target(
    uri: str, base_url: str, page_ids: dict[str, dict[str, tuple[int, float]]],
    page_starts: dict[str, int], public_url: str,
) -> tuple[int, float | None] | str | None:  # fmt: skip
    """Where a link of a printed page should go in the merged PDF.

    ``uri`` is the link as Chromium wrote it; the pages were served from ``base_url``.
    ``page_starts`` maps a page's path in the site (``book/ppo/training.html``) to the index of
    its first PDF page, in book order (the root page first); ``page_ids`` maps it to the ids
    Chromium kept as destinations (``id -> (PDF page index, top)``). Returns ``(page index,
    top)`` for a link into the book (``top`` is None for the top of a page), a web address for a
    file of the site that is not in the PDF, or None to leave an outside link as it is.
    """
    if not uri.startswith(base_url):
        return None
    path, fragment = urldefrag(uri[len(base_url) :].lstrip("/"))
    if path in ("", "index.html") and page_starts:
        path = next(iter(page_starts))  # the site's index.html redirects to the root page
    if path in page_starts:
        if fragment and fragment in page_ids.get(path, {}):
            return page_ids[path][fragment]
        return page_starts[path], None
    return urljoin(public_url, path) + (f"#{fragment}" if fragment else "")


def page_number_stream(number: int, page_width: float, bottom: float, size: float = 9) -> bytes:
    """A PDF content stream that writes ``number`` centred near the foot of a page, in the
    standard Helvetica font (every PDF reader has it: nothing is embedded)."""
    text = str(number)
    width = 0.556 * size * len(text)  # Helvetica's digits are all 556/1000 of an em wide
    x = (page_width - width) / 2
    return f"q 0.33 g BT /RlhfPdfNumber {size} Tf {x:.2f} {bottom:.2f} Td ({text}) Tj ET Q".encode()


# ---------------------------------------------------------------------------------------------
# Printing with Chromium
# ---------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    """``$CHROMIUM``, else the first Chromium or Chrome on the PATH; None if there is none (then
    Playwright's own Chromium, if installed, is used)."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(html_dir: Path) -> Iterator[str]:
    """Serve the built website on a free local port, as a reader's browser would load it."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


def _pdf_options(path: Path) -> dict:
    return {
        "path": str(path),
        "format": PAPER,
        "print_background": True,
        "margin": {side: f"{mm}mm" for side, mm in MARGINS_MM.items()},
    }


def print_page(browser, url: str, path: Path, solutions: bool) -> tuple[str, int]:
    """Print one page of the site to ``path``; return its title and how many solutions were
    left out. Waits for MathJax and plotly as tests/test_browser.py does."""
    page = browser.new_page(viewport={"width": TEXT_WIDTH_PX, "height": 1100})
    try:
        page.emulate_media(media="print")  # before loading: figures are drawn at print width
        page.goto(url, wait_until="load")
        page.add_style_tag(content=PRINT_CSS)
        wait_until_rendered(page, PLOTLY, RENDER_TIMEOUT_MS)
        wait_until_rendered(page, MATHJAX, RENDER_TIMEOUT_MS)
        left_out = page.evaluate(PREPARE_JS, solutions)
        page.evaluate("() => document.fonts.ready.then(() => true)")
        title = page.evaluate(
            """() => {
                const h1 = document.querySelector("article h1, main h1, h1");
                if (!h1) return document.title.split(" — ")[0];
                const copy = h1.cloneNode(true);
                copy.querySelectorAll(".headerlink").forEach(e => e.remove());
                return copy.textContent.trim();
            }"""
        )
        page.pdf(**_pdf_options(path))
    finally:
        page.close()
    return title, left_out


def print_html(browser, content: str, path: Path) -> None:
    """Print a page of HTML (the title page) to ``path``."""
    page = browser.new_page()
    try:
        page.set_content(content, wait_until="load")
        page.pdf(**_pdf_options(path))
    finally:
        page.close()


# ---------------------------------------------------------------------------------------------
# Merging
# ---------------------------------------------------------------------------------------------


def _named_destinations(reader) -> dict[str, tuple[int, float]]:
    """The ids Chromium kept as named destinations in one printed page: ``id -> (page, top)``."""
    found = {}
    for name, destination in reader.named_destinations.items():
        try:
            index = reader.get_destination_page_number(destination)
        except Exception:  # a destination pypdf cannot place: links to it go to the page's top
            continue
        found[str(name).lstrip("/")] = (index, destination.top)
    return found


def assemble(
    front: Path, printed: list[PrintedPage], out: Path, base_url: str, public_url: str,
    title: str = "",
) -> dict:  # fmt: skip
    """Merge the front matter and the printed pages into ``out``: bookmarks, in-PDF links and
    page numbers. Returns counts for the report."""
    from pypdf import PageObject, PdfReader, PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        FloatObject,
        NameObject,
        NullObject,
        TextStringObject,
    )

    writer = PdfWriter()
    front_reader = PdfReader(front)
    for page in front_reader.pages:
        writer.add_page(page)
    n_front = len(front_reader.pages)

    starts, ids, origins = {}, {}, []  # origins: (page path, first index) of each printed page
    for entry in printed:
        reader = PdfReader(entry.pdf)
        first = len(writer.pages)
        starts[entry.page.html] = first
        ids[entry.page.html] = {
            name: (first + index, top) for name, (index, top) in _named_destinations(reader).items()
        }
        origins.append((entry.page.html, first))
        for page in reader.pages:
            writer.add_page(page)

    def origin_of(index: int) -> str:
        return max((o for o in origins if o[1] <= index), key=lambda o: o[1])[0]

    def destination(index: int, top: float | None) -> ArrayObject:
        page = writer.pages[index]
        top = float(page.mediabox.top) if top is None else top
        return ArrayObject(
            [page.indirect_reference, NameObject("/XYZ"), NullObject(), FloatObject(top),
             NullObject()]
        )  # fmt: skip

    internal = external = 0
    for index in range(n_front, len(writer.pages)):
        page = writer.pages[index]
        for annotation in page.get("/Annots") or []:
            annotation = annotation.get_object()
            if annotation.get("/Subtype") != "/Link":
                continue
            action = annotation.get("/A")
            action = action.get_object() if action is not None else None
            named = annotation.get("/Dest")
            if isinstance(named, str | bytes):  # a named destination of the printed page
                name = str(named).lstrip("/")
                target = ids[origin_of(index)].get(name, (starts[origin_of(index)], None))
            elif action is not None and action.get("/S") == "/URI":
                target = link_target(str(action["/URI"]), base_url, ids, starts, public_url)
            else:
                continue
            if target is None:
                continue
            if isinstance(target, str):
                annotation[NameObject("/A")] = DictionaryObject(
                    {NameObject("/S"): NameObject("/URI"), NameObject("/URI"): TextStringObject(
                        target)}
                )  # fmt: skip
                external += 1
                continue
            annotation.pop(NameObject("/A"), None)
            annotation[NameObject("/Dest")] = destination(*target)
            internal += 1
    # Every link now points at a page: the printed pages' own named destinations, which repeat
    # from page to page ("exercises", "summary"), are not carried over. pypdf would otherwise
    # re-add the names it saw in add_page's links when it writes the file (its "unresolved
    # links"): those links are resolved above.
    names = writer.root_object.get("/Names")
    if names is not None:
        names.get_object().pop(NameObject("/Dests"), None)
    if hasattr(writer, "_unresolved_links"):
        writer._unresolved_links.clear()

    # Bookmarks: one per part, one per page inside it.
    writer.add_outline_item(title="Contents", page_number=1 if n_front > 1 else 0)
    parts = {}
    for entry in printed:
        parent = None
        if entry.page.part:
            if entry.page.part not in parts:
                parts[entry.page.part] = writer.add_outline_item(
                    title=entry.page.part, page_number=starts[entry.page.html]
                )
            parent = parts[entry.page.part]
        writer.add_outline_item(
            title=entry.title, page_number=starts[entry.page.html], parent=parent
        )

    # Page numbers: the number a reader sees is the PDF viewer's page number. Not on the cover.
    font = DictionaryObject(
        {NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
         NameObject("/BaseFont"): NameObject("/Helvetica")}
    )  # fmt: skip
    for index in range(1, len(writer.pages)):
        page = writer.pages[index]
        stream = DecodedStreamObject()
        bottom = MARGINS_MM["bottom"] * 72 / 25.4 / 2 - 3
        stream.set_data(page_number_stream(index + 1, float(page.mediabox.width), bottom))
        overlay = PageObject.create_blank_page(
            width=page.mediabox.width, height=page.mediabox.height
        )
        overlay[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/RlhfPdfNumber"): font})}
        )
        overlay[NameObject("/Contents")] = writer._add_object(stream)
        page.merge_page(overlay)

    writer.page_mode = "/UseOutlines"
    writer.add_metadata({"/Title": title, "/Creator": "tools/pdf.py (make pdf)"})
    writer.compress_identical_objects(remove_duplicates=True, remove_unreferenced=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as file:
        writer.write(file)
    return {
        "pages": len(writer.pages),
        "front_pages": n_front,
        "sections": len(printed),
        "links_in_pdf": internal,
        "links_to_website": external,
    }


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def print_pages(browser, base_url: str, pages: list[TocPage], folder: Path, solutions: bool):
    """Print each page of the toc to its own PDF in ``folder``."""
    from pypdf import PdfReader

    printed = []
    for number, page in enumerate(pages, 1):
        path = folder / f"{number:03d}-{page.html.replace('/', '__')}.pdf"
        page_title, left_out = print_page(browser, base_url + page.html, path, solutions)
        n_pages = len(PdfReader(path).pages)
        printed.append(PrintedPage(page, page_title, path, n_pages, left_out))
        print(f"[pdf] {number:2d}/{len(pages)} {page.html}: {n_pages} pages", flush=True)
    return printed


def print_front_matter(browser, printed: list[PrintedPage], path: Path, note: str) -> None:
    """Print the title page and contents to ``path``. The contents give the page each section
    starts on, which depends on how many pages the front matter itself takes: it is printed once
    to count them, then again with the numbers."""
    from pypdf import PdfReader

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    title, author = config.get("title", ""), config.get("author", "")
    print_html(browser, front_matter_html(title, author, printed, 1, note), path)
    n_front = len(PdfReader(path).pages)
    print_html(browser, front_matter_html(title, author, printed, n_front + 1, note), path)
    if len(PdfReader(path).pages) != n_front:
        raise RuntimeError("the front matter changed length between its two printings")


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium, through Playwright."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    launch = {"args": CHROMIUM_ARGS} | ({"executable_path": executable} if executable else {})
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(**launch)
        except Exception as err:
            raise SystemExit(
                f"Could not start Chromium ({executable or 'the one Playwright installs'}): "
                f"{err}\n"
                "Install it with `sudo apt-get install -y chromium` (Debian/Ubuntu), or point "
                "$CHROMIUM at a Chromium or Chrome executable."
            ) from None
        try:
            yield browser
        finally:
            browser.close()


def build_pdf(
    html_dir: Path = HTML,
    out: Path = OUT,
    *,
    solutions: bool = False,
    copy_to_site: bool = True,
    keep_pages: Path | None = None,
    skip_missing: bool = False,
) -> tuple[Path, Path | None, dict]:
    """Print every page of the toc from ``html_dir`` and merge them into ``out``; copy the PDF
    into the website unless ``copy_to_site`` is false. Returns the PDF, its copy and counts."""
    if importlib.util.find_spec("pypdf") is None:
        raise SystemExit(
            "make pdf merges the printed pages with pypdf, which is not installed: run "
            "`make setup` (requirements.txt lists it), or `.venv/bin/pip install pypdf`."
        )
    pages = check_site(html_dir, toc_pages(), skip_missing)
    out, site_copy = output_paths(out, html_dir)
    title = yaml.safe_load((ROOT / "_config.yml").read_text()).get("title", "")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if keep_pages is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rlhf-pdf-")))
        else:
            folder = Path(keep_pages)
            folder.mkdir(parents=True, exist_ok=True)
        base_url = stack.enter_context(serve(html_dir))
        browser = stack.enter_context(chromium())
        printed = [
            # The root page's heading is the book's title, already on the cover.
            dataclasses.replace(p, title=ROOT_TITLE) if p.page.part is None and p.title == title
            else p
            for p in print_pages(browser, base_url, pages, folder, solutions)
        ]  # fmt: skip
        note = cover_note(site_url(), git_commit(), solutions, datetime.date.today())
        front = folder / "000-front-matter.pdf"
        print_front_matter(browser, printed, front, note)
        counts = assemble(front, printed, out, base_url, site_url(), title)
    if copy_to_site:
        site_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, site_copy)
    counts["seconds"] = time.perf_counter() - started
    counts["solutions_left_out"] = sum(p.solutions_left_out for p in printed)
    return out, site_copy if copy_to_site else None, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=HTML, help="the built website (make book)")
    parser.add_argument("--out", type=Path, default=OUT, help="the PDF to write")
    parser.add_argument("--solutions", action="store_true", help="print the exercise solutions too")
    parser.add_argument(
        "--no-site-copy", action="store_true",
        help=f"do not copy the PDF into the website ({SITE_COPY})",
    )  # fmt: skip
    parser.add_argument(
        "--keep-pages", type=Path, metavar="DIR", help="keep each page's own PDF in DIR"
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out the pages of _toc.yml that the website lacks (an older build)",
    )
    args = parser.parse_args(argv)
    out, copy, counts = build_pdf(
        args.html,
        args.out,
        solutions=args.solutions,
        copy_to_site=not args.no_site_copy,
        keep_pages=args.keep_pages,
        skip_missing=args.skip_missing,
    )
    size = out.stat().st_size / 2**20
    print(
        f"[pdf] wrote {out} ({size:.1f} MB, {counts['pages']} pages, {counts['sections']} "
        f"sections) in {counts['seconds']:.0f} s" + (f"; copied to {copy}" if copy else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
