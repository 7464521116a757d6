"""The benchmarks' runs resume after an interruption, and only for the same commit and CPU."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _runs  # noqa: E402  (benchmarks/_runs.py: each run in a fresh process)

# A stand-in benchmark: each run appends its name to a log, and fails for the name "broken".
SCRIPT = """
import json, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(sys.argv[0] + ".log", "a") as log:
    log.write(args["--one"] + "\\n")
if args["--one"] == "broken":
    sys.exit(1)
open(args["--out"], "w").write(json.dumps({"name": args["--one"], "seed": int(args["--seeds"])}))
"""


@pytest.fixture
def script(tmp_path, monkeypatch):
    monkeypatch.setattr(_runs, "KEPT_RUNS", tmp_path / "kept")
    path = tmp_path / "bench.py"
    path.write_text(SCRIPT)
    return path


def runs_made(script) -> list[str]:
    log = Path(str(script) + ".log")
    return log.read_text().split() if log.exists() else []


def run(script, names, commit="abc123", dirty=False):
    measured = {"commit": commit, "dirty": dirty, "changed": []}
    return _runs.in_fresh_processes(str(script), names, [0, 1], "bench", measured, str)


def test_a_rerun_keeps_the_finished_runs_and_makes_the_rest(script):
    with pytest.raises(subprocess.CalledProcessError):
        run(script, ["a", "broken"])  # interrupted at its second run
    assert runs_made(script) == ["a", "broken"]
    results = run(script, ["a", "b"])
    assert runs_made(script) == ["a", "broken", "b", "a", "b"]  # seed 0 of "a" was kept
    assert results == [[{"name": n, "seed": s} for s in (0, 1)] for n in ("a", "b")]
    assert not list((_runs.KEPT_RUNS).rglob("*.partial"))  # the failed run left no result


@pytest.mark.parametrize("other", [{"commit": "def456"}, {"dirty": True}])
def test_runs_are_kept_only_for_the_same_clean_commit(script, other):
    run(script, ["a"])
    run(script, ["a"], **other)
    assert runs_made(script) == ["a"] * 4
