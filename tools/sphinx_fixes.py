"""A local Sphinx extension for what the stock Jupyter Book 1 build gets wrong for this book.

1. Offline mathematics. The theme loads MathJax from a CDN, so formulas stay raw LaTeX wherever
   the site is read without internet (a classroom, a laptop on a train, the offline browser test).
   MathJax 3 ships on PyPI (``django-static-mathjax``, a plain copy of its files); we copy the
   parts a page can load (the tex-chtml bundle, its fonts and its lazily loaded extensions) into
   ``_static/mathjax`` and point ``mathjax_path`` at them.
2. sphinx-thebe registers its inline ``const THEBE_JS_URL = ...`` script once per
   ``env-before-read-docs`` event, and a Jupyter Book build emits that event twice, so every page
   declared the constant twice ("Identifier 'THEBE_JS_URL' has already been declared").
   We drop exact duplicate scripts from each page.
3. One plotly.js for the whole site. A figure embedding its own copy of plotly.js weighs about
   4.8 MB, in the page and again in its downloadable notebook. The build sets
   ``RLHF_BOOK_BUILD=1`` for the kernels it starts, so ``rlhf_lib.setup_notebook`` picks its
   ``"rlhf_site"`` renderer (figures without plotly.js); we copy the installed plotly's
   ``plotly.min.js`` into ``_static`` once and load it (blocking, before the figures' inline
   scripts run) on the pages that have a figure. The browser caches it across pages.
4. Compact downloadable notebooks. The executed notebook a reader downloads from a page
   (``_sources/**.ipynb``) is written indented, one number per line, which triples the size of a
   figure's data (the SmolLM2 page's attention maps: 1.9 MB instead of 0.7 MB). We rewrite it
   without indentation: the same JSON, still a valid notebook.
5. pydata-sphinx-theme logs "Got invalid theme mode" when ``default_mode`` is unset; _config.yml
   sets ``html_context.default_mode``.
6. An accessible bibliography. docutils writes the references as ``<div role="list">`` holding
   ``<div role="doc-biblioentry">`` entries. DPUB-ARIA 1.1 deprecated that role (use
   ``listitem``), and axe-core no longer counts it as an item of the list, so a screen reader
   sees a broken list (axe: aria-required-children, critical; aria-deprecated-role). We write
   ``role="listitem"`` instead; the entries keep their ``citation`` class, which the theme styles.
7. Pages read (and executed) two at a time (``tools/build_book.py``). Sphinx reads in parallel
   only if every extension says it is safe, and two of Jupyter Book's do not say: Sphinx then
   reads one page at a time and warns, which ``-W`` makes fatal. Both are safe to read in
   parallel: ``sphinx_multitoc_numbering`` only replaces the section numbering that Sphinx runs
   in the main process after all pages are read, and ``sphinx_jupyterbook_latex`` only adds
   transforms that act under the LaTeX builder and keep no state between documents.

The browser test (tests/test_browser.py) fails on any console error, on unrendered math and on
any serious or critical axe-core finding (WCAG 2.1 A and AA), so a regression shows at once.
"""

import importlib.util
import json
import os
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "a11y", "ui", "adaptors")


def _mathjax_source() -> Path:
    spec = importlib.util.find_spec("mathjax")  # located, not imported (it is a Django app)
    es5 = Path(spec.submodule_search_locations[0]) / "static/mathjax/es5" if spec else None
    if es5 is None or not (es5 / "tex-chtml.js").exists():
        raise ExtensionError(
            "MathJax for offline pages was not found. Install it with "
            "`pip install django-static-mathjax==3.2.2.1` (it is in requirements.txt)."
        )
    return es5


def _use_local_mathjax(app, config):
    _mathjax_source()  # fail early, with the message above, if it is missing
    config.mathjax_path = "mathjax/tex-chtml.js"  # relative to _static


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    source, target = _mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    # The two copies differ only in filename (None vs ""), so compare what is rendered.
    seen, unique = set(), []
    for script in context.get("script_files", []):
        rendered = (
            script.filename or "",
            script.priority,
            tuple(sorted(script.attributes.items())),
        )
        if rendered not in seen:
            seen.add(rendered)
            unique.append(script)
    context["script_files"] = unique


PLOTLY_JS = "plotly.min.js"


def _copy_plotly_js(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    from plotly.offline import get_plotlyjs

    target = Path(app.outdir) / "_static" / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(get_plotlyjs(), encoding="utf-8")


def _compact_downloadable_notebooks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    for path in (Path(app.outdir) / "_sources").rglob("*.ipynb"):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(notebook, ensure_ascii=False, separators=(",", ":")), "utf-8")


def _biblioentries_as_list_items(app, pagename, templatename, context, doctree):
    body = context.get("body", "")
    if 'role="doc-biblioentry"' in body:  # written by docutils' visit_citation, nowhere else
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


def _load_plotly_js_where_needed(app, pagename, templatename, context, doctree):
    if "Plotly.newPlot" in context.get("body", ""):
        app.add_js_file(PLOTLY_JS, priority=100)  # on this page only (html-page-context)


# Extensions that do not declare ``parallel_read_safe`` but are (point 7 above).
PARALLEL_READ_SAFE = ("sphinx_multitoc_numbering", "sphinx_jupyterbook_latex")


def _declare_parallel_read_safe(app):
    for name in PARALLEL_READ_SAFE:
        extension = app.extensions.get(name)
        if extension is not None and extension.parallel_read_safe is None:  # None: undeclared
            extension.parallel_read_safe = True


def setup(app):
    # Kernels started by the build inherit this: rlhf_lib then renders figures for the site.
    os.environ["RLHF_BOOK_BUILD"] = "1"
    app.connect("config-inited", _use_local_mathjax)
    app.connect("builder-inited", _declare_parallel_read_safe)
    app.connect("build-finished", _copy_mathjax)
    app.connect("build-finished", _copy_plotly_js)
    app.connect("build-finished", _compact_downloadable_notebooks)
    app.connect("html-page-context", _load_plotly_js_where_needed)
    app.connect("html-page-context", _drop_duplicate_scripts)
    app.connect("html-page-context", _biblioentries_as_list_items)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
