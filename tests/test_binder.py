"""Binder can build the book's image: the Python it runs and the packages it installs fit together.

When ``binder/`` exists, repo2docker reads only that folder (not the root ``pyproject.toml``) and,
with no Python pinned, picks its default Python 3.10; trl 1.16 needs 3.11, so the install fails.
``binder/runtime.txt`` pins 3.11. The resolution tests ask pip, against PyPI, whether
``binder/requirements.txt`` installs on 3.11 (it must) and on 3.10 (it must not: that is the bug
the pin fixes). They are skipped when PyPI cannot be reached.
"""

import importlib.metadata
import json
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def binder_python() -> str:
    """The Python version pinned in binder/runtime.txt (``python-3.11`` -> ``3.11``)."""
    match = re.fullmatch(r"python-(\d+\.\d+)", (BINDER / "runtime.txt").read_text().strip())
    assert match, "binder/runtime.txt must read python-X.Y"
    return match.group(1)


def binder_pin(name: str) -> str:
    """The exact version binder/requirements.txt pins for a package."""
    text = (BINDER / "requirements.txt").read_text()
    match = re.search(rf"^{name}==(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    assert match, f"{name} is not pinned with == in binder/requirements.txt"
    return match.group(1)


def test_runtime_pins_a_python_that_the_book_and_trl_accept():
    python = binder_python()
    assert python == "3.11"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert python in SpecifierSet(pyproject["project"]["requires-python"])
    # trl's own Requires-Python, read from the installed trl (requirements.txt pins the same version
    # as binder/requirements.txt; tests/test_book_files.py checks that they agree).
    trl = importlib.metadata.distribution("trl")
    assert trl.version == binder_pin("trl")
    assert python in SpecifierSet(trl.metadata["Requires-Python"])
    assert "3.10" not in SpecifierSet(trl.metadata["Requires-Python"])  # why the pin is needed


# --- Resolving binder/requirements.txt against PyPI ---------------------------------------------


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def offline_requirements(path: Path) -> Path:
    """binder/requirements.txt, rewritten for a machine that reaches PyPI but not PyTorch's index.

    download.pytorch.org is unreachable from the book's build machine, so its --extra-index-url line
    is dropped and ``torch==2.13.0+cpu`` becomes ``torch==2.13.0``: the same version, from PyPI.
    PyPI's Linux wheel of it is the CUDA build, so the resolution also lists nvidia-* packages that
    Binder never installs; they only make the check stricter, never let a broken file through.
    """
    lines = []
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        if line.startswith("--extra-index-url"):
            continue
        lines.append(re.sub(r"^torch==(\S+)\+cpu$", r"torch==\1", line))
    assert "torch==2.13.0" in lines, "binder/requirements.txt no longer pins torch==2.13.0+cpu"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_resolution(requirements: Path, python: str, folder: Path) -> subprocess.Popen:
    """Start pip resolving ``requirements`` for ``python``, installing and downloading nothing.

    Output goes to ``folder/pip-<python>.log``, the report to ``folder/report-<python>.json``.
    --dry-run --report only needs each wheel's metadata. PyPI serves it as a small separate file
    (PEP 658); where an index does not (the PyPI mirror of the build machine), pip would download
    every wheel, about 3 GB here with torch's CUDA packages, so fast-deps reads just the metadata
    out of each wheel with HTTP range requests (tens of MB in all). --isolated ignores local pip
    configuration (such as a find-links folder holding a local torch wheel): the question is PyPI's.
    """
    command = [
        sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
        "--use-feature=fast-deps", "--python-version", python, "--only-binary=:all:",
        "--quiet", "--report", str(folder / f"report-{python}.json"), "-r", str(requirements),
    ]  # fmt: skip
    with (folder / f"pip-{python}.log").open("w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    """``{python: (pip's exit status, pip's output, report path)}`` for 3.11 and 3.10.

    Both run at once: each takes tens of seconds, mostly waiting on the network.
    """
    if not pypi_reachable():
        pytest.skip("pypi.org cannot be reached: resolving binder/requirements.txt needs PyPI")
    folder = tmp_path_factory.mktemp("binder")
    requirements = offline_requirements(folder / "requirements.txt")
    pythons = (binder_python(), "3.10")
    processes = {python: start_resolution(requirements, python, folder) for python in pythons}
    return {
        python: (
            process.wait(timeout=600),
            (folder / f"pip-{python}.log").read_text(),
            folder / f"report-{python}.json",
        )
        for python, process in processes.items()
    }


def test_binder_requirements_resolve_on_the_pinned_python(resolutions):
    status, output, report = resolutions[binder_python()]
    assert status == 0, f"binder/requirements.txt does not resolve on Python 3.11:\n{output}"
    installed = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert installed["trl"] == binder_pin("trl")
    assert installed["torch"] == "2.13.0"


def test_binder_requirements_do_not_resolve_on_python_3_10(resolutions):
    # repo2docker's default Python: without runtime.txt, Binder's build fails like this.
    status, output, _ = resolutions["3.10"]
    assert status != 0, "binder/requirements.txt resolves on 3.10: is runtime.txt still needed?"
    assert f"trl=={binder_pin('trl')}" in output, f"failed for another reason:\n{output}"
