"""Memory of a page run in JupyterLab, server included: what a Binder session's 2 GB must hold.

    python benchmarks/binder_memory.py [--out FILE.json] [TWIN.ipynb ...]

By default each twin starts from an empty stage cache, as on a reader's first visit to Binder: the
page trains or converts what it needs while it is measured (``--warm`` reuses the build's cache,
as a second visit would). JupyterLab is started from this environment (the launcher of
tests/test_jupyterlab.py), each twin is opened in headless Chromium and run with Run > Run All
Cells, and a thread samples the resident memory of the server's process tree (the Jupyter server
and the kernels it started) every 50 ms. Each twin runs ``--repeats`` times, each in a fresh
server; the report gives the mean and the range of the repeats (where a rerun should fall). The
default twin is the page with the largest kernel in benchmarks/results/book_execution.json. The
browser is not counted: on Binder it runs on the reader's own computer.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import test_jupyterlab  # noqa: E402
from book_execution import PeakMemory, machine  # noqa: E402
from page_weight import git_state  # noqa: E402
from test_jupyterlab import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    KERNEL_READY,
    run_all_cells,
    running_jupyterlab,
)

BINDER_LIMIT_MB = 2048


def heaviest_twin() -> str:
    report = json.loads((ROOT / "benchmarks/results/book_execution.json").read_text())
    page = max(report["pages"], key=lambda p: p["peak_rss_mb"])["page"]
    return str(Path(page).with_suffix(".ipynb"))


def tree_rss_mb(process: psutil.Process) -> float:
    tree = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20


def shut_down_kernels(lab) -> None:
    with urllib.request.urlopen(f"{lab.url}/api/kernels?token={lab.token}") as response:
        kernels = json.load(response)
    for kernel in kernels:
        url = f"{lab.url}/api/kernels/{kernel['id']}?token={lab.token}"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).close()


def measure(twins: list[str]) -> list[dict]:
    from playwright.sync_api import sync_playwright

    results = []
    with (
        tempfile.TemporaryDirectory(prefix="binder-memory-") as folder,
        running_jupyterlab(Path(folder), twins) as (lab, server),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for twin in twins:
            name = Path(twin).stem
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{lab.url}/lab/workspaces/{name}/tree/{name}.ipynb?token={lab.token}")
            page.wait_for_function(KERNEL_READY, timeout=120_000)
            idle_mb = tree_rss_mb(psutil.Process(server.pid))  # server + a fresh kernel
            started = time.monotonic()
            with PeakMemory(server.pid) as peak:
                run_all_cells(page, name)
            results.append(
                {
                    "twin": twin,
                    "seconds": round(time.monotonic() - started, 1),
                    "server_and_idle_kernel_mb": round(idle_mb, 1),
                    "peak_server_and_kernel_mb": round(peak.peak_bytes / 2**20, 1),
                }
            )
            page.close()
            shut_down_kernels(lab)  # what the heavy pages ask a Binder reader to do first
        browser.close()
    return results


def summarise(results: list[dict]) -> dict:
    """One twin over the repeats: the mean, with the range of the repeats as the spread."""
    summary = {"twin": results[0]["twin"], "repeats": len(results)}
    for key in ("seconds", "server_and_idle_kernel_mb", "peak_server_and_kernel_mb"):
        values = [r[key] for r in results]
        summary[key] = round(sum(values) / len(values), 1)
        summary[f"{key}_range"] = [min(values), max(values)]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/binder_memory.json"))
    parser.add_argument("--warm", action="store_true", help="reuse the build's stage cache")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each twin (default 3)")
    parser.add_argument("twins", nargs="*", help="twins to run (default: the heaviest page)")
    args = parser.parse_args()
    twins = args.twins or [heaviest_twin()]
    runs = []  # one list of page results per repeat, each in a fresh server (and empty cache)
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="rlhf-cache-") as empty:
            if not args.warm:
                test_jupyterlab.STAGE_CACHE = Path(empty)  # the cache the server's kernels use
            runs.append(measure(twins))
    pages = [summarise([run[i] for run in runs]) for i in range(len(twins))]
    git = git_state()  # the same record as page_weight.py's: the commit measured
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": git["commit"],
        "dirty": git["dirty"],
        "cache": "warm (the build's)" if args.warm else "cold",
        "binder_limit_mb": BINDER_LIMIT_MB,
        "pages": pages,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for p in pages:
        low, high = p["peak_server_and_kernel_mb_range"]
        peak = p["peak_server_and_kernel_mb"]
        print(f"{p['twin']}: peak {peak:.0f} MB ({low:.0f}-{high:.0f}) with the Jupyter server "
              f"(limit {BINDER_LIMIT_MB} MB), {p['seconds']:.0f} s")  # fmt: skip
    print(f"wrote {args.out}")
    return (
        0 if all(p["peak_server_and_kernel_mb_range"][1] <= BINDER_LIMIT_MB for p in pages) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
