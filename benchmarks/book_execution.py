"""Execute every page of the book in a fresh kernel and record its wall time and peak memory.

    python benchmarks/book_execution.py [--cold] [--jobs N] [--out FILE.json] [PAGE.md ...]

Each page of _toc.yml is converted from MyST markdown by jupytext and run by nbclient in its own
kernel, as the website build does. A sampler thread reads the resident memory of the kernel
process (and its children) every 50 ms; the peak is what a Binder reader's 2 GB must hold.
The pages run as ``make book`` runs them (``tools/build_book.py``): in the build's chunks, one
process per job (2 by default, ``RLHF_BOOK_JOBS``), each executing its chunk's pages in order;
a page's wall time is therefore measured beside the other job's page. They share the stage
cache, as in a real build. ``--cold`` starts from an empty cache (a temporary folder) and, as
``make book`` does, first trains the book's stages two at a time (``python -m rlhf_lib.stages``);
its wall time and peak memory are reported apart from the pages', and so is any stage a page
still had to build itself (there should be none). The whole book's time is the stages' wall time
plus the pages' (from the first page started to the last page finished). A ``--cold`` run then
builds the book once more, every stage now cached, and reports that second build as ``warm``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import jupytext
import psutil
from nbclient import NotebookClient

from rlhf_lib.cache import list_stages

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from build_book import build_jobs, page_chunks  # noqa: E402  (what make book runs, and how)

sys.path.insert(0, str(ROOT / "benchmarks"))
from page_weight import git_state  # noqa: E402  (the commit measured, as page_weight.json)

CELL_TIMEOUT_S = 1800  # the same per-cell limit as _config.yml


class PeakMemory:
    """Samples the resident memory of a process tree in a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        self.process, self.interval_s, self.peak_bytes = psutil.Process(pid), interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree if p.is_running())
                self.peak_bytes = max(self.peak_bytes, rss)
            except psutil.Error:
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def execute_page(page: Path) -> dict:
    notebook = jupytext.read(page)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(page.parent)}},
    )
    started = time.perf_counter()
    error = None
    with client.setup_kernel():
        kernel_pid = client.km.provisioner.process.pid
        with PeakMemory(kernel_pid) as memory:
            try:
                client.execute(cleanup_kc=False)
            except Exception as err:  # keep measuring the other pages; report this one
                error = str(err).strip().splitlines()[-1][:300]
    wall = time.perf_counter() - started
    return {
        "error": error,
        "page": str(page.relative_to(ROOT)),
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(memory.peak_bytes / 2**20, 1),
        "code_cells": sum(cell.cell_type == "code" for cell in notebook.cells),
    }


def execute_chunk(chunk: list[Path]) -> list[dict]:
    """Execute a chunk's pages one after the other (in a worker process, as Sphinx does)."""
    results = []
    for page in chunk:
        result = execute_page(page)
        results.append(result)
        wall, peak = result["wall_seconds"], result["peak_rss_mb"]
        status = f"  ERROR: {result['error']}" if result["error"] else ""
        print(f"{result['page']:<45} {wall:>7.1f} s {peak:>6.0f} MB{status}", flush=True)
    return results


def execute_pages(chunks: list[list[Path]], jobs: int) -> tuple[float, list[list[dict]]]:
    """Every chunk's pages, ``jobs`` processes at a time as Sphinx reads them (a free process
    takes the next chunk); the wall seconds from the first page started to the last finished."""
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")  # fresh workers, as the stage builder's
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
        results = list(pool.map(execute_chunk, chunks))
    return time.perf_counter() - started, results


def machine() -> dict:
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def build_stages() -> dict:
    """Train the book's stages as ``make book`` does; their wall time and the workers' peak."""
    from rlhf_lib.stages import build_book_stages

    started = time.perf_counter()
    with PeakMemory(os.getpid()) as memory:  # this process and its worker processes
        seconds = build_book_stages(workers=2)
    wall = time.perf_counter() - started
    print(f"stages (2 workers)                            {wall:>7.1f} s", flush=True)
    return {
        "workers": 2,
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(memory.peak_bytes / 2**20, 1),
        "seconds": {name: round(t, 2) for name, t in seconds.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/book_execution.json"))
    parser.add_argument("--cold", action="store_true", help="start from an empty stage cache")
    parser.add_argument("--keep-cache", metavar="DIR",
                        help="with --cold: build the stages in DIR (new or empty) and keep them, "
                        "so a later `make book` with RLHF_BOOK_CACHE=DIR reuses them")  # fmt: skip
    parser.add_argument(
        "--jobs",
        type=int,
        default=build_jobs(),
        help="pages executed at a time, as make book (default: %(default)s)",
    )
    parser.add_argument(
        "pages", nargs="*", help="only these pages, one after the other (default: every toc page)"
    )
    args = parser.parse_args()
    measured = git_state()  # the code checked out when the run starts is the code it measures

    os.environ.setdefault("RLHF_BOOK_BUILD", "1")  # summary-line progress bars, as in the build
    cold_dir = None
    if args.keep_cache:
        keep = Path(args.keep_cache)
        if not args.cold or (keep.exists() and any(keep.iterdir())):
            parser.error("--keep-cache needs --cold and a new or empty folder")
        keep.mkdir(parents=True, exist_ok=True)
        os.environ["RLHF_BOOK_CACHE"] = str(keep.resolve())
    elif args.cold:
        cold_dir = tempfile.TemporaryDirectory(prefix="rlhf-cache-")
        os.environ["RLHF_BOOK_CACHE"] = cold_dir.name

    stages = build_stages() if args.cold else None
    before = {s["path"] for s in list_stages()}
    chunks = [[Path(p).resolve() for p in args.pages]] if args.pages else page_chunks(args.jobs)
    pages_wall, results = execute_pages(chunks, args.jobs)
    pages = [page for chunk in results for page in chunk]
    built_by_pages = sorted(Path(s["path"]).name for s in list_stages() if s["path"] not in before)
    warm = None
    if args.cold and not args.pages:
        # The same book again, now that every stage is cached: what a second `make book` costs.
        print("again, with every stage cached:", flush=True)
        warm_stages = build_stages()
        warm_pages_wall, _ = execute_pages(chunks, args.jobs)
        warm = {
            "stages_wall_seconds": warm_stages["wall_seconds"],
            "pages_wall_seconds": round(warm_pages_wall, 2),
            "total_wall_seconds": round(warm_stages["wall_seconds"] + warm_pages_wall, 2),
        }
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "git": measured,
        "cache": "cold" if args.cold else "warm (whatever RLHF_BOOK_CACHE held)",
        "stages": stages,
        "page_jobs": min(args.jobs, len(chunks)),  # named pages run one after the other
        "page_chunks": [[page["page"] for page in chunk] for chunk in results],
        "pages_wall_seconds": round(pages_wall, 2),
        "pages": pages,
        "stages_built_by_pages": built_by_pages,
        "total_wall_seconds": round(pages_wall + (stages["wall_seconds"] if stages else 0), 2),
        "max_peak_rss_mb": max(p["peak_rss_mb"] for p in pages),
        "warm": warm,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"total {report['total_wall_seconds']:.1f} s, max peak {report['max_peak_rss_mb']:.0f} MB"
        + (f"; warm {warm['total_wall_seconds']:.1f} s" if warm else "")
    )
    print(f"wrote {args.out}")
    if cold_dir:
        cold_dir.cleanup()
    return 1 if any(p["error"] for p in pages) else 0


if __name__ == "__main__":
    sys.exit(main())
