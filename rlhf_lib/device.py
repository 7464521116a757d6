"""Where tensors live: CPU by default, CUDA when present (introduced in the book's introduction).

The book is written for a 2-core CPU. A GPU only makes things faster; nothing depends on one.
Set ``RLHF_BOOK_DEVICE=cpu`` (or ``cuda``) to override the automatic choice.
"""

from __future__ import annotations

import os

DEVICE_ENV = "RLHF_BOOK_DEVICE"
_ALLOWED = ("cpu", "cuda")


def get_device(prefer: str | None = None):
    """Return the ``torch.device`` chapters should use.

    ``prefer`` (or the ``RLHF_BOOK_DEVICE`` environment variable) may be ``"cpu"`` or ``"cuda"``;
    by default CUDA is used when available and the CPU otherwise.
    """
    import torch

    choice = prefer if prefer is not None else os.environ.get(DEVICE_ENV)
    if choice is None or choice == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice not in _ALLOWED:
        source = "prefer=" if prefer is not None else f"{DEVICE_ENV}="
        raise ValueError(
            f"{source}{choice!r} is not a device this book knows; use one of {_ALLOWED} "
            f"(or leave it unset to pick CUDA when present, else the CPU)."
        )
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "CUDA was requested but torch sees no GPU on this machine. "
            f"Unset {DEVICE_ENV} or set it to 'cpu'; every chapter runs on a CPU."
        )
    return torch.device(choice)
