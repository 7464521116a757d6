"""The stage cache: keyed by config and library, atomic, safe to delete, clear when unwritable."""

import os
from dataclasses import dataclass

import pytest

from rlhf_lib import cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_marker(text):
    def build(folder):
        (folder / "result.txt").write_text(text)

    return build


def test_builds_once_then_reuses(private_cache):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "result.txt").write_text("trained")

    first = cache.cached_stage("toy", {"lr": 0.1}, build, verbose=False)
    second = cache.cached_stage("toy", {"lr": 0.1}, build, verbose=False)
    assert first == second and len(calls) == 1
    assert (first / "result.txt").read_text() == "trained"
    assert first.parent == private_cache.resolve()
    assert cache.is_complete(first)


def test_key_changes_with_config_and_library(monkeypatch):
    a = cache.stage_path("toy", {"lr": 0.1})
    assert a != cache.stage_path("toy", {"lr": 0.2})
    assert a != cache.stage_path("other", {"lr": 0.1})
    assert a == cache.stage_path("toy", {"lr": 0.1})
    monkeypatch.setattr(cache, "library_fingerprint", lambda module=None: "a-changed-library")
    assert a != cache.stage_path("toy", {"lr": 0.1})


def test_a_stage_depends_on_the_modules_its_build_imports():
    deps = cache.module_dependencies("rlhf_lib.base_model")
    assert {"rlhf_lib.base_model", "rlhf_lib.cache", "rlhf_lib.reviews"} <= deps
    assert "rlhf_lib.ppo" not in deps  # editing PPO does not retrain the base model
    assert cache.library_fingerprint("rlhf_lib.base_model") != cache.library_fingerprint()
    assert cache.library_fingerprint("rlhf_lib.ppo") != cache.library_fingerprint("rlhf_lib.cache")


def test_dataclass_config_is_accepted():
    @dataclass
    class Config:
        steps: int = 10

    assert cache.stage_path("toy", Config()) == cache.stage_path("toy", {"steps": 10})


def test_interrupted_build_leaves_nothing_that_reads_as_complete(private_cache):
    def crash(folder):
        (folder / "half.bin").write_text("half-written")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached_stage("toy", {"lr": 0.1}, crash, verbose=False)
    assert not cache.is_complete(cache.stage_path("toy", {"lr": 0.1}))
    assert list(private_cache.iterdir()) == []  # the temporary folder was removed too
    path = cache.cached_stage("toy", {"lr": 0.1}, write_marker("ok"), verbose=False)
    assert (path / "result.txt").read_text() == "ok"


def test_folder_without_manifest_is_rebuilt():
    path = cache.stage_path("toy", {"lr": 0.1})
    path.mkdir(parents=True)
    (path / "result.txt").write_text("stale, copied by hand")
    rebuilt = cache.cached_stage("toy", {"lr": 0.1}, write_marker("fresh"), verbose=False)
    assert (rebuilt / "result.txt").read_text() == "fresh"


def test_clear_and_list():
    cache.cached_stage("toy", {"lr": 0.1}, write_marker("a"), verbose=False)
    cache.cached_stage("other", {"lr": 0.1}, write_marker("b"), verbose=False)
    assert {s["stage"] for s in cache.list_stages()} == {"toy", "other"}
    assert cache.clear_cache("toy") == 1
    assert {s["stage"] for s in cache.list_stages()} == {"other"}
    assert cache.clear_cache() == 1 and cache.list_stages() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_root_says_what_to_do(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv(cache.CACHE_ENV, str(locked / "cache"))
    with pytest.raises(cache.CacheNotWritableError, match="export RLHF_BOOK_CACHE="):
        cache.cached_stage("toy", {}, write_marker("x"), verbose=False)


def test_root_that_is_a_file_says_what_to_do(tmp_path, monkeypatch):
    # A file where the folder should be fails for every user, root included.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker))
    with pytest.raises(cache.CacheNotWritableError, match="RLHF_BOOK_CACHE"):
        cache.cached_stage("toy", {}, write_marker("x"), verbose=False)


@pytest.mark.parametrize(
    "name, config, error",
    [
        ("bad name!", {}, ValueError),
        ("has-dash", {}, ValueError),
        ("toy", ["not", "a", "dict"], TypeError),
        ("toy", {"path": object()}, TypeError),
    ],
)
def test_bad_input_is_refused_clearly(name, config, error):
    with pytest.raises(error):
        cache.stage_path(name, config)
