"""rlhf_lib: the small library that every chapter of the book calls.

Each module's docstring names the chapter that introduces it. Importing the package is cheap:
heavy libraries (torch, transformers, trl) are imported by the modules that need them.
"""

__version__ = "0.1.0"

from rlhf_lib.notebook import glue, setup_notebook  # noqa: E402  (every chapter calls them)

__all__ = ["__version__", "glue", "setup_notebook"]
