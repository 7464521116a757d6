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
3. pydata-sphinx-theme logs "Got invalid theme mode" when ``default_mode`` is unset; _config.yml
   sets ``html_context.default_mode``.

The browser test (tests/test_browser.py) fails on any console error and on unrendered math, so a
regression shows at once.
"""

import importlib.util
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


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
