"""The stage cache: trained models and generated data that later chapters reuse.

Introduced in the book's introduction. Each expensive step of the pipeline (pretraining the base
model, SFT, the reward model, ...) is a *stage*. A stage's result is a folder named
``<stage>-<key>`` inside the cache root, where ``key`` hashes the stage's config, the library
version and the source code the stage depends on (the module that defines its build function and
the ``rlhf_lib`` modules that module imports), so a changed config or changed code never reuses a
stale result, and editing unrelated code retrains nothing. A chapter opened alone trains what it
needs; one opened after its predecessors reuses their stages.

- The root is ``$RLHF_BOOK_CACHE`` if set, else ``~/.cache/rlhf_book``.
- Deleting the root (or one stage folder) is always safe: stages are rebuilt on demand.
- Stages are written atomically: the build writes into a temporary sibling folder and is renamed
  into place only after it finished and its manifest was written, so an interrupted run never
  leaves a half-written stage that a later run reads as complete.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "RLHF_BOOK_CACHE"
MANIFEST = "stage.json"  # written last: a folder without it is not a finished stage


class CacheNotWritableError(RuntimeError):
    """The cache root cannot be created or written."""


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


PACKAGE_DIR = Path(__file__).parent


def _module_file(name: str) -> Path:
    """The source file of an ``rlhf_lib`` module name (``rlhf_lib`` itself is ``__init__.py``)."""
    parts = name.split(".")[1:]
    return PACKAGE_DIR.joinpath(*parts).with_suffix(".py") if parts else PACKAGE_DIR / "__init__.py"


def module_dependencies(module: str) -> set[str]:
    """``module`` and every ``rlhf_lib`` module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("rlhf_lib")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rlhf_lib"):
                todo.append(node.module)
                todo += [f"{node.module}.{alias.name}" for alias in node.names]  # submodules
    return seen


@functools.cache
def library_fingerprint(module: str | None = None) -> str:
    """A hash of the library's version and the source code a stage depends on.

    With ``module`` (the module that defines a stage's build function), only that module and the
    ``rlhf_lib`` modules it imports count, so editing the PPO code does not retrain the base
    model. Without it (a build function defined in a notebook), every library file counts.
    """
    from rlhf_lib import __version__

    if module is None or not module.startswith("rlhf_lib"):
        paths = sorted(PACKAGE_DIR.rglob("*.py"))
    else:
        paths = sorted(_module_file(name) for name in module_dependencies(module))
    digest = hashlib.sha256(__version__.encode())
    for path in paths:
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _plain_config(config) -> dict:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(
            f"A stage config must be a dict or a dataclass instance, got {type(config).__name__}."
        )
    try:
        json.dumps(config, sort_keys=True)
    except TypeError as err:
        raise TypeError(
            f"A stage config must hold only JSON values (numbers, strings, lists, dicts): {err}. "
            "Convert paths with str() and tensors with .tolist() before caching."
        ) from None
    return config


def stage_key(name: str, config, module: str | None = None) -> str:
    """The hash that names a stage's folder: its name, config and the code it depends on."""
    payload = json.dumps(
        {"stage": name, "config": _plain_config(config), "library": library_fingerprint(module)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def stage_path(name: str, config, module: str | None = None) -> Path:
    """Where the stage ``name`` with ``config`` lives (finished or not)."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"A stage name must be letters, digits or '_' (no '-'); got {name!r}.")
    return cache_root() / f"{name}-{stage_key(name, config, module)}"


def is_complete(path: Path) -> bool:
    """True if ``path`` is a finished stage (its manifest exists)."""
    return (Path(path) / MANIFEST).is_file()


def cached_stage(name: str, config, build: Callable[[Path], None], *, verbose: bool = True) -> Path:
    """Return the folder of a finished stage, building it first if needed.

    ``build(folder)`` receives an empty temporary folder and writes the stage's files into it
    (``model.save_pretrained(folder)``, ``dataset.save_to_disk(folder / "pairs")``, ...). It runs
    only when no finished stage with the same name, config and library exists.
    """
    module = getattr(build, "__module__", None)
    final = stage_path(name, config, module)
    if is_complete(final):
        if verbose:
            print(f"[cache] reusing stage {final.name}")
        return final
    root = final.parent
    _ensure_writable(root)
    if final.exists():  # a folder without a manifest: left by something other than this function
        shutil.rmtree(final)

    tmp = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    started = time.perf_counter()
    try:
        build(tmp)
        manifest = {
            "stage": name,
            "config": _plain_config(config),
            "library_fingerprint": library_fingerprint(module),
            "build_seconds": round(time.perf_counter() - started, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        try:
            os.rename(tmp, final)  # atomic on one file system
        except OSError:
            if not is_complete(final):  # another process finished first: keep its copy
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print(f"[cache] built stage {final.name} in {time.perf_counter() - started:.1f} s")
    return final


def list_stages() -> list[dict]:
    """The finished stages in the cache, with their manifests."""
    root = cache_root()
    if not root.is_dir():
        return []
    return [
        json.loads((path / MANIFEST).read_text()) | {"path": str(path)}
        for path in sorted(root.iterdir())
        if is_complete(path)
    ]


def clear_cache(name: str | None = None) -> int:
    """Delete every stage (or every stage called ``name``) and leftovers of interrupted builds."""
    root = cache_root()
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.iterdir():
        stage_name = path.name.lstrip(".").split("-", 1)[0]
        if path.is_dir() and (name is None or stage_name == name):
            shutil.rmtree(path)
            removed += 1
    return removed


if __name__ == "__main__":  # python -m rlhf_lib.cache [list|clear]
    import sys

    command = sys.argv[1] if len(sys.argv) > 1 else "list"
    if command == "clear":
        print(f"removed {clear_cache()} folders from {cache_root()}")
    elif command == "list":
        print(f"cache root: {cache_root()}")
        for stage in list_stages():
            print(f"  {Path(stage['path']).name}  ({stage['build_seconds']} s, {stage['created']})")
    else:
        sys.exit("usage: python -m rlhf_lib.cache [list|clear]")
