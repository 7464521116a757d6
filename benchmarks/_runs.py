"""What ``rl_vs_trl.py`` and ``value_models.py`` share: each trains every (name, seed) in a fresh
Python process of its own (so the peak resident memory a run reports is its own), collects every
run's figures, summarises them over the seeds with a 95% confidence interval, and writes a report
that records the machine and the commit measured.

A script built on this module runs itself with ``--one NAME --seeds SEED --out FILE`` for one run
(:func:`parser` declares the options, :func:`in_fresh_processes` makes the calls).

A benchmark of a clean checkout keeps each finished run under ``_build/benchmark-runs/``, by
commit and CPU, so a rerun after an interruption (a session that ends, a killed job) resumes
where it stopped instead of starting over: on a slow machine ``rl_vs_trl.py`` takes hours.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from book_execution import machine  # cores, CPU model, memory, versions

KEPT_RUNS = Path(__file__).resolve().parents[1] / "_build/benchmark-runs"


def parser(doc: str, out: Path, seeds: list[int]) -> argparse.ArgumentParser:
    """The options every such script takes: ``--out``, ``--seeds`` and the internal ``--one``."""
    result = argparse.ArgumentParser(description=doc.splitlines()[0])
    result.add_argument("--out", default=str(out))
    result.add_argument("--seeds", nargs="+", type=int, default=seeds)
    result.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one here
    return result


def in_fresh_processes(script: str, names, seeds, tag: str, measured: dict,
                       done: Callable[[dict], str]) -> list[list[dict]]:  # fmt: skip
    """Run ``script --one NAME --seeds SEED`` for every name and seed, each in a new process;
    return every name's runs (the JSON each wrote), in order. ``done(run)`` words a finished run
    for the progress line. A run that :func:`finished_runs` kept for this commit and CPU (from
    an interrupted benchmark) is read back, not run again.

    The runs go seed by seed, every name in turn (seed 0 of each, then seed 1 of each, ...): a
    slower spell of the machine then falls on every name alike instead of on one name's runs, so
    it moves a ratio of CPU-seconds less (run name by name, one method's mean CPU-seconds moved
    by up to 13% between two runs of identical work)."""
    env = {**os.environ, "RLHF_BOOK_BUILD": "1"}  # one summary line per progress bar
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        kept = finished_runs(tag, measured) or Path(tmp)
        for seed in seeds:
            for name in names:
                out = kept / f"{name}-seed{seed}.json"
                if out.exists():
                    print(f"[{tag}] {name}, seed {seed}: kept from an interrupted run", flush=True)
                else:
                    print(f"[{tag}] {name}, seed {seed} ...", flush=True)
                    partial = out.with_suffix(".partial")  # complete files only under the name
                    subprocess.run([sys.executable, script, "--one", name, "--seeds", str(seed),
                                    "--out", str(partial)], check=True, env=env)  # fmt: skip
                    partial.rename(out)
                results[name].append(json.loads(out.read_text()))
                print(f"[{tag}] {name}, seed {seed}: {done(results[name][-1])}", flush=True)
    return [results[name] for name in names]


def finished_runs(tag: str, measured: dict) -> Path | None:
    """The folder that keeps the finished runs of ``tag`` at the commit ``measured`` on this CPU,
    or None for a checkout with uncommitted changes (its code has no name to file runs under)."""
    if measured["dirty"] or not measured["commit"]:
        return None
    cpu = re.sub(r"[^A-Za-z0-9]+", "-", machine()["cpu_model"] or "unknown-cpu").strip("-")
    folder = KEPT_RUNS / tag / measured["commit"] / cpu
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_report(out, tag: str, measured: dict, **fields) -> dict:
    """Write the report: date, machine, the commit ``measured`` (taken when the run started),
    the command, then ``fields``."""
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git": measured,
        "command": f"python benchmarks/{tag}.py",
        **fields,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"[{tag}] wrote {out}")
    return report


def means(runs: list[dict], keys) -> dict:
    """The mean over the seeds of each figure in ``keys``."""
    import numpy as np

    return {key: float(np.mean([r[key] for r in runs])) for key in keys}


def ci95_half_width(values) -> float:
    """Half the width of the 95% confidence interval of the mean of ``values`` (Student's t with
    n − 1 degrees of freedom): the mean ± this covers the mean a rerun tends to, 19 times in 20.
    NaN for a single value."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan")
    return float(t_975(len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


# Student's t 97.5% quantile for 1-10 degrees of freedom (any statistics table)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t_975(df: int) -> float:
    """Student's t 97.5% quantile: the table up to 10 degrees of freedom, then the
    Cornish-Fisher expansion around the normal's 1.960 (within 0.001 of the exact value)."""
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
