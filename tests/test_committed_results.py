"""Every committed benchmark JSON measured the code that is committed beside it.

Each report records the commit it measured. Between that commit and this checkout, nothing that
decides a measured figure may have changed: the library's code (docstrings, comments and layout
aside, as :func:`rlhf_lib.cache.library_fingerprint` counts it), the pages, the book's
configuration and the pinned requirements. A change to any of them must come with the
benchmarks rerun, so the figures the book and the README quote are the figures of its code.
"""

import json
import subprocess
from pathlib import Path

import pytest

from rlhf_lib import cache

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks/results").glob("*.json"))
MEASURED_FILES = ("book", "_config.yml", "_toc.yml", "requirements.txt")  # compared byte by byte


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def measured_checkout(path: Path) -> dict:
    """The report's record of what it measured: its commit, and whether the tree was dirty."""
    report = json.loads(path.read_text())
    return report.get("git") or report  # binder_memory.json keeps both at its top level


@pytest.fixture(scope="module")
def history():
    if not git("rev-parse", "HEAD"):
        pytest.skip("not a git checkout: no commit to compare the results with")
    if git("rev-parse", "--is-shallow-repository").strip() == "true":
        pytest.skip("a shallow clone lacks the commits the results name; clone without --depth")


def library_code_changes(commit: str, tmp_path: Path) -> list[str]:
    """The library files whose code differs between ``commit`` and the working tree."""
    then = set(git("ls-tree", "-r", "--name-only", commit, "--", "rlhf_lib").split())
    now = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rlhf_lib").rglob("*.py")}
    changed = sorted(f for f in (then ^ now) if f.endswith(".py"))
    for name in sorted(then & now):
        if not name.endswith(".py"):
            continue
        old = tmp_path / name.replace("/", "__")
        old.write_text(git("show", f"{commit}:{name}"))
        if cache._code_of(old) != cache._code_of(ROOT / name):
            changed.append(name)
    return changed


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_the_results_measured_the_code_committed_with_them(history, path, tmp_path):
    measured = measured_checkout(path)
    commit = measured.get("commit")
    assert commit, f"{path.name} does not record the commit it measured."
    assert git("cat-file", "-t", commit).strip() == "commit", (
        f"{path.name} measured commit {commit[:10]}, which is not in this repository's history: "
        "rerun the benchmark on a commit of this branch."
    )
    assert not measured.get("dirty"), (
        f"{path.name} measured a checkout with uncommitted changes: rerun it on a clean tree."
    )
    changed = library_code_changes(commit, tmp_path)
    changed += git("diff", "--name-only", commit, "--", *MEASURED_FILES).split()
    assert not changed, (
        f"{path.name} measured commit {commit[:10]}, and since then these files changed what it "
        f"measures: {', '.join(changed)}. Rerun `python benchmarks/{path.stem}.py` (the Makefile's "
        "benchmark targets) on the new commit and commit its JSON."
    )
