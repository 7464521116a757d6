"""The one set-up call every chapter makes first, and how pages show figures, widgets and values.

Introduced in the book's introduction. ``setup_notebook()`` makes a chapter behave the same on the
website build, in Binder, in Colab and on a laptop: fixed seeds, plotly figures that survive the
static build, quiet library logs, and no attempt to reach a model or dataset hub.
"""

from __future__ import annotations

import logging
import numbers
import os
import warnings

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
    would fail offline and fight the page's own). The bundle also carries plotly's own mime type,
    so the executed notebook a reader downloads from the site draws its figures in JupyterLab.
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
      Colab, VS Code or JupyterLab / Notebook (:func:`plotly_renderer_for_this_environment`).

    Call it in a chapter's first code cell. Offline mode takes effect even if transformers, trl
    or datasets are already imported (:func:`rlhf_lib.runtime.go_offline`).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")

    go_offline()
    import numpy as np
    import torch

    from rlhf_lib.device import get_device

    torch.set_num_threads(threads)
    np.set_printoptions(legacy="1.25")
    _quiet_libraries()
    seed_everything(seed)
    if plotly:
        use_plotly_renderer_for_this_environment()
    return get_device()
