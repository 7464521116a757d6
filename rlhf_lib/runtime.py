"""What training code needs from the environment: offline mode, seeds, progress bars, local paths.

Introduced in the book's introduction, with :func:`rlhf_lib.setup_notebook`. Training modules
import this module and never :mod:`rlhf_lib.notebook` (figures, widgets, glue), so a stage's
fingerprint (:mod:`rlhf_lib.cache`) does not change when a figure does.
"""

from __future__ import annotations

import os
import random
from numbers import Integral
from pathlib import Path

from tqdm.std import tqdm as tqdm_std

# Nothing in the book needs a model or dataset hub, and the build machine has no network.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # avoids the fork warning when a DataLoader forks
    "WANDB_DISABLED": "true",
}
_TRUE = {"1", "ON", "YES", "TRUE"}

# The Makefile sets this while it builds the website: progress bars then print one final line
# instead of a widget, which a static page could not run anyway.
BUILD_ENV = "RLHF_BOOK_BUILD"


def is_book_build() -> bool:
    """True while the website is being built (``RLHF_BOOK_BUILD=1``)."""
    return os.environ.get(BUILD_ENV, "") not in ("", "0")


def go_offline() -> None:
    """Turn on offline mode and turn off telemetry, even if ``huggingface_hub`` is imported.

    The variables in ``OFFLINE_ENV`` are set unless the reader set them (a Colab reader may set
    ``HF_HUB_OFFLINE=0`` to use the hub). ``huggingface_hub`` and ``datasets`` read them once, at
    import, so when they are already imported their copies are updated too; TRL's trainers ask
    ``huggingface_hub`` before sending telemetry. Every trainer the library builds calls this.
    """
    import sys

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    offline = os.environ["HF_HUB_OFFLINE"].upper() in _TRUE
    no_telemetry = os.environ["HF_HUB_DISABLE_TELEMETRY"].upper() in _TRUE
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = offline
        constants.HF_HUB_DISABLE_TELEMETRY = no_telemetry
    if "datasets" in sys.modules:
        from datasets import config

        config.HF_HUB_OFFLINE = config.HF_DATASETS_OFFLINE = offline


def local_folder(path, what: str = "model folder") -> Path:
    """``path`` as a ``Path`` if it is an existing folder, else a clear error at once.

    ``from_pretrained`` takes a string it cannot find on disk for a hub id and, online, retries
    the hub for ~20 s before it fails; the book only ever loads folders it saved.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ValueError(
            f"The {what} must be a path, got {path!r}: pass the folder a stage function "
            "returned, for example sft_model_path()."
        )
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            f"The {what} {str(path)!r} is a file, not a folder: pass the folder that holds the "
            "saved files (config.json, ...), for example what sft_model_path() returned."
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"The {what} {str(path)!r} does not exist on this machine. The book loads only folders "
            "it saved (stages of the cache, see rlhf_lib.cache); pass the folder a stage function "
            "returned, for example sft_model_path(), or check the spelling of the path."
        )
    return folder


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a chapter gives the same numbers each run."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32) (NumPy's range), got {seed!r}")
    import numpy as np
    import torch

    seed = int(seed)  # a NumPy integer is a seed too; random.seed takes only int
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


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
