"""The one set-up call every chapter makes first, and how pages show figures, widgets and values.

Introduced in the book's introduction. ``setup_notebook()`` makes a chapter behave the same on the
website build, in Binder, in Colab and on a laptop: fixed seeds, plotly figures that survive the
static build, quiet library logs, and no attempt to reach a model or dataset hub.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
import warnings
from html import escape, unescape

from rlhf_lib import checks
from rlhf_lib.runtime import (  # noqa: F401  (re-exported: pages import them from here)
    BUILD_ENV,
    OFFLINE_ENV,
    SummaryLineProgress,
    go_offline,
    is_book_build,
    progress,
    seed_everything,
)


def _quiet_libraries() -> None:
    for name in ("transformers", "datasets", "trl", "accelerate", "huggingface_hub", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if _importable("transformers"):
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    if _importable("datasets"):
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    # Warnings that say nothing to a reader of a CPU-only book.
    warnings.filterwarnings("ignore", message=".*pin_memory.*no accelerator.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# What a figure's traces are called in its text alternative (scatter traces: see _trace_kind).
CHART_KINDS = {
    "bar": "bar chart",
    "heatmap": "heatmap",
    "histogram": "histogram",
    "box": "box plot",
    "violin": "violin plot",
    "table": "table",
    "pie": "pie chart",
    "contour": "contour plot",
    "image": "image",
}
MAX_NAMES = 8  # series, panels or columns named in a text alternative; more are counted
# The tags plotly renders in a label (its subset of HTML); anything else between < and > is text.
PLOTLY_TAGS = r"</?(?:b|i|em|s|u|sup|sub|span|a)(?:\s[^>]*)?>"
# Traces that never appear in a legend: their names (px.imshow calls its heatmap "0") say nothing.
UNLISTED = {"heatmap", "image", "contour", "table", "surface"}


def _plain(text) -> str:
    """A plotly label as plain text: ``{"text": ...}`` or a string, plotly's tags dropped."""
    if isinstance(text, dict):
        text = text.get("text")
    if not text:
        return ""
    text = re.sub(r"<br\s*/?>", " ", str(text), flags=re.IGNORECASE)
    text = re.sub(PLOTLY_TAGS, "", text, flags=re.IGNORECASE)  # "P(r <0.5>)" is text: kept
    return " ".join(unescape(text).split())


def _trace_kind(trace: dict) -> str:
    kind = trace.get("type", "scatter")
    if kind in ("scatter", "scattergl"):
        mode = trace.get("mode") or "lines"  # plotly's default draws lines
        if "lines" in mode:
            return "line chart"
        # text placed on a blank canvas (the pipeline map) is a diagram, not data points
        return "diagram" if "text" in mode else "scatter plot"
    return CHART_KINDS.get(kind, "chart")


def _names(values) -> str:
    unique = list(dict.fromkeys(v for v in map(_plain, values) if v))
    shown = ", ".join(unique[:MAX_NAMES])
    return f"{shown} and {len(unique) - MAX_NAMES} more" if len(unique) > MAX_NAMES else shown


def _axis_titles(layout: dict, letter: str) -> str:
    """The distinct titles of the shown x (or y) axes, in subplot order, joined by " / "."""
    keys = [key for key in layout if re.fullmatch(rf"{letter}axis\d*", key)]
    axes = [layout[key] or {} for key in sorted(keys, key=lambda key: int(key[5:] or 1))]
    titles = (_plain(axis.get("title")) for axis in axes if axis.get("visible", True))
    return " / ".join(dict.fromkeys(title for title in titles if title))


def figure_alt_text(fig) -> str:
    """The text alternative of a plotly figure (a figure or its ``to_dict()``); never empty.

    ``"Line chart: <title>; x: <x-axis title>, y: <y-axis title>; series: <trace names>"``, with
    the panels' titles of a figure with subplots and the columns of a table. Only what is shown
    first counts: traces hidden until a button shows them are left out. A figure with no title
    is still described by its kind, axes and series; give every figure a title all the same.
    """
    fig = fig.to_dict() if hasattr(fig, "to_dict") else fig
    layout, traces = fig.get("layout") or {}, fig.get("data") or []
    shown = [t for t in traces if t.get("visible", True) is not False]

    def drawn(trace):  # a legend-only trace (x=[None]) names a colour, it draws no data
        x = trace.get("x")
        return x is None or any(v is not None for v in x)

    kinds = list(dict.fromkeys(_trace_kind(t) for t in shown if drawn(t))) or ["chart"]
    kind = " and ".join(kinds)
    title = _plain(layout.get("title"))
    parts = [f"{kind[0].upper()}{kind[1:]}" + (f": {title}" if title else "")]
    axes = [(a, _axis_titles(layout, a)) for a in ("x", "y")]
    if any(t for _, t in axes):
        parts.append(", ".join(f"{a}: {t}" for a, t in axes if t))
    if any(re.fullmatch(r"xaxis[2-9]\d*", key) for key in layout):  # subplots: their titles
        panels = _names(
            a.get("text")
            for a in layout.get("annotations") or []
            if a.get("xref") == "paper" and a.get("yref") == "paper" and not a.get("showarrow")
        )
        if panels:
            parts.append(f"panels: {panels}")
    series = _names(
        t.get("name")
        for t in shown
        if t.get("showlegend", True) is not False and t.get("type", "scatter") not in UNLISTED
    )
    if series:
        parts.append(f"series: {series}")
    columns = _names(v for t in shown for v in (t.get("header") or {}).get("values") or [])
    if columns:
        parts.append(f"columns: {columns}")
    return "; ".join(parts)


# Okabe & Ito (2008), "Color Universal Design": eight colours that people with every common kind
# of colour blindness tell apart. Ordered for lines and markers on a white page: the first five
# keep at least 3:1 contrast with white (WCAG 1.4.11), orange and sky blue (2.3:1) come after, and
# yellow (1.3:1) last, for filled shapes with an outline. Every figure of the book takes its
# colours from here: plotly's own default sequence puts red (#EF553B) next to green (#00CC96).
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#000000", "#E69F00", "#56B4E9", "#F0E442")
COLOUR_TEMPLATE = "rlhf_okabe_ito"


def use_colour_blind_safe_colours() -> None:
    """Make :data:`OKABE_ITO` (without yellow) the colours of every figure that picks none itself.

    It becomes the colour sequence of plotly's default template, which graph_objects and plotly
    express figures both take, on the website, in Colab, Binder and on a laptop alike.
    """
    import plotly.io as pio

    pio.templates.default = f"plotly+{_register_colour_template()}"


def white_template() -> str:
    """plotly's white template with :data:`OKABE_ITO` as its colours. A figure that names
    ``template="plotly_white"`` alone replaces the default, colours included, and gets plotly's
    red-beside-green sequence back; this keeps the book's."""
    return f"plotly_white+{_register_colour_template()}"


def _register_colour_template() -> str:
    import plotly.graph_objects as go
    import plotly.io as pio

    pio.templates[COLOUR_TEMPLATE] = go.layout.Template(layout={"colorway": OKABE_ITO[:7]})
    return COLOUR_TEMPLATE


# Which plotly renderer serves which environment, and why. ``setup_notebook`` picks one.
#
# - The website build (myst-nb): "rlhf_site". myst-nb drops plotly's own mime type, so figures
#   are HTML; the site serves plotly.js once as a static file (tools/sphinx_fixes.py) instead
#   of ~4.8 MB inside every page.
# - Google Colab: "colab". Each cell's output is its own sandboxed frame, so every figure must
#   load plotly.js itself (from plotly's CDN: Colab readers are online).
# - VS Code: "vscode". It renders plotly's mime type natively.
# - JupyterLab (Binder), Notebook 7, nbclassic, anything else: "plotly_mimetype+notebook".
#   JupyterLab and Notebook 7 render the mime type with the extension shipped in the plotly
#   wheel; the HTML copy is the fallback for classic front-ends and HTML export.
SITE_RENDERER = "rlhf_site"


def plotly_renderer_for_this_environment() -> str:
    """The name of the plotly renderer that draws figures where this kernel runs (table above)."""
    import sys

    if is_book_build():
        return SITE_RENDERER
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "VSCODE_PID" in os.environ:
        return "vscode"
    return "plotly_mimetype+notebook"


def _register_site_renderer() -> None:
    """Register ``"rlhf_site"``: a figure as HTML that calls the page's shared plotly.js.

    The HTML embeds no plotly.js and no MathJax (figure labels use Unicode, and a CDN MathJax
    would fail offline and fight the page's own), and is wrapped in an element with
    ``role="figure"`` and an ``aria-label`` from :func:`figure_alt_text`. The bundle also carries
    plotly's own mime type, so the executed notebook a reader downloads from the site draws its
    figures in JupyterLab.
    """
    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer

    class SiteRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            html = pio.to_html(
                fig_dict,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                default_width="100%",
                default_height=525,
                validate=False,
            )
            # The figure is an SVG of shapes and scattered tick labels, which say nothing to a
            # screen reader: the figure role names it by its text alternative (WCAG 1.1.1).
            # Not role="img": that hides its children, and plotly's toolbar holds real buttons
            # a keyboard reaches (axe's nested-interactive rule).
            label = escape(figure_alt_text(fig_dict), quote=True)
            html = f'<div role="figure" aria-label="{label}">{html}</div>'
            return {"application/vnd.plotly.v1+json": fig_dict, "text/html": html}

    pio.renderers[SITE_RENDERER] = SiteRenderer()


def use_plotly_renderer_for_this_environment() -> str:
    """Select (and return) the renderer of :func:`plotly_renderer_for_this_environment`."""
    import plotly.io as pio

    _register_site_renderer()
    name = plotly_renderer_for_this_environment()
    pio.renderers.default = name
    return name


def figure_mimebundle(obj) -> dict:
    """What IPython would display for ``obj``, as a mime bundle (``{mime type: data}``).

    A plotly figure displays itself through ``_ipython_display_``, which IPython's formatter
    reports as an empty bundle, so we ask plotly's renderers for the bundle. Not through the
    figure's ``_repr_mimebundle_``: that re-activates the renderer on every call, and the
    ``"notebook"`` renderer's activation sends all of plotly.js (~4.9 MB) to the browser again at
    every redraw of a widget. ``_build_mime_bundle`` activates it once per kernel.
    """
    if hasattr(obj, "to_plotly_json") and hasattr(obj, "to_dict"):
        import plotly.io as pio

        return pio.renderers._build_mime_bundle(obj.to_dict())
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(obj)
    return data


def show_in_output(output, obj) -> None:
    """Make an ipywidgets ``Output`` show ``obj`` (a figure, a table, text) instead of what it had.

    The widgets of the book redraw through this. It sets the widget's ``outputs`` directly, which
    the front-end (JupyterLab, Notebook, Colab, VS Code; ipywidgets 7 and 8) mirrors. The usual
    ``with output: display(obj)`` only works when a front-end captures the messages, so nothing a
    test kernel could check; and ``output.append_display_data(fig)`` puts an empty bundle in the
    widget for a plotly figure (see :func:`figure_mimebundle`).
    """
    if isinstance(obj, str):
        item = {"output_type": "stream", "name": "stdout", "text": obj}
    else:
        item = {"output_type": "display_data", "data": figure_mimebundle(obj), "metadata": {}}
    output.outputs = (item,)


def glue(name: str, value, display: bool = True) -> None:
    """Name a value the page's text shows: myst-nb's ``glue`` on the website, a printout elsewhere.

    On the website, ``{glue:text}`name``` in the prose is replaced by ``value``. Notebooks (Colab,
    Binder, a laptop) run without myst-nb, and their text shows `name` instead (see
    ``tools/twins.py``), so here the value is printed as ``name = value`` under the cell that
    computes it (and displayed, if it is a figure or a table and ``display`` is true).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue name must be a Python-identifier-like string, got {name!r}")
    if is_book_build():
        from myst_nb import glue as myst_glue  # build-only: the website's text substitution

        myst_glue(name, value, display=display)
        return
    if isinstance(value, str | numbers.Integral):
        print(f"{name} = {value}")
    elif isinstance(value, numbers.Real):  # Python and NumPy floats
        print(f"{name} = {value:.4g}")
    else:
        print(f"{name}:")
        if display:
            from IPython.display import display as ipython_display

            ipython_display(value)


def setup_notebook(seed: int = 0, threads: int = 1, plotly: bool = True):
    """Prepare a chapter's kernel and return the ``torch.device`` to use.

    - turns on offline mode for Hugging Face libraries (nothing in the book needs the hub);
    - quiets their logs and progress bars (chapters show their own, see :func:`progress`);
    - seeds Python, NumPy and torch with ``seed``;
    - uses ``threads`` CPU threads for torch. The default is 1: the book's models are tiny, so a
      second thread gains little on a quiet machine and loses a lot on a shared one (Binder,
      CI, a laptop doing something else). Measured on 2 cores with one other busy process: a
      GPT-2 training step of the base model took 250 ms with 1 thread and 570–2000 ms with 2;
    - makes NumPy print scalars as plain numbers (``0.93``, not ``np.float64(0.93)``), which is
      also the form myst-nb's ``glue`` needs to format them in the text;
    - selects the plotly renderer that draws figures where the kernel runs: the website build,
      Colab, VS Code or JupyterLab / Notebook (:func:`plotly_renderer_for_this_environment`),
      and colours that colour-blind readers tell apart (:func:`use_colour_blind_safe_colours`).

    Call it in a chapter's first code cell. Offline mode takes effect even if transformers, trl
    or datasets are already imported (:func:`rlhf_lib.runtime.go_offline`).
    """
    if not checks.is_int(threads) or threads < 1:  # NumPy ints too; True is not a count
        raise ValueError(f"threads must be a positive int, got {threads!r}")

    go_offline()
    import numpy as np
    import torch

    from rlhf_lib.device import get_device

    torch.set_num_threads(int(threads))
    np.set_printoptions(legacy="1.25")
    _quiet_libraries()
    seed_everything(seed)
    if plotly:
        use_plotly_renderer_for_this_environment()
        use_colour_blind_safe_colours()
    return get_device()
