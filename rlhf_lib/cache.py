"""The stage cache: trained models and generated data that later chapters reuse.

Introduced in the book's introduction. Each expensive step of the pipeline (pretraining the base
model, SFT, the reward model, ...) is a *stage*. A stage's result is a folder named
``<stage>-<key>`` inside the cache root, where ``key`` hashes the stage's config, the library
version and the code the stage depends on (the module that defines its build function and the
``rlhf_lib`` modules that module imports), so a changed config or changed code never reuses a
stale result, and editing unrelated code (or a comment, or a docstring) retrains nothing. A chapter
opened alone trains what it needs; one opened after its predecessors reuses their stages.

- The root is ``$RLHF_BOOK_CACHE`` if set, else ``~/.cache/rlhf_book``.
- Deleting the root (or one stage folder) is always safe: stages are rebuilt on demand.
  ``python -m rlhf_lib.cache list`` shows what is cached, ``... clear [STAGE]`` deletes it.
- Stages are written atomically: the build writes into a temporary sibling folder
  ``.<stage>-<key>.tmp-<pid>-<random>`` that is renamed into place only after the build finished
  and its manifest was written, so an interrupted run never leaves a stage that reads as complete.
- The manifest ``stage.json`` lists every file of the stage with its size and sha256. A stage is
  reused only if its files still match: sizes on every reuse, hashes once per process. A file cut
  short by a full disk, a flipped bit, or a ``save_pretrained()`` into the stage folder leads to a
  rebuild with a one-line reason, not to a confusing error three cells later.
- One process at a time builds a stage (a lock file ``.<stage>-<key>.lock`` next to it); another
  process that needs the same stage waits, then reuses it instead of training it again.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import fnmatch
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock

CACHE_ENV = "RLHF_BOOK_CACHE"
MANIFEST = "stage.json"  # written last, with the list of files: without it a folder is unfinished

# A stage folder's scratch siblings: ".<stage>-<key>.tmp-<pid>-<hex>" is a build in progress,
# ".<stage>-<key>.damaged-<pid>-<hex>" a damaged stage being deleted. The pid says whose it is.
_SCRATCH = re.compile(r"\.(?P<final>[^-]+-[0-9a-f]{16})\.(?:tmp|damaged)-(?P<pid>\d+)-[0-9a-f]+")
_STAGE_FOLDER = re.compile(r"[^-.]+-[0-9a-f]{16}")


class CacheNotWritableError(RuntimeError):
    """The cache root cannot be created or written."""


class StageDamagedError(RuntimeError):
    """A cached stage's files are damaged or cannot be loaded, and it was not rebuilt.

    Its ``folder`` attribute is the stage folder; deleting it lets the next run rebuild it.
    """

    folder: Path


def _damaged(folder: Path, what_happened: str, *, read_only_root: Path | None = None):
    """A ``StageDamagedError`` whose message names the folder and the commands that clear it."""
    stage = folder.name.split("-", 1)[0]
    fix = (
        f"Delete it and run again to rebuild it:\n"
        f"    rm -rf {shlex.quote(str(folder))}\n"
        f"or clear every version of this stage:  python -m rlhf_lib.cache clear {stage}"
    )
    if read_only_root is not None:
        fix += (
            f"\nIf you cannot write {read_only_root}, point the cache at a writable folder instead:"
            f"\n    export {CACHE_ENV}=/tmp/rlhf_book_cache"
        )
    error = StageDamagedError(f"The cached stage {folder} {what_happened}. {fix}")
    error.folder = folder
    return error


def cache_root() -> Path:
    """The folder that holds every stage (``$RLHF_BOOK_CACHE`` or ``~/.cache/rlhf_book``)."""
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "rlhf_book"
    return root.resolve()


def _ensure_writable(root: Path) -> None:
    probe = root / f".write-probe-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise CacheNotWritableError(
            f"The stage cache folder {root} cannot be written ({err.strerror or err}). "
            f"Point the cache at a writable folder and run again, for example:\n"
            f"    export {CACHE_ENV}=/tmp/rlhf_book_cache\n"
            f"(in a notebook: import os; os.environ['{CACHE_ENV}'] = '/tmp/rlhf_book_cache')"
        ) from None


# --- The key: a stage's config and the code it runs -------------------------------------------

PACKAGE_DIR = Path(__file__).parent


def _module_file(name: str) -> Path:
    """The source file of an ``rlhf_lib`` module name (``rlhf_lib`` itself is ``__init__.py``)."""
    parts = name.split(".")[1:]
    return PACKAGE_DIR.joinpath(*parts).with_suffix(".py") if parts else PACKAGE_DIR / "__init__.py"


def module_dependencies(module: str) -> set[str]:
    """``module`` and every ``rlhf_lib`` module it imports, directly or through others.

    Imports inside functions count too. The package itself (``__init__.py``, which holds the
    version) counts when something imports from it, but its own imports are not followed: it only
    re-exports the page helpers of ``rlhf_lib.notebook``, which no stage's result depends on.
    """
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        if name == "rlhf_lib":
            continue
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("rlhf_lib")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rlhf_lib"):
                todo.append(node.module)
                todo += [f"{node.module}.{alias.name}" for alias in node.names]  # submodules
    return seen


class _DropDocstrings(ast.NodeTransformer):
    """Removes statements that are only a string: docstrings, and strings used as comments."""

    def visit_Expr(self, node: ast.Expr) -> ast.Expr | None:
        text = isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        return None if text else node


def _code_of(path: Path) -> str:
    """What a module does, without what only explains it (docstrings, comments, layout)."""
    tree = _DropDocstrings().visit(ast.parse(path.read_bytes(), filename=str(path)))
    return ast.dump(tree, include_attributes=False)  # no line numbers; comments never reach a tree


@functools.cache
def library_fingerprint(module: str | None = None) -> str:
    """A hash of the library's version and the code a stage depends on.

    With ``module`` (the module that defines a stage's build function), only that module and the
    ``rlhf_lib`` modules it imports count, so editing the PPO code does not retrain the base
    model. Without it (a build function defined in a notebook), every library file counts. Each
    file counts by its syntax tree without docstrings, so editing a comment, a docstring or the
    layout keeps every stage, and editing code rebuilds the stages that run it.
    """
    from rlhf_lib import __version__

    if module is None or not module.startswith("rlhf_lib"):
        paths = sorted(PACKAGE_DIR.rglob("*.py"))
    else:
        paths = sorted(_module_file(name) for name in module_dependencies(module))
    digest = hashlib.sha256(__version__.encode())
    for path in paths:
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(_code_of(path).encode())
    return digest.hexdigest()[:16]


def _plain_config(config) -> dict:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(
            f"A stage config must be a dict or a dataclass instance, got {type(config).__name__}."
        )
    _check_string_keys(config, "config")
    try:
        json.dumps(config, sort_keys=True)
    except TypeError as err:
        raise TypeError(
            f"A stage config must hold only JSON values (numbers, strings, lists, dicts): {err}. "
            "Convert paths with str() and tensors with .tolist() before caching."
        ) from None
    return config


def _check_string_keys(value, where: str) -> None:
    """JSON writes the key 1 as "1": ``{1: ...}`` and ``{"1": ...}`` would name one stage."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"A stage config's dict keys must be strings, got {key!r} in {where}: JSON "
                    "writes every key as a string, so {1: ...} and {'1': ...} would share a "
                    "stage. Use str keys."
                )
            _check_string_keys(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_string_keys(item, f"{where}[{i}]")


def stage_key(name: str, config, module: str | None = None) -> str:
    """The hash that names a stage's folder: its name, config and the code it depends on."""
    payload = json.dumps(
        {"stage": name, "config": _plain_config(config), "library": library_fingerprint(module)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def stage_path(name: str, config, module: str | None = None) -> Path:
    """Where the stage ``name`` with ``config`` lives (finished or not)."""
    if not isinstance(name, str):
        raise TypeError(f"A stage name must be a string, got {type(name).__name__} {name!r}.")
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"A stage name must be letters, digits or '_' (no '-'); got {name!r}.")
    return cache_root() / f"{name}-{stage_key(name, config, module)}"


# --- The manifest: which files a finished stage holds ------------------------------------------


def _stage_files(folder: Path) -> dict[str, Path]:
    """Every file in a stage folder (the manifest excepted), by its path relative to the folder."""
    files = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            files[path.relative_to(folder).as_posix()] = path
    files.pop(MANIFEST, None)
    return files


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


# Files whose sha256 matched their manifest in this process, by (path, size, mtime, ctime, inode):
# rewriting a file changes one of these, so a stage reused ten times in one kernel is read once.
_VERIFIED: set[tuple] = set()


def _hash_matches(path: Path, expected: str) -> bool:
    stat = path.stat()  # before reading: a write during the read then changes the key
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, expected)
    if key not in _VERIFIED:
        if _sha256(path) != expected:
            return False
        _VERIFIED.add(key)
    return True


def _tolerated_extra(relative: str, listed: dict) -> bool:
    """A file that may appear in a stage after its build without damaging it.

    ``datasets`` writes ``cache-<hash>.arrow`` files next to the data of a dataset loaded from a
    stage when it is ``.map()``-ed (a reward trainer tokenizing the preference pairs does); they
    are results of later work, not changes to the stage's own files.
    """
    folder, _, name = relative.rpartition("/")
    beside_data = any(f.rpartition("/")[0] == folder and f.endswith(".arrow") for f in listed)
    return fnmatch.fnmatch(name, "cache-*.arrow") and beside_data


def _read_manifest(folder: Path) -> tuple[dict | None, str | None]:
    """A stage's manifest, or None and why it cannot be used."""
    try:
        text = (folder / MANIFEST).read_text()
    except FileNotFoundError:
        return None, f"{MANIFEST} is missing: its build was interrupted or it was made by hand"
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{MANIFEST} cannot be read: {err}"
    if not text.strip():
        return None, f"{MANIFEST} is empty"
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"{MANIFEST} is not valid JSON: {err}"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return None, f"{MANIFEST} lists no files: it was written by an older rlhf_lib"
    for relative, entry in files.items():
        entry = entry if isinstance(entry, dict) else {}
        if not (isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)):
            return None, f"{MANIFEST} has a malformed entry for {relative}"
    return manifest, None


def _inspect(folder: Path, check_hashes: bool) -> tuple[dict | None, str | None]:
    """A stage's manifest if its files match it, else None and the first difference found."""
    if not folder.is_dir():
        return None, "it is not a folder" if folder.exists() else "the folder does not exist"
    manifest, problem = _read_manifest(folder)
    if problem:
        return None, problem
    listed = manifest["files"]
    try:
        present = _stage_files(folder)
        for relative, entry in sorted(listed.items()):  # sizes first: cheap, and catch most damage
            if relative not in present:
                return None, f"{relative}: missing"
            size = present[relative].stat().st_size
            if size != entry["size"]:
                return None, f"{relative}: {size} bytes, expected {entry['size']}"
        unlisted = sorted(present.keys() - listed.keys())
        extra = [relative for relative in unlisted if not _tolerated_extra(relative, listed)]
        if extra:
            more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
            return None, f"{extra[0]}{more}: not part of the stage, added after its build"
        if check_hashes:
            for relative, entry in sorted(listed.items()):
                if not _hash_matches(present[relative], entry["sha256"]):
                    return None, f"{relative}: sha256 differs"
    except OSError as err:  # a file removed or made unreadable while we looked
        return None, f"a file cannot be read: {err}"
    return manifest, None


def stage_problem(path: Path, *, check_hashes: bool = True) -> str | None:
    """Why ``path`` is not a finished, intact stage (a short reason), or None if it is.

    Its manifest must be readable and list its files; each listed file must exist with its
    recorded size and (unless ``check_hashes=False``) sha256, and no other file may have appeared.
    A file's hash is checked once per process while its size and modification time stay the same.
    """
    return _inspect(Path(path), check_hashes)[1]


def is_complete(path: Path) -> bool:
    """True if ``path`` is a finished stage whose files are intact (see :func:`stage_problem`)."""
    return stage_problem(path) is None


# --- Building: one builder per stage, atomic rename, leftovers of dead builds removed ----------


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)  # a leftover that resists is retried next time
    else:
        path.unlink(missing_ok=True)


def _owner_alive(pid: int) -> bool:
    """Whether the process ``pid`` may still be running (when unsure: yes)."""
    if os.name == "nt":  # there os.kill(pid, 0) would send Ctrl-C, not ask
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a pid at all
        return True
    return True


def _remove_dead_scratch(root: Path, stage: str | None = None) -> int:
    """Delete the scratch folders (of ``stage``, or of all stages) whose process has died."""
    removed = 0
    for path in root.iterdir():
        scratch = _SCRATCH.fullmatch(path.name)
        if not scratch or (stage is not None and scratch["final"].split("-")[0] != stage):
            continue
        if not _owner_alive(int(scratch["pid"])):
            _remove(path)
            removed += 1
    return removed


@contextlib.contextmanager
def _build_lock(final: Path, verbose: bool) -> Iterator[None]:
    """Hold the lock that lets one process at a time build (or replace) the stage ``final``."""
    lock = filelock.FileLock(final.parent / f".{final.name}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if verbose:
            print(f"[cache] waiting for another process that is building {final.name}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _set_aside(final: Path, problem: str) -> None:
    """Delete a damaged stage: renamed first, so a crash mid-delete leaves only a scratch folder."""
    aside = final.parent / f".{final.name}.damaged-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(final, aside)
    except OSError as err:
        what = f"is damaged ({problem}) and could not be moved aside ({err})"
        raise _damaged(final, what) from err
    _remove(aside)


# The stages this process is building, by (folder, thread): a build that asks for its own stage.
_BUILDING: set[tuple[Path, int]] = set()


def _check_built(folder: Path, name: str) -> None:
    """What a build left is a stage: its folder, real files, and no manifest of its own."""
    if not folder.is_dir():
        raise RuntimeError(
            f"The build of stage {name!r} removed or replaced its folder {folder}: it must write "
            "its files into the (empty) folder it is given."
        )
    if (folder / MANIFEST).exists():
        raise ValueError(
            f"The build of stage {name!r} wrote a file named {MANIFEST} at the top of its folder; "
            "that name is reserved for the cache's manifest. Give it another name, e.g. "
            "metadata.json."
        )
    for parent, folders, files in os.walk(folder):  # a linked folder is listed, not entered
        for entry in (*folders, *files):
            path = Path(parent, entry)
            if path.is_symlink():
                raise ValueError(
                    f"The build of stage {name!r} made a symbolic link "
                    f"{path.relative_to(folder).as_posix()}: a stage must hold its own files (a "
                    "link can dangle once the folder is renamed, and what it points to is never "
                    "checked). Copy the file or folder instead (shutil.copy, shutil.copytree)."
                )


@contextlib.contextmanager
def reproducible_build() -> Iterator[None]:
    """What a stage build runs in, so it builds the same weights whoever calls it, wherever:

    - its own random stream, seeded with 0 (``torch.random.fork_rng``): a new layer's starting
      weights never depend on what the caller's process drew before;
    - one torch thread: the order of a sum's parts, hence its last bits, depends on the thread
      count (measured: the base model's gradient norm differed from step 0 at 2 threads);
    - torch's deterministic kernels, where an operation has one (one without one warns).

    The caller's random state, thread count and deterministic setting are restored after."""
    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def cached_stage(name: str, config, build: Callable[[Path], None], *, verbose: bool = True) -> Path:
    """Return the folder of a finished stage, building it first if needed.

    ``build(folder)`` receives an empty temporary folder and writes the stage's files into it
    (``model.save_pretrained(folder)``, ``dataset.save_to_disk(folder / "pairs")``, ...). It runs
    only when no intact finished stage with the same name, config and library code exists; a
    damaged one is rebuilt, saying why. If the cache cannot be written, a damaged stage raises
    :class:`StageDamagedError` instead. While one process builds a stage, others that ask for it
    wait and then reuse it. ``verbose=False`` silences the one-line reports.

    The build must leave real files in its folder (no symbolic links: they can dangle after the
    rename, and what they point to is not checked) and no file named ``stage.json`` at the top,
    the manifest's name.
    """
    if not callable(build):
        raise TypeError(f"build must be a function build(folder), got {type(build).__name__}.")
    module = getattr(build, "__module__", None)
    # a copy: a build that changes its config must not change the manifest, or the next key
    config = copy.deepcopy(_plain_config(config))
    final = stage_path(name, config, module)
    problem = stage_problem(final)
    if problem is None:
        if verbose:
            print(f"[cache] reusing stage {final.name}")
        return final
    root = final.parent
    try:
        _ensure_writable(root)
    except CacheNotWritableError as err:
        if not final.exists():
            raise
        what = f"is damaged ({problem}) and cannot be rebuilt here: {root} is read-only"
        raise _damaged(final, what, read_only_root=root) from err

    building = (final, threading.get_ident())
    if building in _BUILDING:
        raise RuntimeError(
            f"The build of stage {name!r} asked for the same stage ({final.name}) while building "
            "it: a build function must not call its own stage, or it would never finish."
        )
    with _build_lock(final, verbose):
        _remove_dead_scratch(root)
        problem = stage_problem(final)  # again: another process may have built it while we waited
        if problem is None:
            if verbose:
                print(f"[cache] reusing stage {final.name} (built by another process)")
            return final
        if final.exists() or final.is_symlink():
            if verbose:
                print(f"[cache] stage {final.name} is damaged ({problem}); rebuilding")
            _set_aside(final, problem)

        tmp = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        started = time.perf_counter()
        _BUILDING.add(building)
        try:
            with reproducible_build():
                build(tmp)
            _check_built(tmp, name)
            manifest = {
                "stage": name,
                "config": config,
                "library_fingerprint": library_fingerprint(module),
                "build_seconds": round(time.perf_counter() - started, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {
                    relative: {"size": path.stat().st_size, "sha256": _sha256(path)}
                    for relative, path in sorted(_stage_files(tmp).items())
                },
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            # No fsync: if a crash loses bytes written before this rename, the hashes catch it.
            os.rename(tmp, final)  # atomic on one file system; only the lock holder writes final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            _BUILDING.discard(building)
    if verbose:
        print(f"[cache] built stage {final.name} in {time.perf_counter() - started:.1f} s")
    return final


# --- Loading a stage -----------------------------------------------------------------------------

# Errors that reading a damaged or incompatible file raises; json's JSONDecodeError, pyarrow's
# ArrowInvalid and numpy's format errors are ValueErrors. safetensors' SafetensorError is matched
# by name, so this module need not import safetensors.
_LOAD_ERRORS = (OSError, ValueError, EOFError)


def _stage_folder(path: Path) -> Path:
    """The stage folder that holds ``path`` (itself, or the nearest parent named like a stage)."""
    for folder in (path, *path.parents):
        if _STAGE_FOLDER.fullmatch(folder.name):
            return folder
    return path


@contextlib.contextmanager
def loading_stage(path: Path) -> Iterator[Path]:
    """Report an error raised while loading a stage's files as a :class:`StageDamagedError`.

    ::

        with cache.loading_stage(folder):
            model = AutoModelForCausalLM.from_pretrained(folder)

    ``path`` is a stage folder or a path inside one. If its files no longer match its manifest,
    any error becomes a ``StageDamagedError`` naming the folder, the difference found and how to
    clear it (chained ``from`` the original error). If they do match, a reading error (``OSError``,
    ``ValueError``, ``SafetensorError``, ...) still does: the files may come from another version of
    a library, and rebuilding fixes that. Other errors (a bug in the loading code, a missing
    package, a file the stage never had) and ``KeyboardInterrupt`` pass through unchanged, and so
    does any error for a folder that is not a stage of the cache (the reader's own data).
    """
    path = Path(path)
    try:
        yield path
    except Exception as err:
        folder = _stage_folder(path)
        if not _STAGE_FOLDER.fullmatch(folder.name) or folder.parent.resolve() != cache_root():
            raise  # not a stage: never call the reader's own folder damaged, nor advise deleting it
        problem = stage_problem(folder)
        failure = f"{type(err).__name__}: {err}"
        if problem is not None:
            what = f"is damaged ({problem}), so loading it failed ({failure})"
            raise _damaged(folder, what) from err
        if not (isinstance(err, _LOAD_ERRORS) or type(err).__name__ == "SafetensorError"):
            raise
        if isinstance(err, FileNotFoundError):  # every file the stage listed is there: a typo
            raise
        what = (
            f"cannot be loaded ({failure}), although its files are as they were built: they may "
            "come from another version of a library"
        )
        raise _damaged(folder, what) from err


# --- Listing and clearing -------------------------------------------------------------------------


def list_stages(*, include_damaged: bool = False) -> list[dict]:
    """The finished stages in the cache: their manifests, each with a ``path`` key.

    Listing checks manifests and file sizes, not hashes (that would read the whole cache). With
    ``include_damaged=True`` the folders that are not usable stages are listed too, as
    ``{"stage": ..., "path": ..., "damaged": reason}``.
    """
    root = cache_root()
    if not root.is_dir():
        return []
    stages = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue  # lock files, scratch folders of builds
        manifest, problem = _inspect(path, check_hashes=False)
        if manifest is not None:
            stages.append(manifest | {"path": str(path)})
        elif include_damaged:
            stages.append({"stage": path.name.split("-")[0], "path": str(path), "damaged": problem})
    return stages


def clear_cache(name: str | None = None) -> int:
    """Delete every stage (or every stage called ``name``) and the leftovers of builds that died.

    Returns how many folders were deleted. Only folders named like a stage (``<stage>-<16 hex
    digits>``) are: anything else in the root stays, and a stage that is a symbolic link is
    unlinked, never followed. The temporary folder of a build still running is kept, and so are
    the empty ``.lock`` files: deleting one that a process waits on would let a second builder in.
    """
    root = cache_root()
    if not root.is_dir():
        return 0
    removed = _remove_dead_scratch(root, name)
    for path in root.iterdir():
        if not _STAGE_FOLDER.fullmatch(path.name):
            continue  # lock files, scratch folders of builds, and whatever else is not a stage
        if name is not None and path.name.split("-", 1)[0] != name:
            continue
        if path.is_symlink():
            path.unlink()  # a stage moved elsewhere and linked back: its target is not ours
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            continue
        removed += 1
    return removed


if __name__ == "__main__":  # python -m rlhf_lib.cache [list | clear [STAGE]]
    import sys

    command, *args = sys.argv[1:] or ["list"]
    if command == "clear" and len(args) <= 1:
        print(f"removed {clear_cache(*args)} folders from {cache_root()}")
    elif command == "list" and not args:
        print(f"cache root: {cache_root()}")
        for stage in list_stages(include_damaged=True):
            folder = Path(stage["path"]).name
            if "damaged" in stage:
                print(f"  {folder}  DAMAGED ({stage['damaged']})")
                continue
            megabytes = sum(file["size"] for file in stage["files"].values()) / 1e6
            seconds, created = stage.get("build_seconds", "?"), stage.get("created", "?")
            print(f"  {folder}  ({megabytes:.1f} MB, built in {seconds} s, {created})")
    else:
        sys.exit("usage: python -m rlhf_lib.cache [list | clear [STAGE]]")
