"""The one set-up call every chapter makes first, and the progress bar chapters use.

Introduced in the book's introduction. ``setup_notebook()`` makes a chapter behave the same on the
website build, in Binder, in Colab and on a laptop: fixed seeds, plotly figures that survive the
static build, quiet library logs, and no attempt to reach a model or dataset hub.
"""

from __future__ import annotations

import logging
import os
import random
import warnings

from tqdm.std import tqdm as tqdm_std

# Set before transformers / datasets / huggingface_hub are imported: they read these at import time.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # avoids the fork warning when a DataLoader forks
    "WANDB_DISABLED": "true",
}

# The Makefile sets this while it builds the website: progress bars then print one final line
# instead of a widget, which a static page could not run anyway.
BUILD_ENV = "RLHF_BOOK_BUILD"


def is_book_build() -> bool:
    """True while the website is being built (the Makefile sets ``RLHF_BOOK_BUILD=1``)."""
    return os.environ.get(BUILD_ENV, "") not in ("", "0")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a chapter gives the same numbers each run."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


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


def _use_notebook_plotly_renderer() -> None:
    """Make plotly draw through the ``"notebook"`` renderer, without its MathJax CDN tag.

    The default renderer in a headless kernel emits a mime type that myst-nb silently drops, so the
    figure would be missing from the website. The ``"notebook"`` renderer emits HTML and embeds
    plotly.js once per page (no CDN). Stock, it also adds a ``<script>`` that loads MathJax from a
    CDN inside every figure; that fails offline and fights the page's own MathJax, so we drop it
    (figure labels in this book use Unicode, not LaTeX).
    """
    import plotly.io as pio
    from plotly.io._base_renderers import NotebookRenderer

    class OfflineNotebookRenderer(NotebookRenderer):
        def to_mimebundle(self, fig_dict):
            bundle = super().to_mimebundle(fig_dict)
            html = bundle["text/html"]
            start = html.find('<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/')
            if start != -1:
                end = html.index("</script>", start) + len("</script>")
                html = html[:start] + html[end:]
            return {"text/html": html}

    pio.renderers["notebook"] = OfflineNotebookRenderer()
    pio.renderers.default = "notebook"  # activating it displays plotly.js once in this cell


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
    - selects the plotly ``"notebook"`` renderer, so figures appear on the static website.

    Call it in a chapter's first code cell, before importing transformers, trl or datasets,
    and keep that cell's output: it carries plotly.js for the page's figures.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")

    import numpy as np
    import torch

    from rlhf_lib.device import get_device

    torch.set_num_threads(threads)
    np.set_printoptions(legacy="1.25")
    _quiet_libraries()
    seed_everything(seed)
    if plotly:
        _use_notebook_plotly_renderer()
    return get_device()


def progress(iterable=None, total=None, desc=None, **kwargs):
    """A tqdm progress bar that suits where the chapter runs.

    Live (Jupyter, Colab, a terminal) it is ``tqdm.auto``. During the website build it stays
    silent and prints one final summary line when it closes (for example
    ``pretraining: 100%|...| 300/300 [00:41<00:00, loss=1.93]``), so the page shows how long the
    step took instead of a widget that cannot run without a kernel.
    """
    if not is_book_build():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, **kwargs)
    return SummaryLineProgress(iterable, total=total, desc=desc, **kwargs)


class SummaryLineProgress(tqdm_std):
    """tqdm that draws nothing while running and prints its final state once, on close."""

    def __init__(self, *args, **kwargs):
        self._devnull = open(os.devnull, "w")  # closed in close()
        kwargs.update(file=self._devnull, mininterval=float("inf"), ncols=100)
        super().__init__(*args, **kwargs)

    def close(self):
        if not self.disable and not getattr(self, "_summary_printed", False):
            self._summary_printed = True
            print(self.format_meter(**self.format_dict), flush=True)
        super().close()
        self._devnull.close()
