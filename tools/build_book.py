"""Build the website as ``jupyter-book build . --all`` does, executing two pages at a time.

    python tools/build_book.py [JUPYTER-BOOK BUILD OPTIONS]     # e.g. -W -n --keep-going

Executing the pages is most of a build, and each page's kernel mostly keeps one core busy. Sphinx
can read (and so execute) pages in parallel processes (``sphinx-build -j``), but Jupyter Book 1's
command line never passes that on: its ``build_sphinx`` takes ``jobs`` and the CLI leaves it at
1. We call the same CLI with ``jobs`` set. Sphinx splits the pages, in name order, into chunks
that its worker processes read one after the other; ``benchmarks/book_execution.py`` runs the
pages in the same chunks, so what it measures is what this build does.

``RLHF_BOOK_JOBS`` sets the number of processes (default: 2, or 1 on a one-core machine). Each
page still runs in its own kernel, so the memory a page needs does not change; the build holds
two kernels at once (each under 2 GB, ``benchmarks/results/book_execution.json``).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def build_jobs() -> int:
    """How many pages execute at a time: ``RLHF_BOOK_JOBS``, else 2 (1 on a one-core machine)."""
    value = os.environ.get("RLHF_BOOK_JOBS", "")
    if not value:
        return min(2, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"RLHF_BOOK_JOBS={value!r}: set it to a whole number of processes, 1 or more.")
    return int(value)


def page_chunks(jobs: int) -> list[list[Path]]:
    """The notebook pages in the groups that ``jobs`` Sphinx processes read, each group in order.

    Sphinx reads the toc's documents sorted by name, in chunks from ``make_chunks``; a process
    reads one chunk after the other, and a free process takes the next chunk. With one job, or
    with five documents or fewer, it reads everything in one process.
    """
    from sphinx.util.parallel import make_chunks
    from twins import notebook_pages, toc_files

    docnames = sorted(name.removesuffix(".md") for name in toc_files())
    chunks = make_chunks(docnames, jobs) if jobs > 1 and len(docnames) > 5 else [docnames]
    notebooks = {path.relative_to(ROOT).with_suffix("").as_posix(): path
                 for path in notebook_pages()}  # fmt: skip
    return [[notebooks[name] for name in chunk if name in notebooks] for chunk in chunks]


def main(argv: list[str]) -> None:
    import jupyter_book.sphinx
    from jupyter_book.cli.main import main as jupyter_book_cli

    # The CLI imports build_sphinx from this module when it runs, so it picks up the jobs.
    jupyter_book.sphinx.build_sphinx = functools.partial(
        jupyter_book.sphinx.build_sphinx, jobs=build_jobs()
    )
    jupyter_book_cli(["build", ".", "--all", *argv])  # exits with the build's status


if __name__ == "__main__":
    main(sys.argv[1:])
