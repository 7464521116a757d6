"""The strict book build fails on a cell error: the promise `make test` makes about every page.

Builds a one-page book with this repository's own _config.yml in a temporary folder.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"

PAGE = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A page with a broken cell

```{code-cell} ipython3
raise ValueError("a reader's cell failed")
```
"""


def test_a_cell_error_fails_the_strict_build(tmp_path):
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(ROOT / "tools", tmp_path / "tools")  # the local Sphinx extension
    for assets in ("book/_static", "book/_extra"):
        shutil.copytree(ROOT / assets, tmp_path / assets)
    (tmp_path / "book" / "references.bib").write_text("")
    (tmp_path / "book" / "broken.md").write_text(PAGE)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/broken\n")
    result = subprocess.run(
        [str(JUPYTER_BOOK), "build", str(tmp_path), "--all", "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "a reader's cell failed" in result.stdout + result.stderr
