"""A local Sphinx extension that repairs two console errors of the stock Jupyter Book 1 theme.

1. sphinx-thebe registers its inline ``const THEBE_JS_URL = ...`` script once per
   ``env-before-read-docs`` event, and a Jupyter Book build emits that event twice, so every page
   declared the constant twice ("Identifier 'THEBE_JS_URL' has already been declared").
   We drop exact duplicate scripts from each page.
2. pydata-sphinx-theme logs "Got invalid theme mode" when ``default_mode`` is unset; _config.yml
   sets ``html_context.default_mode``.

The browser test (tests/test_browser.py) fails on any such error, so a regression shows at once.
"""


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
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
