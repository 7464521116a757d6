"""The stage cache: keyed by config and library, atomic, safe to delete, clear when unwritable."""

import json
import os
import textwrap
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


# A small stand-in for the package, to edit freely: `stage` imports `helper` inside a function
# and `__version__` from the package, whose `__init__` re-exports `notebook` (as rlhf_lib's does).
FAKE_LIBRARY = {
    "__init__.py": '''
        """The package."""
        __version__ = "0.1.0"
        from rlhf_lib.notebook import glue
    ''',
    "notebook.py": """
        def glue(name, value):
            return name, value
    """,
    "helper.py": """
        def scale(x):
            return 2 * x
    """,
    "stage.py": '''
        """A stage module."""
        from rlhf_lib import __version__


        class Config:
            """Its config."""

            steps = 10  # enough for a toy


        def build(folder):
            """Write the result."""
            from rlhf_lib.helper import scale  # imported where it is used

            return scale(Config.steps)
    ''',
}


@pytest.fixture
def fake_library(tmp_path, monkeypatch):
    package = tmp_path / "rlhf_lib"
    package.mkdir()
    for name, text in FAKE_LIBRARY.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.setattr(cache, "PACKAGE_DIR", package)
    cache.library_fingerprint.cache_clear()  # it is memoised per process
    yield package
    cache.library_fingerprint.cache_clear()


def fingerprint_after_edit(package, file, old, new):
    path = package / file
    assert old in path.read_text(), f"{old!r} is not in {file}"
    path.write_text(path.read_text().replace(old, new))
    cache.library_fingerprint.cache_clear()
    return cache.library_fingerprint("rlhf_lib.stage")


def test_the_package_init_counts_but_its_imports_do_not(fake_library):
    assert cache.module_dependencies("rlhf_lib.stage") == {
        "rlhf_lib.stage",
        "rlhf_lib.helper",  # imported inside a function
        "rlhf_lib",  # for __version__; its re-export of rlhf_lib.notebook is not followed
    }


@pytest.mark.parametrize(
    "file, old, new",
    [
        ("stage.py", '"""A stage module."""', '"""A stage module, now explained at length."""'),
        ("stage.py", '"""Its config."""', '"""The config of the toy stage."""'),
        ("stage.py", '"""Write the result."""', '"""Write\n\n    the result.\n    """'),
        ("stage.py", "# enough for a toy", "# ten steps: enough for a toy"),
        ("stage.py", "return scale(Config.steps)", "return scale(\n        Config.steps\n    )"),
        ("helper.py", "return 2 * x", "return 2*x  # doubled"),
        ("__init__.py", '"""The package."""', '"""The package, documented."""'),
        ("notebook.py", "return name, value", "return value, name"),  # reached only via __init__
    ],
)
def test_fingerprint_ignores_what_does_not_change_behaviour(fake_library, file, old, new):
    before = cache.library_fingerprint("rlhf_lib.stage")
    assert fingerprint_after_edit(fake_library, file, old, new) == before


@pytest.mark.parametrize(
    "file, old, new",
    [
        ("stage.py", "return scale(Config.steps)", "return scale(Config.steps) + 1"),
        ("stage.py", "steps = 10", "steps = 11"),
        ("helper.py", "return 2 * x", "return 3 * x"),  # a function-local import
        ("__init__.py", '__version__ = "0.1.0"', '__version__ = "0.2.0"'),
    ],
)
def test_fingerprint_follows_code(fake_library, file, old, new):
    before = cache.library_fingerprint("rlhf_lib.stage")
    assert fingerprint_after_edit(fake_library, file, old, new) != before


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
    # The temporary folder was removed too; only the stage's (empty) lock file stays.
    assert [p.suffix for p in private_cache.iterdir()] == [".lock"]
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


STAGE_MODULES = ["base_model", "sft", "preferences", "reward_model", "rlhf_run", "beyond_ppo",
                 "translation", "smollm2"]  # fmt: skip
PRESENTATION = {"notebook", "dashboard", "explorer", "reward_figures", "performance"}


@pytest.mark.parametrize("stage_module", STAGE_MODULES)
def test_no_stage_depends_on_figures_widgets_or_glue(stage_module):
    """Editing a figure, a widget or a page helper never retrains a stage."""
    deps = {name.split(".")[-1] for name in cache.module_dependencies(f"rlhf_lib.{stage_module}")}
    assert stage_module in deps
    assert not deps & PRESENTATION, f"rlhf_lib.{stage_module} imports {deps & PRESENTATION}"


def test_clear_deletes_only_stage_folders_and_never_follows_a_link(private_cache, tmp_path):
    stage = cache.cached_stage("toy", {"lr": 0.1}, write_marker("a"), verbose=False)
    (private_cache / "my_notes").mkdir()  # the reader's own folder next to the stages
    (private_cache / "my_notes" / "important.txt").write_text("keep me")
    moved = cache.cached_stage("moved", {}, write_marker("b"), verbose=False)
    elsewhere = tmp_path / "bigger_disk" / moved.name
    elsewhere.parent.mkdir()
    moved.rename(elsewhere)
    moved.symlink_to(elsewhere)  # a stage moved to another disk and linked back

    assert cache.clear_cache() == 2
    assert not stage.exists() and not moved.is_symlink()
    assert (private_cache / "my_notes" / "important.txt").read_text() == "keep me"
    assert (elsewhere / "result.txt").read_text() == "b"  # the link's target is not ours


def test_manifest_records_the_config_that_named_the_folder():
    config = {"sizes": [1]}

    def build(folder):
        config["sizes"].append(2)  # a build that changes its own config
        (folder / "result.txt").write_text("x")

    path = cache.cached_stage("mutating", config, build, verbose=False)
    manifest = json.loads((path / cache.MANIFEST).read_text())
    assert manifest["config"] == {"sizes": [1]}
    assert path == cache.stage_path("mutating", {"sizes": [1]}, build.__module__)
