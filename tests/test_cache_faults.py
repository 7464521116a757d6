"""The stage cache under faults: damaged files, broken manifests, read-only caches, concurrent and
killed builders, and errors while loading a stage (issue 12)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rlhf_lib import cache

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = np.arange(64, dtype=np.float32)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    cache._VERIFIED.clear()  # each test starts like a fresh kernel
    return tmp_path / "cache"


def build_tiny(folder):
    """A stage shaped like a saved model: a real safetensors file, a config, a nested file."""
    save_file({"w": WEIGHTS}, folder / "weights.safetensors")
    (folder / "config.json").write_text(json.dumps({"hidden": 8}))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("a\nb\nc\n")


def assert_intact(path):
    assert cache.stage_problem(path) is None
    assert np.array_equal(load_file(path / "weights.safetensors")["w"], WEIGHTS)
    assert json.loads((path / "config.json").read_text()) == {"hidden": 8}


@pytest.fixture
def tiny_stage(capsys):
    """A built stage and the list of builds run so far (one)."""
    builds = []

    def build(folder):
        builds.append(folder)
        build_tiny(folder)

    path = cache.cached_stage("tiny", {"size": 64}, build)
    capsys.readouterr()
    return path, builds, build


def flip_middle_byte(file):
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(data)


def truncate(file, size):
    os.truncate(file, size)


FAULTS = {  # what goes wrong -> (how, the reason printed)
    "truncated": (lambda p: truncate(p / "weights.safetensors", 100), "weights.safetensors: 100 "),
    "zero-byte": (lambda p: truncate(p / "weights.safetensors", 0), "weights.safetensors: 0 bytes"),
    "flipped-byte": (
        lambda p: flip_middle_byte(p / "weights.safetensors"),
        "weights.safetensors: sha256 differs",
    ),
    "deleted": (lambda p: (p / "config.json").unlink(), "config.json: missing"),
    "nested-truncated": (
        lambda p: truncate(p / "tokenizer" / "vocab.txt", 2),
        "tokenizer/vocab.txt: 2 bytes",
    ),
    "extra-file": (  # what model.save_pretrained(stage_folder) adds
        lambda p: (p / "model.safetensors").write_bytes(b"\0" * 10),
        "model.safetensors: not part of the stage",
    ),
    "overwritten": (  # ... and what it overwrites
        lambda p: (p / "config.json").write_text(json.dumps({"hidden": 9})),
        "config.json: sha256 differs",
    ),
    "empty-manifest": (lambda p: (p / cache.MANIFEST).write_text(""), "stage.json is empty"),
    "invalid-manifest": (
        lambda p: (p / cache.MANIFEST).write_text('{"stage": "tiny",'),
        "stage.json is not valid JSON",
    ),
    "old-manifest": (  # what the cache wrote before manifests listed files
        lambda p: (p / cache.MANIFEST).write_text(json.dumps({"stage": "tiny", "config": {}})),
        "stage.json lists no files",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_damaged_stage_is_rebuilt_saying_why(tiny_stage, capsys, fault):
    path, builds, build = tiny_stage
    damage, reason = FAULTS[fault]
    damage(path)
    assert not cache.is_complete(path)

    rebuilt = cache.cached_stage("tiny", {"size": 64}, build)
    lines = capsys.readouterr().out.splitlines()
    assert rebuilt == path and len(builds) == 2
    damaged = [line for line in lines if "damaged" in line]
    assert len(damaged) == 1, lines
    assert damaged[0].startswith(f"[cache] stage {path.name} is damaged ({reason}")
    assert damaged[0].endswith("; rebuilding")
    assert_intact(rebuilt)
    assert [p.name for p in path.parent.glob(".*") if p.suffix != ".lock"] == []  # no leftovers


def test_an_intact_stage_is_hashed_once_per_process(tiny_stage, monkeypatch):
    path, builds, build = tiny_stage
    hashed = []
    real_sha256 = cache._sha256
    monkeypatch.setattr(cache, "_sha256", lambda file: hashed.append(file) or real_sha256(file))

    for _ in range(3):
        assert cache.cached_stage("tiny", {"size": 64}, build, verbose=False) == path
    assert len(builds) == 1 and len(hashed) == 3  # three files, each hashed on the first reuse

    # Rewritten later with the same size: its new modification time makes it hashed again.
    config = path / "config.json"
    stat = config.stat()
    config.write_text(json.dumps({"hidden": 9}))
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.stage_problem(path) == "config.json: sha256 differs"


def test_files_written_by_datasets_map_do_not_damage_a_stage(private_cache):
    def build(folder):  # the layout of DatasetDict.save_to_disk(folder / "pairs")
        split = folder / "pairs" / "train"
        split.mkdir(parents=True)
        (split / "data-00000-of-00001.arrow").write_bytes(b"arrow")
        (split / "state.json").write_text("{}")

    path = cache.cached_stage("pairs", {}, build, verbose=False)
    (path / "pairs" / "train" / "cache-5680148bf82c2601.arrow").write_bytes(b"mapped")
    assert cache.stage_problem(path) is None
    (path / "pairs" / "cache-0000000000000000.arrow").write_bytes(b"not beside any data")
    assert "not part of the stage" in cache.stage_problem(path)


@pytest.mark.parametrize("fault", ["empty-manifest", "invalid-manifest", "old-manifest"])
def test_listing_copes_with_broken_manifests(tiny_stage, fault):
    path, _, _ = tiny_stage
    cache.cached_stage("other", {}, build_tiny, verbose=False)
    FAULTS[fault][0](path)

    assert {stage["stage"] for stage in cache.list_stages()} == {"other"}
    damaged = [s for s in cache.list_stages(include_damaged=True) if "damaged" in s]
    assert [(s["stage"], s["path"]) for s in damaged] == [("tiny", str(path))]
    listing = subprocess.run(
        [sys.executable, "-m", "rlhf_lib.cache", "list"],
        capture_output=True, text=True, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert f"{path.name}  DAMAGED ({FAULTS[fault][1]}" in listing.stdout
    assert "other-" in listing.stdout


def damaged_in_a_read_only_cache(path, build):
    truncate(path / "weights.safetensors", 100)
    with pytest.raises(cache.StageDamagedError) as caught:
        cache.cached_stage("tiny", {"size": 64}, build)
    message = str(caught.value)
    assert caught.value.folder == path
    assert str(path) in message and "weights.safetensors: 100 bytes" in message
    assert f"rm -rf {path}" in message and "python -m rlhf_lib.cache clear tiny" in message
    assert "RLHF_BOOK_CACHE" in message  # somewhere writable, if this cache is not yours
    assert isinstance(caught.value.__cause__, cache.CacheNotWritableError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_a_damaged_stage_in_a_read_only_cache_says_how_to_clear_it(tiny_stage):
    path, builds, build = tiny_stage
    path.parent.chmod(0o500)
    try:
        assert cache.cached_stage("tiny", {"size": 64}, build) == path  # intact: reused
        damaged_in_a_read_only_cache(path, build)
    finally:
        path.parent.chmod(0o700)
    assert len(builds) == 1


def test_a_damaged_stage_in_an_unwritable_cache_says_how_to_clear_it(tiny_stage, monkeypatch):
    # The same as above for every user, root included: the cache says it cannot be written.
    path, builds, build = tiny_stage

    def unwritable(root):
        raise cache.CacheNotWritableError(f"{root} is read-only")

    monkeypatch.setattr(cache, "_ensure_writable", unwritable)
    damaged_in_a_read_only_cache(path, build)
    assert len(builds) == 1 and (path / "weights.safetensors").stat().st_size == 100  # untouched


def test_a_stage_found_intact_under_the_lock_is_kept(tiny_stage, monkeypatch, capsys):
    # Seen damaged before the lock, intact once it is held: another process rebuilt it meanwhile.
    path, builds, build = tiny_stage
    real_problem = cache.stage_problem
    answers = iter(["weights.safetensors: sha256 differs"])
    monkeypatch.setattr(cache, "stage_problem", lambda p: next(answers, None) or real_problem(p))

    assert cache.cached_stage("tiny", {"size": 64}, build) == path
    assert "(built by another process)" in capsys.readouterr().out
    assert len(builds) == 1
    assert_intact(path)


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_dead_builds_are_removed_and_live_ones_kept(tiny_stage, private_cache):
    path, _, build = tiny_stage
    dead = private_cache / f".{path.name}.tmp-{dead_pid()}-0123abcd"
    live = private_cache / f".{path.name}.tmp-{os.getpid()}-0123abcd"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "half.bin").write_bytes(b"half")

    cache.cached_stage("other", {}, build_tiny, verbose=False)  # a build cleans up for everyone
    assert not dead.exists() and live.exists()
    assert cache.clear_cache() == 2  # the two stages; the live build's folder stays
    assert live.exists() and cache.list_stages() == []


# --- Several processes --------------------------------------------------------------------------

# Both build functions claim to live in rlhf_lib.cache, so the stage key depends only on that file:
# a library file edited between two processes starting cannot give them different keys.
WORKER = """
import os, sys, time
from pathlib import Path
from rlhf_lib import cache

shared = Path(sys.argv[1])

def build(folder):
    with open(shared / "builds.txt", "a") as builds:
        builds.write(f"{os.getpid()}\\n")
    time.sleep(float(sys.argv[2]))
    (folder / "result.txt").write_text("built")

build.__module__ = "rlhf_lib.cache"
cache.stage_path("shared", {}, build.__module__)  # the slow part (hashing code) before the race
(shared / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 20
while len(list(shared.glob("ready-*"))) < int(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.01)
print(cache.cached_stage("shared", {}, build))
"""


@pytest.fixture
def start_worker():
    """Start a process running WORKER; any still running when the test ends is killed."""
    started = []

    def start(shared, build_seconds, workers):
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(shared), str(build_seconds), str(workers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
        )  # fmt: skip
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def write_result(folder):
    (folder / "result.txt").write_text("built")


write_result.__module__ = "rlhf_lib.cache"  # the same key as the workers' build


def test_two_processes_build_a_stage_once(tmp_path, start_worker):
    shared = tmp_path / "shared"
    shared.mkdir()
    workers = [start_worker(shared, 1.0, 2) for _ in range(2)]
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]

    paths = {out.splitlines()[-1] for out, _ in outputs}
    assert len((shared / "builds.txt").read_text().splitlines()) == 1  # one build ...
    assert len(paths) == 1  # ... whose folder both got
    printed = "".join(out for out, _ in outputs)
    assert "waiting for another process" in printed and "built by another process" in printed
    assert cache.is_complete(Path(paths.pop()))


def test_a_build_killed_midway_leaves_nothing_in_the_way(tmp_path, private_cache, start_worker):
    shared = tmp_path / "shared"
    shared.mkdir()
    worker = start_worker(shared, 60, 1)
    deadline = time.monotonic() + 30
    while not (shared / "builds.txt").exists():
        assert worker.poll() is None, worker.communicate()[1]
        assert time.monotonic() < deadline, "the worker never started its build"
        time.sleep(0.02)
    leftovers = list(private_cache.glob(f".shared-*.tmp-{worker.pid}-*"))
    assert len(leftovers) == 1  # the build in progress
    worker.send_signal(signal.SIGKILL)
    worker.communicate()  # reaped: a dead child that is not reaped still counts as running

    path = cache.cached_stage("shared", {}, write_result, verbose=False)
    assert (path / "result.txt").read_text() == "built" and cache.is_complete(path)
    assert not leftovers[0].exists()


# --- Loading ------------------------------------------------------------------------------------


def test_loading_a_truncated_file_raises_stage_damaged(tiny_stage):
    path, _, _ = tiny_stage
    truncate(path / "weights.safetensors", 100)
    with pytest.raises(cache.StageDamagedError) as caught:
        with cache.loading_stage(path / "weights.safetensors"):  # a file inside the stage is fine
            load_file(path / "weights.safetensors")
    assert type(caught.value.__cause__).__name__ == "SafetensorError"
    assert caught.value.folder == path
    message = str(caught.value)
    assert f"{path} is damaged (weights.safetensors: 100 bytes" in message
    assert f"rm -rf {path}" in message and "python -m rlhf_lib.cache clear tiny" in message


def test_loading_errors_of_an_intact_stage(tiny_stage):
    path, _, _ = tiny_stage
    with pytest.raises(cache.StageDamagedError, match="its files are as they were built") as caught:
        with cache.loading_stage(path):
            json.loads((path / "tokenizer" / "vocab.txt").read_text())  # read with the wrong reader
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)

    for error in (TypeError("a bug in the loading code"), KeyboardInterrupt()):
        with pytest.raises(type(error)):  # not the stage's fault: passed through unchanged
            with cache.loading_stage(path):
                raise error
    with cache.loading_stage(path) as folder:
        assert folder == path and load_file(folder / "weights.safetensors")["w"].shape == (64,)
