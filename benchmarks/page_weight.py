"""Weigh the built website: what a reader downloads, page by page, and what the site holds.

    make book                            # builds the site in _build/html
    python benchmarks/page_weight.py [--site _build/html] [--out FILE.json]

For every page of the book (``book/**.html``; the site's genindex and search pages are left out)
the report records the bytes of its HTML, of its downloadable sources under ``_sources/`` (the
executed ``.ipynb`` and the page's ``.md``: the download button's files), and of the local files
the HTML loads itself: ``<script src>``, stylesheets, preloads and icons from ``<link href>``,
and ``<img src>``. A browser downloads those once and caches them, so a page's *first visit*
weighs its HTML plus its assets, while *clicking through every page* weighs every page's HTML plus
the union of their assets, each counted once. What scripts and stylesheets fetch later (MathJax's
fonts and extensions, the theme's web fonts) is not counted; the size of each ``_static`` folder
is recorded beside it. The report also gives the size of the whole site, of the one
``_static/plotly.min.js`` that every page with a figure shares, and the site's largest files.

Byte counts are deterministic: the same commit built with the same packages weighs the same, so
one run is the measurement, with no spread. The report records the git commit and whether the
working tree differed from it, so a committed JSON says what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from html.parser import HTMLParser
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
PLOTLY_JS = "_static/plotly.min.js"
SKIPPED_PAGES = {"genindex.html", "search.html"}
LINK_RELS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "apple-touch-icon"}
PACKAGES = ("jupyter-book", "sphinx", "pydata-sphinx-theme", "myst-nb", "plotly")
LARGEST = 10


class AssetLinks(HTMLParser):
    """Collects the URLs of the files a page loads itself and of its links into ``_sources/``."""

    def __init__(self):
        super().__init__()
        self.assets, self.sources = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img") and attrs.get("src"):
            self.assets.append(attrs["src"])
        elif tag == "link" and LINK_RELS & set((attrs.get("rel") or "").lower().split()):
            self.assets.append(attrs.get("href") or "")
        elif tag == "a" and "_sources/" in (attrs.get("href") or ""):
            self.sources.append(attrs["href"])


def local_file(url: str, page: Path, site: Path) -> Path | None:
    """The site file a relative URL of ``page`` points to, or None (external, data:, absent)."""
    parts = urlsplit(url)
    if not url or parts.scheme or parts.netloc or not parts.path:
        return None
    path = (page.parent / unquote(parts.path)).resolve()
    return path if path.is_file() and path.is_relative_to(site) else None


def book_pages(site: Path) -> list[Path]:
    return sorted(p for p in (site / "book").rglob("*.html") if p.name not in SKIPPED_PAGES)


def measure_page(page: Path, site: Path) -> dict:
    """One page: its HTML, its downloadable sources and the local files it loads."""
    links = AssetLinks()
    links.feed(page.read_text(encoding="utf-8", errors="replace"))
    relative = page.relative_to(site)
    stem = relative.with_suffix("")
    sources = {local_file(url, page, site) for url in links.sources}
    sources |= set((site / "_sources" / stem.parent).glob(f"{stem.name}.*"))
    assets = {local_file(url, page, site) for url in links.assets} - {None}
    asset_bytes = sum(a.stat().st_size for a in assets)
    return {
        "page": str(relative),
        "html_bytes": page.stat().st_size,
        "downloads": {str(s.relative_to(site)): s.stat().st_size for s in sorted(sources - {None})},
        "assets": sorted(str(a.relative_to(site)) for a in assets),
        "asset_bytes": asset_bytes,
        "first_visit_bytes": page.stat().st_size + asset_bytes,
    }


def folder_sizes(site: Path) -> dict[str, int]:
    """Bytes under each top-level entry of the site and under each entry of ``_static``."""
    static = site / "_static"
    entries = [*site.iterdir(), *(static.iterdir() if static.is_dir() else [])]
    sizes = {}
    for entry in sorted(entries):
        files = entry.rglob("*") if entry.is_dir() else [entry]
        sizes[str(entry.relative_to(site))] = sum(f.stat().st_size for f in files if f.is_file())
    return sizes


def measure_site(site: Path) -> dict:
    """The weights of a built site (everything the report holds except date, machine and git)."""
    site = Path(site).resolve()
    pages = [measure_page(page, site) for page in book_pages(site)]
    if not pages:
        raise FileNotFoundError(f"no book pages (book/**.html) in {site}")
    assets = sorted({asset for page in pages for asset in page["assets"]})
    asset_sizes = {asset: (site / asset).stat().st_size for asset in assets}
    files = [f for f in site.rglob("*") if f.is_file()]
    largest = sorted(files, key=lambda f: f.stat().st_size, reverse=True)[:LARGEST]
    plotly_js = site / PLOTLY_JS
    return {
        "site": str(site.relative_to(ROOT) if site.is_relative_to(ROOT) else site),
        "pages": pages,
        "assets": asset_sizes,
        "click_through_bytes": sum(p["html_bytes"] for p in pages) + sum(asset_sizes.values()),
        "site_bytes": sum(f.stat().st_size for f in files),
        "site_files": len(files),
        "plotly_js_bytes": plotly_js.stat().st_size if plotly_js.is_file() else None,
        "largest_files": [
            {"path": str(f.relative_to(site)), "bytes": f.stat().st_size} for f in largest
        ],
        "folders": folder_sizes(site),
    }


def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    # results files (of an earlier benchmark in the same run) change nothing a benchmark measures
    changed = [
        c for c in git("status", "--porcelain").splitlines() if "benchmarks/results/" not in c
    ]
    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "dirty": bool(changed),
        "changed": changed,
    }


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def megabytes(n: int | None) -> str:
    return "absent" if n is None else f"{n / 2**20:.2f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default=str(ROOT / "_build/html"), help="the built website")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/page_weight.json"))
    args = parser.parse_args()
    site = Path(args.site)
    if not (site / "book").is_dir():
        print(f"no built website at {site}: run `make book` first.", file=sys.stderr)
        return 2

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from book_execution import machine  # (cores, CPU model, memory, versions)

    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_state(),
        "packages": package_versions(),
        **measure_site(site),
    }
    for page in report["pages"]:
        notebook = max(page["downloads"].values(), default=0)
        print(
            f"{page['page']:<50} HTML {megabytes(page['html_bytes'])}  "
            f"download {megabytes(notebook)}  first visit {megabytes(page['first_visit_bytes'])}"
        )
    print(
        f"site {megabytes(report['site_bytes'])} in {report['site_files']} files, "
        f"plotly.min.js {megabytes(report['plotly_js_bytes'])}, "
        f"clicking through every page {megabytes(report['click_through_bytes'])}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
