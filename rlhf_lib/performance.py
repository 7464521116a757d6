"""The book's performance page (back matter): the committed benchmark results, read and judged.

Two scripts under ``benchmarks/`` measure the book and write JSON files to ``benchmarks/results/``:

- ``book_execution.json`` (``make benchmark``, that is ``python benchmarks/book_execution.py
  --cold``): the wall time and peak memory of every page, each executed in a fresh kernel, in book
  order, from an empty stage cache;
- ``rl_vs_trl.json`` (``python benchmarks/rl_vs_trl.py``): our PPO against TRL's GRPO, RLOO and DPO
  from the same SFT policy at the same sample budget (chapter 6);
- ``page_weight.json`` (``python benchmarks/page_weight.py``, after ``make book``): the bytes of
  every page of the built website, of its downloadable notebook and of the static files it loads.

Nothing here measures anything: the functions read those files, so a page that shows them states
the numbers of the machine that ran the benchmark, not those of the machine building the website.
Each target of the book is judged "met", "missed" or "not tested"; the last when the measurement
does not match the target's conditions (a warm cache, more than two cores, pages missing, ...).
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import yaml

from rlhf_lib import checks
from rlhf_lib.notebook import OKABE_ITO, white_template

# The book's targets: a class runs the whole book in one sitting on a 2-core laptop, and a Binder
# kernel is killed above 2 GB.
TARGET_TOTAL_SECONDS = 600  # the whole book, from an empty stage cache
TARGET_WARM_SECONDS = 240  # the whole book again, with every stage cached
TARGET_CHAPTER_SECONDS = 180  # any one chapter (a part of _toc.yml), from an empty cache
TARGET_PEAK_MB = 2048  # resident memory of any one kernel, its child processes included
TARGET_CORES = 2  # the execution targets hold on this many usable cores
TARGET_GAIN_PER_CPU_RATIO = 1.5  # our gold gain per CPU-second over TRL's (same algorithm, or best)
TARGET_MAX_KL = 10.0  # nats per review: TRL's rule of thumb for a healthy RLHF run
# What a reader of the website downloads (MB = 2**20 bytes): plotly.js is served once and cached,
# so a page's HTML holds only its own text and figures.
TARGET_PAGE_HTML_MB = 1  # the HTML of any one page
TARGET_NOTEBOOK_MB = 1  # any one downloadable executed notebook (_sources/**.ipynb)
TARGET_SITE_MB = 40  # the whole built website, _build/html
MB = 2**20

PRODUCERS = {  # the command that writes each results file
    "book_execution": "make benchmark  (that is: python benchmarks/book_execution.py --cold)",
    "rl_vs_trl": "python benchmarks/rl_vs_trl.py",
    "frontier": "make benchmark-frontier  (that is: python benchmarks/frontier.py)",
    "page_weight": "make benchmark  (after make book: python benchmarks/page_weight.py)",
    "binder_memory": "make benchmark  (after make book: python benchmarks/binder_memory.py)",
    "value_models": "make benchmark-rl  (that is, second: python benchmarks/value_models.py)",
    "reward_model": "make benchmark-rm  (that is: python benchmarks/reward_model.py)",
}
PAGE_FIELDS = ("page", "wall_seconds", "peak_rss_mb")
WEIGHT_FIELDS = ("page", "html_bytes", "downloads", "first_visit_bytes")
METHOD_FIELDS = (
    "method", "samples", "gold_start", "gold_final", "gold_gain", "proxy_gain", "final_kl",
    "train_wall_seconds", "train_cpu_seconds", "samples_per_second", "gold_gain_per_cpu_second",
    "peak_rss_mb",
)  # fmt: skip
# Each method runs with several seeds; the report keeps them and the spread of the key figures.
SPREAD_FIELDS = ("seeds", "gold_gain_std", "final_kl_std")
BINDER_FIELDS = ("twin", "peak_server_and_kernel_mb", "server_and_idle_kernel_mb")
VALUE_FIELDS = ("candidate", "seeds", "gold_gain", "gold_gain_ci95", "final_kl",
                "train_cpu_seconds", "train_cpu_seconds_ci95", "gold_gain_per_cpu_second",
                "gold_gain_per_cpu_second_ci95", "explained_variance_last_5")  # fmt: skip
# The fields above that hold a measurement: a finite number. A NaN would sort and compare as if
# it were one (a NaN gain is "the largest" to sorted()), and a string fails deep in pandas.
NUMBER_FIELDS = {
    "wall_seconds", "peak_rss_mb", "html_bytes", "first_visit_bytes", "samples", "gold_start",
    "gold_final", "gold_gain", "proxy_gain", "final_kl", "train_wall_seconds",
    "train_cpu_seconds", "samples_per_second", "gold_gain_per_cpu_second", "gold_gain_std",
    "final_kl_std", "peak_server_and_kernel_mb", "server_and_idle_kernel_mb",
}  # fmt: skip
# What machine_line states about the machine (the benchmarks' machine() records all of these).
MACHINE_FIELDS = ("cores", "memory_gb", "python", "torch", "cuda")
ROOT_CHAPTER = "Introduction"  # the toc's root page belongs to no part
NOT_IN_TOC = "(not in _toc.yml)"


# ---------------------------------------------------------------------------------------------
# Reading the results
# ---------------------------------------------------------------------------------------------


def repository_root() -> Path:
    """The folder holding ``_toc.yml``: above this package (a clone with ``pip install -e .``, the
    book build) or else above the working directory (a notebook opened inside a clone)."""
    for origin in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (origin, *origin.parents):
            if (folder / "_toc.yml").is_file():
                return folder
    raise FileNotFoundError(
        "could not find the book's repository (a folder with _toc.yml) above the rlhf_lib package "
        f"or above the working directory {Path.cwd()}: run this from a clone of the repository, "
        "or pass the results folder explicitly."
    )


def load_benchmark(name: str, folder: str | Path | None = None) -> dict:
    """The report ``{folder}/{name}.json``; ``folder`` defaults to the repository's
    ``benchmarks/results``. A missing file raises an error that names the command writing it."""
    folder = Path(folder) if folder is not None else repository_root() / "benchmarks" / "results"
    path = folder / f"{name}.json"
    if not path.is_file():
        command = PRODUCERS.get(name, f"the script benchmarks/{name}.py")
        raise FileNotFoundError(
            f"no benchmark results at {path}. They are written by `{command}`, run from the "
            "repository root; commit the JSON file to show it in the book."
        )
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(report, dict):
        raise ValueError(f"{path} holds a {type(report).__name__}, not a benchmark report")
    return report


def _entries(report: dict, key: str, fields: tuple[str, ...], name: str) -> list[dict]:
    """``report[key]``, checked: a non-empty list of records that each have ``fields``; ``name``
    is the benchmark (a key of ``PRODUCERS``) that writes such reports."""
    producer = PRODUCERS[name]
    entries = report.get(key) if isinstance(report, dict) else None
    if not isinstance(entries, list) or not entries:
        found = f"keys: {sorted(report)}" if isinstance(report, dict) else type(report).__name__
        raise ValueError(
            f"this report has no (non-empty) {key!r} list ({found}); "
            f"expected the output of `{producer}`"
        )
    for index, entry in enumerate(entries):
        missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise ValueError(f"{key}[{index}] lacks {missing}; expected the output of `{producer}`")
        label = next((entry[f] for f in ("method", "page", "twin") if f in entry), "")
        where = f"{key}[{index}] ({label!r})" if label else f"{key}[{index}]"
        for field in fields:
            value = entry[field]
            if field in NUMBER_FIELDS and not checks.is_finite_number(value):
                raise ValueError(
                    f"{where}: {field} must be a finite number, got {value!r}; expected the "
                    f"output of `{producer}`"
                )
            if field == "seeds" and (not isinstance(value, list | tuple) or not value):
                raise ValueError(
                    f"{where}: seeds must be the non-empty list of seeds the method ran with, "
                    f"got {value!r}; expected the output of `{producer}`"
                )
    return entries


def machine_line(report: dict) -> str:
    """One sentence: when and on what the report was measured."""
    machine = report.get("machine")
    if not isinstance(machine, dict) or "date" not in report:
        raise ValueError("a benchmark report needs a 'date' and a 'machine' record")
    try:
        date = datetime.datetime.fromisoformat(report["date"])
    except (TypeError, ValueError):
        raise ValueError(
            "the report's 'date' must be an ISO 8601 date and time such as "
            f"'2026-11-28T01:29:20+00:00' (the benchmarks write one), got {report['date']!r}"
        ) from None
    missing = [field for field in MACHINE_FIELDS if field not in machine]
    if missing:
        raise ValueError(
            f"the report's 'machine' record lacks {missing}: the sentence would state them as "
            "unknown. The benchmarks under benchmarks/ record them; run one again."
        )
    cores, usable = machine["cores"], machine.get("usable_cores", machine["cores"])
    if not checks.is_int(cores) or not checks.is_int(usable):
        raise ValueError(
            f"the report's machine.cores and machine.usable_cores must be ints, got {cores!r} "
            f"and {usable!r}"
        )
    cores_text = f"{cores} cores" if usable == cores else f"{usable} of its {cores} cores"
    cpu = machine.get("cpu_model") or "unknown CPU"
    article = "an" if cpu[0].lower() in "aeiou" else "a"
    device = "with a CUDA GPU available" if machine["cuda"] else "on the CPU only"
    return (
        f"Measured on {date.day} {date:%B %Y} on {article} {cpu} with {cores_text} and "
        f"{machine['memory_gb']} GB of memory, with Python {machine['python']} "
        f"and torch {machine['torch']}, {device}."
    )


# ---------------------------------------------------------------------------------------------
# Executing the book
# ---------------------------------------------------------------------------------------------


def _page_path(name: str) -> str:
    return name if name.endswith((".md", ".ipynb")) else f"{name}.md"


def toc_chapters(toc_file: str | Path | None = None) -> dict[str, str]:
    """``{page path: chapter}`` for every file of ``_toc.yml``, in book order; a chapter is a part's
    caption ("Transformers", "Reward models", ...), the root page is the "Introduction"."""
    toc_file = Path(toc_file) if toc_file is not None else repository_root() / "_toc.yml"
    toc = yaml.safe_load(toc_file.read_text())
    chapters = {_page_path(toc["root"]): ROOT_CHAPTER}

    def walk(entries, caption):
        for entry in entries or []:
            if "file" in entry:
                chapters[_page_path(entry["file"])] = caption
            walk(entry.get("sections"), caption)
            walk(entry.get("chapters"), caption)

    for part in toc.get("parts") or []:
        walk(part.get("chapters"), part.get("caption", "(untitled part)"))
    return chapters


def unmeasured_pages(report: dict, root: str | Path | None = None) -> list[str]:
    """Notebook pages of the toc (those with a jupytext header) that the report did not measure."""
    root = Path(root) if root is not None else repository_root()
    measured = {p["page"] for p in _entries(report, "pages", PAGE_FIELDS, "book_execution")}
    return [
        page
        for page in toc_chapters(root / "_toc.yml")
        if page not in measured
        and (root / page).is_file()
        and (root / page).read_text().startswith("---\njupytext:")
    ]


def execution_table(report: dict, chapters: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per measured page, in book order (the order of ``chapters``; pages it lacks follow
    in the report's order): its chapter, seconds, peak MB. The benchmark writes the pages in the
    order it ran them, which with two at a time is not the book's."""
    chapters = toc_chapters() if chapters is None else chapters
    entries = _entries(report, "pages", PAGE_FIELDS, "book_execution")
    book_order = {page: index for index, page in enumerate(chapters)}
    entries = sorted(entries, key=lambda p: book_order.get(p["page"], len(book_order)))  # stable
    rows = [
        {
            "chapter": chapters.get(p["page"], NOT_IN_TOC),
            "page": p["page"].removeprefix("book/").removesuffix(".md"),
            "seconds": float(p["wall_seconds"]),
            "peak MB": float(p["peak_rss_mb"]),
            "code cells": p.get("code_cells"),
            "error": p.get("error") or "",
        }
        for p in entries
    ]
    return pd.DataFrame(rows)


def chapter_summary(report: dict, chapters: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per chapter, in book order: pages, total seconds, largest peak MB, and whether it
    keeps within the chapter time and the kernel memory targets."""
    chapters = toc_chapters() if chapters is None else chapters
    table = execution_table(report, chapters)
    order = list(dict.fromkeys([*chapters.values(), NOT_IN_TOC]))  # book order, each once
    table["chapter"] = pd.Categorical(table["chapter"], categories=order, ordered=True)
    summary = table.groupby("chapter", observed=True).agg(
        pages=("page", "size"), seconds=("seconds", "sum"), **{"peak MB": ("peak MB", "max")}
    )
    summary[f"≤ {TARGET_CHAPTER_SECONDS} s"] = summary["seconds"] <= TARGET_CHAPTER_SECONDS
    summary[f"≤ {TARGET_PEAK_MB} MB"] = summary["peak MB"] <= TARGET_PEAK_MB
    summary.index = summary.index.astype(str)
    return summary


def _judge(target: str, measured: str, ok: bool, untested: list[str]) -> dict:
    status = "not tested" if untested else ("met" if ok else "missed")
    return {"target": target, "measured": measured, "status": status, "why": "; ".join(untested)}


def stage_build_seconds(report: dict) -> float:
    """Wall seconds of the stage builds that ran before the pages (``python -m rlhf_lib.stages``,
    as ``make book`` runs it); 0 for a report whose pages trained their own stages."""
    stages = report.get("stages")
    return float(stages["wall_seconds"]) if isinstance(stages, dict) else 0.0


def page_phase_seconds(report: dict) -> float:
    """Wall seconds of the pages, from the first started to the last finished: the report's
    ``pages_wall_seconds`` (``page_jobs`` pages at a time, as ``make book`` runs them), or for a
    report without it, the sum of the pages' seconds (they ran one after the other)."""
    if "pages_wall_seconds" in report:
        return float(report["pages_wall_seconds"])
    return float(execution_table(report, {})["seconds"].sum())


def book_seconds(report: dict) -> float:
    """The whole book's wall seconds: the stage builds before the pages, then the pages."""
    return stage_build_seconds(report) + page_phase_seconds(report)


def warm_book_seconds(report: dict) -> float | None:
    """The whole book's wall seconds when built again with every stage cached (``None`` if the
    report did not measure it: only a ``--cold`` run of every page does)."""
    warm = report.get("warm")
    return float(warm["total_wall_seconds"]) if isinstance(warm, dict) else None


def execution_targets(report: dict, root: str | Path | None = None) -> dict[str, dict]:
    """The execution targets, each ``{target, measured, status, why}``: ``total`` (the whole book:
    the stage builds, if the report ran them first, and every page), ``warm`` (the same again with
    every stage cached),
    ``chapter`` (the slowest chapter), ``memory`` (the largest kernel), ``errors`` (none failed).

    A timing or memory target is "not tested" unless the run matches its conditions: an empty
    cache, at most ``TARGET_CORES`` usable cores, every notebook page of the toc measured, and no
    page failing (a page that stops at an error is cut short, so its time is not the page's).
    """
    root = Path(root) if root is not None else repository_root()
    chapters = toc_chapters(root / "_toc.yml")
    pages, summary = execution_table(report, chapters), chapter_summary(report, chapters)
    machine = report.get("machine")
    machine = machine if isinstance(machine, dict) else {}
    cores = machine.get("usable_cores", machine.get("cores"))
    failed, missing = pages[pages["error"] != ""], unmeasured_pages(report, root)
    untested = []
    if report.get("cache") != "cold":
        untested.append(f"measured with a {report.get('cache', 'unknown')} cache, not an empty one")
    if not checks.is_int(cores):
        untested.append("the report does not record how many cores the run had")
    elif cores > TARGET_CORES:
        untested.append(f"measured on {cores} cores, more than {TARGET_CORES}")
    if missing:
        untested.append(f"{len(missing)} page(s) not measured: {', '.join(missing)}")
    if len(failed):
        untested.append(f"{len(failed)} page(s) failed")
    total, warm = book_seconds(report), warm_book_seconds(report)
    slowest, heaviest = summary["seconds"].idxmax(), pages.loc[pages["peak MB"].idxmax()]
    return {
        "total": _judge(
            f"whole book ≤ {TARGET_TOTAL_SECONDS} s",
            f"{total:.0f} s",
            total <= TARGET_TOTAL_SECONDS,
            untested,
        ),
        "warm": _judge(
            f"whole book, every stage cached, ≤ {TARGET_WARM_SECONDS} s",
            "not measured" if warm is None else f"{warm:.0f} s",
            warm is not None and warm <= TARGET_WARM_SECONDS,
            untested + (["the report has no second, cached build"] if warm is None else []),
        ),
        "chapter": _judge(
            f"every chapter ≤ {TARGET_CHAPTER_SECONDS} s",
            f"slowest: {slowest}, {summary.loc[slowest, 'seconds']:.0f} s",
            bool((summary["seconds"] <= TARGET_CHAPTER_SECONDS).all()),
            untested,
        ),
        "memory": _judge(
            f"every kernel ≤ {TARGET_PEAK_MB} MB",
            f"largest: {heaviest['page']}, {heaviest['peak MB']:.0f} MB",
            bool((pages["peak MB"] <= TARGET_PEAK_MB).all()),
            untested,
        ),
        "errors": _judge(
            "every page runs without error",
            f"{len(pages) - len(failed)} of {len(pages)} pages",
            len(failed) == 0,
            [],
        ),
    }


def execution_figure(report: dict, chapters: dict[str, str] | None = None) -> go.Figure:
    """Seconds per page as horizontal bars coloured by chapter; a button switches to peak memory,
    where a dashed line marks the kernel ceiling. The buttons work on the static website."""
    table = execution_table(report, chapters)
    order = list(dict.fromkeys(table["chapter"]))
    fig = go.Figure()
    for view in ("seconds", "peak MB"):
        for colour_index, chapter in enumerate(order):
            rows = table[table["chapter"] == chapter]
            fig.add_trace(
                go.Bar(
                    x=rows[view],
                    y=rows["page"],
                    orientation="h",
                    name=chapter,
                    # Okabe–Ito for colour-blind readers (Tableau 10 had red and green); the
                    # dark outline keeps the light ones (yellow, sky blue) visible on white
                    marker_color=OKABE_ITO[colour_index % len(OKABE_ITO)],
                    marker_line={"color": "#333333", "width": 1},
                    legendgroup=chapter,
                    visible=view == "seconds",
                    hovertemplate="%{y}: %{x:.1f} " + ("s" if view == "seconds" else "MB"),
                )
            )
    fig.add_vline(
        x=TARGET_PEAK_MB,
        line_dash="dash",
        line_color="#E45756",
        visible=False,
        annotation_text=f"{TARGET_PEAK_MB} MB per kernel",
        annotation_visible=False,
    )
    n = len(order)
    titles = {
        "seconds": f"Seconds per page ({report.get('cache', 'unknown')} cache)",
        "peak MB": "Peak resident memory per page's kernel (MB)",
    }

    def button(view):
        memory = view == "peak MB"
        return {
            "label": "time" if not memory else "memory",
            "method": "update",
            "args": [
                {"visible": [not memory] * n + [memory] * n},
                {
                    "title.text": titles[view],
                    "xaxis.title.text": "seconds" if not memory else "MB",
                    "shapes[0].visible": memory,
                    "annotations[0].visible": memory,
                },
            ],
        }

    fig.update_layout(
        title=titles["seconds"],
        xaxis_title="seconds",
        template=white_template(),
        height=max(420, 22 * len(table) + 260),
        legend={"orientation": "h", "y": -0.12, "title_text": "chapter"},
        yaxis={
            "autorange": "reversed",
            "categoryorder": "array",
            "categoryarray": list(table["page"]),
        },
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "x": 0,
                "y": 1.12,
                "xanchor": "left",
                "buttons": [button("seconds"), button("peak MB")],
            }
        ],
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Page weight
# ---------------------------------------------------------------------------------------------


def build_line(report: dict) -> str:
    """One sentence: the commit and the packages of the site a ``page_weight.json`` weighed."""
    git = report.get("git") or {}
    commit = f"commit {git['commit'][:10]}" if git.get("commit") else "an unknown commit"
    changes = " with uncommitted changes" if git.get("dirty") else ""
    versions = [f"{name} {v}" for name, v in (report.get("packages") or {}).items() if v]
    built_with = f", with {', '.join(versions)}" if versions else ""
    return f"The website was built from {commit}{changes}{built_with}."


def _weighed_pages(report: dict) -> list[dict]:
    """The pages of a ``page_weight.json`` report, checked, with the site's total size."""
    pages = _entries(report, "pages", WEIGHT_FIELDS, "page_weight")
    if not isinstance(report.get("site_bytes"), int):
        raise ValueError(
            "this report has no 'site_bytes' (the size of the whole site); "
            f"expected the output of `{PRODUCERS['page_weight']}`"
        )
    return pages


def _notebook_bytes(page: dict) -> float:
    """The largest downloadable notebook of a page (NaN when it has none, as a page of text)."""
    sizes = [size for path, size in page["downloads"].items() if path.endswith(".ipynb")]
    return max(sizes, default=math.nan)


def page_weight_table(report: dict, chapters: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per page of the website: its chapter, the KB of its HTML, of its downloadable
    notebook and of a first visit (the HTML and the scripts, stylesheets and images it loads)."""
    chapters = toc_chapters() if chapters is None else chapters
    rows = [
        {
            "chapter": chapters.get(p["page"].removesuffix(".html") + ".md", NOT_IN_TOC),
            "page": p["page"].removeprefix("book/").removesuffix(".html"),
            "HTML KB": p["html_bytes"] / 1024,
            "notebook KB": _notebook_bytes(p) / 1024,
            "first-visit KB": p["first_visit_bytes"] / 1024,
        }
        for p in _weighed_pages(report)
    ]
    return pd.DataFrame(rows)


def unweighed_pages(report: dict, chapters: dict[str, str] | None = None) -> list[str]:
    """Pages of the toc whose HTML the report does not hold (a failed or partial build)."""
    chapters = toc_chapters() if chapters is None else chapters
    weighed = {p["page"] for p in _weighed_pages(report)}
    return [page for page in chapters if str(Path(page).with_suffix(".html")) not in weighed]


def _largest(table: pd.DataFrame, column: str) -> tuple[pd.Series | None, str]:
    """The row with the largest ``column`` (None if it has no value) and a line naming it."""
    values = table[column].dropna()
    if values.empty:
        return None, "none on the site"
    row = table.loc[values.idxmax()]
    return row, f"largest: {row['page']}, {row[column] / 1024:.2f} MB"


def page_weight_targets(report: dict, chapters: dict[str, str] | None = None) -> dict[str, dict]:
    """The page weight targets, each ``{target, measured, status, why}``: ``page_html`` (the
    largest page), ``notebook`` (the largest downloadable notebook) and ``site`` (the whole
    website). All are "not tested" when pages of the toc are missing from the site; the notebook
    target also when the site offers no notebook at all."""
    chapters = toc_chapters() if chapters is None else chapters
    table, missing = page_weight_table(report, chapters), unweighed_pages(report, chapters)
    untested = [f"{len(missing)} page(s) not on the site: {', '.join(missing)}"] if missing else []
    page, page_text = _largest(table, "HTML KB")
    notebook, notebook_text = _largest(table, "notebook KB")
    site_mb = report["site_bytes"] / MB
    return {
        "page_html": _judge(
            f"every page's HTML ≤ {TARGET_PAGE_HTML_MB} MB",
            page_text,
            page["HTML KB"] <= TARGET_PAGE_HTML_MB * 1024,
            untested,
        ),
        "notebook": _judge(
            f"every downloadable notebook ≤ {TARGET_NOTEBOOK_MB} MB",
            notebook_text,
            notebook is not None and notebook["notebook KB"] <= TARGET_NOTEBOOK_MB * 1024,
            untested + (["the site offers no notebook"] if notebook is None else []),
        ),
        "site": _judge(
            f"the whole website ≤ {TARGET_SITE_MB} MB",
            f"{site_mb:.1f} MB in {report.get('site_files', '?')} files",
            site_mb <= TARGET_SITE_MB,
            untested,
        ),
    }


# ---------------------------------------------------------------------------------------------
# Our PPO against TRL
# ---------------------------------------------------------------------------------------------


def methods_table(report: dict) -> pd.DataFrame:
    """One row per method of ``rl_vs_trl.json``: budget, gold and proxy gains, KL, cost.

    Every figure is the mean over the method's seeds; gold gain and final KL also show their
    spread, ``mean ± std``, where std is the standard deviation over the seeds (NumPy's
    ``np.std``, which divides by the number of seeds), and reports that record it give the 95%
    confidence interval of the mean gold gain per CPU-second (Student's t over the seeds)."""
    from rlhf_lib.beyond_ppo import METHOD_NAMES

    rows = [
        {
            "method": METHOD_NAMES.get(m["method"], m["method"]),
            "seeds": len(m["seeds"]),
            "samples": m["samples"],
            "gold start → final": f"{m['gold_start']:.3f} → {m['gold_final']:.3f}",
            "gold gain ± std": f"{m['gold_gain']:+.3f} ± {m['gold_gain_std']:.3f}",
            "proxy gain": m["proxy_gain"],
            "final KL ± std": f"{m['final_kl']:.2f} ± {m['final_kl_std']:.2f}",
            "train wall s": m["train_wall_seconds"],
            "train CPU s": m["train_cpu_seconds"],
            "samples/s": m["samples_per_second"],
            "gold gain per CPU-s": m["gold_gain_per_cpu_second"],
            **(
                {"gold gain per CPU-s, 95% CI": f"± {m['gold_gain_per_cpu_second_ci95']:.4f}"}
                if "gold_gain_per_cpu_second_ci95" in m
                else {}
            ),  # fmt: skip
            "peak MB": m["peak_rss_mb"],
        }
        for m in _entries(report, "methods", METHOD_FIELDS + SPREAD_FIELDS, "rl_vs_trl")
    ]
    return pd.DataFrame(rows).set_index("method")


def seed_counts(report: dict) -> str:
    """How many seeds each method of ``rl_vs_trl.json`` ran with, for the text: ``"3"``, or
    ``"2 to 3"`` when the methods differ."""
    counts = sorted(
        {len(m["seeds"]) for m in _entries(report, "methods", SPREAD_FIELDS, "rl_vs_trl")}
    )
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"


def _gap(a: dict, b: dict) -> tuple[float, float]:
    """Gold gain of ``a`` minus ``b``, and the standard error of that difference of seed means."""
    n_a, n_b = len(a["seeds"]), len(b["seeds"])
    se = math.sqrt(a["gold_gain_std"] ** 2 / n_a + b["gold_gain_std"] ** 2 / n_b)
    return a["gold_gain"] - b["gold_gain"], se


def method_verdicts(report: dict) -> dict[str, str]:
    """Sentences for "why the results come out as they do", computed from ``rl_vs_trl.json``.

    - ``gold``: which method gained the most gold and which others are within seed noise of it.
      Two methods differ beyond seed noise when their mean gains differ by more than twice the
      standard error of that difference (about a 95% interval).
    - ``cost``: training CPU-seconds of each method, as multiples of the cheapest online one.
    - ``kl``: which online method ended at the lowest KL.
    - ``dpo``: how DPO's gain and its spread over seeds compare with the online methods'.
    """
    from rlhf_lib.beyond_ppo import METHOD_NAMES, ONLINE

    runs = {m["method"]: m for m in _entries(report, "methods", METHOD_FIELDS + SPREAD_FIELDS,
                                            "rl_vs_trl")}  # fmt: skip
    name = {m: METHOD_NAMES.get(m, m) for m in runs}

    def gain(m):
        return f"{runs[m]['gold_gain']:+.3f} ± {runs[m]['gold_gain_std']:.3f}"

    online = [m for m in ONLINE if m in runs]
    if not online:
        raise ValueError(
            f"method_verdicts compares the online methods {list(ONLINE)} (their cost and KL); "
            f"this report has only {sorted(runs)}"
        )
    for m in online:
        if runs[m]["train_cpu_seconds"] <= 0:
            raise ValueError(
                f"methods: {m!r} has train_cpu_seconds={runs[m]['train_cpu_seconds']!r}, but a "
                "training run takes some CPU time; expected the output of "
                f"`{PRODUCERS['rl_vs_trl']}`"
            )
    ranked = sorted(runs, key=lambda m: runs[m]["gold_gain"], reverse=True)
    best = ranked[0]
    tied = []
    for m in ranked[1:]:
        difference, standard_error = _gap(runs[best], runs[m])
        if difference <= 2 * standard_error:
            tied.append(m)
    behind = [m for m in ranked[1:] if m not in tied]
    gold = f"{name[best]} gained the most gold ({gain(best)}, mean ± std over seeds)"
    if tied:
        gold += (", but " + " and ".join(f"{name[m]} ({gain(m)})" for m in tied)
                 + f" {'is' if len(tied) == 1 else 'are'} within seed noise of it: on this "
                 "budget they tie")  # fmt: skip
    else:
        gold += ", beyond seed noise of every other method"
    if behind:
        gold += "; " + " and ".join(f"{name[m]} ({gain(m)})" for m in behind) + " gained less"
    cheapest = min(online, key=lambda m: runs[m]["train_cpu_seconds"])
    cost = ", ".join(
        f"{name[m]} {runs[m]['train_cpu_seconds']:.0f} CPU-s "
        f"({runs[m]['train_cpu_seconds'] / runs[cheapest]['train_cpu_seconds']:.2f}×)"
        for m in sorted(online, key=lambda m: runs[m]["train_cpu_seconds"])
    )
    lowest_kl = min(online, key=lambda m: runs[m]["final_kl"])
    kl = (f"{name[lowest_kl]} ended at the lowest KL of the online methods, "
          f"{runs[lowest_kl]['final_kl']:.1f} ± {runs[lowest_kl]['final_kl_std']:.1f} nats per "
          "review, against " + ", ".join(f"{runs[m]['final_kl']:.1f} for {name[m]}"
                                          for m in online if m != lowest_kl))  # fmt: skip
    dpo = ""
    if "dpo" in runs:
        spread = max(runs[m]["gold_gain_std"] for m in online)
        if spread > 0:
            dpo = (f"DPO gained {gain('dpo')}: its spread over seeds is "
                   f"{runs['dpo']['gold_gain_std'] / spread:.1f} times the largest of the online "
                   f"methods'")  # fmt: skip
        else:  # no ratio to a spread of zero
            dpo = (f"DPO gained {gain('dpo')}; the online methods' gains did not vary over "
                   "seeds at all, so there is no spread to compare its own with")  # fmt: skip
    return {"gold": gold, "cost": cost, "kl": kl, "dpo": dpo}


def ppo_vs_best_trl(report: dict) -> dict:
    """Our PPO against TRL's best online trainer (GRPO or RLOO, whichever ends with the higher
    gold score): ``best_trl`` (its key), ``gold_ppo``, ``gold_best_trl``, ``samples_ppo``,
    ``samples_best_trl`` and ``gain_per_cpu_ratio``, PPO's gold gain per CPU-second over its
    (NaN when the TRL trainer gained no gold score: a ratio to zero or less means nothing)."""
    from rlhf_lib.beyond_ppo import ONLINE

    runs = {m["method"]: m for m in _entries(report, "methods", METHOD_FIELDS, "rl_vs_trl")}
    trl = [runs[name] for name in ONLINE if name != "ppo" and name in runs]
    if "ppo" not in runs or not trl:
        raise ValueError(
            f"the comparison needs 'ppo' and at least one of TRL's online methods "
            f"{[n for n in ONLINE if n != 'ppo']}; this report has {sorted(runs)}"
        )
    ppo, best = runs["ppo"], max(trl, key=lambda m: m["gold_final"])
    trl_rate = best["gold_gain_per_cpu_second"]
    ratio = ppo["gold_gain_per_cpu_second"] / trl_rate if trl_rate > 0 else math.nan
    return {
        "best_trl": best["method"],
        "gold_ppo": ppo["gold_final"],
        "gold_best_trl": best["gold_final"],
        "samples_ppo": ppo["samples"],
        "samples_best_trl": best["samples"],
        "gain_per_cpu_ratio": ratio,
    }


def method_targets(report: dict) -> dict[str, dict]:
    """The two targets of our PPO against TRL's best online trainer, each
    ``{target, measured, status, why}``: ``gold`` (at least its final gold score, at an equal
    sample budget) and ``speed`` (at least ``TARGET_GAIN_PER_CPU_RATIO`` times its gold gain per
    CPU-second)."""
    from rlhf_lib.beyond_ppo import METHOD_NAMES

    c = ppo_vs_best_trl(report)
    name = METHOD_NAMES.get(c["best_trl"], c["best_trl"])
    unequal = []
    if c["samples_ppo"] != c["samples_best_trl"]:
        unequal.append(f"unequal budgets: {c['samples_ppo']} and {c['samples_best_trl']} samples")
    ratio = c["gain_per_cpu_ratio"]
    undefined = (
        [f"{name} gained no gold score, so the ratio is undefined"] if math.isnan(ratio) else []
    )
    return {
        "gold": _judge(
            f"PPO's final gold score ≥ that of {name}",
            f"{c['gold_ppo']:.3f} vs {c['gold_best_trl']:.3f}",
            c["gold_ppo"] >= c["gold_best_trl"],
            unequal,
        ),
        "speed": _judge(
            f"PPO's gold gain per CPU-second ≥ {TARGET_GAIN_PER_CPU_RATIO}× that of {name}",
            "undefined" if math.isnan(ratio) else f"{ratio:.2f}×",
            ratio >= TARGET_GAIN_PER_CPU_RATIO,
            unequal + undefined,
        ),
    }


def value_models_table(report: dict) -> pd.DataFrame:
    """One row per candidate value model of ``value_models.json``: means over seeds, with the 95%
    confidence interval of the gold gain and of the gold gain per CPU-second."""
    rows = [
        {
            "value model": c["candidate"],
            "seeds": len(c["seeds"]),
            "gold gain": f"{c['gold_gain']:+.3f} ± {c['gold_gain_ci95']:.3f}",
            "final KL": c["final_kl"],
            "train CPU s": c["train_cpu_seconds"],
            "gold gain per CPU-s": f"{c['gold_gain_per_cpu_second']:.2e} ± "
                                   f"{c['gold_gain_per_cpu_second_ci95']:.1e}",
            "explained variance (last 5 steps)": c["explained_variance_last_5"],
        }
        for c in _entries(report, "candidates", VALUE_FIELDS, "value_models")
    ]  # fmt: skip
    return pd.DataFrame(rows).set_index("value model")


def value_models_verdict(report: dict) -> str:
    """Which candidate gained the most gold per CPU-second, whether its 95% interval clears the
    separate critic's (the first row, the comparison), and which candidate PPOConfig's defaults
    are."""
    from rlhf_lib.ppo import PPOConfig

    entries = _entries(report, "candidates", VALUE_FIELDS, "value_models")
    defaults = PPOConfig()
    default = next((c["candidate"] for c in entries
                    if all(getattr(defaults, k) == v for k, v in c.get("config", {}).items())),
                   "none of them")  # fmt: skip
    reference, best = entries[0], max(entries, key=lambda c: c["gold_gain_per_cpu_second"])

    def interval(c):
        rate, half = c["gold_gain_per_cpu_second"], c["gold_gain_per_cpu_second_ci95"]
        return rate - half, rate + half

    if best is reference:
        verdict = (f"the separate critic with all its blocks gained the most gold per CPU-second "
                   f"({reference['gold_gain_per_cpu_second']:.2e}) of the "
                   f"{len(entries)} candidates")  # fmt: skip
    else:
        apart = interval(best)[0] > interval(reference)[1]
        ratio = best["gold_gain_per_cpu_second"] / reference["gold_gain_per_cpu_second"]
        verdict = (f"{best['candidate']} gained the most gold per CPU-second, {ratio:.2f}× the "
                   "separate critic's with all its blocks, "
                   + ("and their 95% intervals do not overlap" if apart else
                      "but their 95% intervals overlap: with these seeds the two do not differ "
                      "beyond noise in that ratio"))  # fmt: skip
        verdict += (f". It gained {best['gold_gain']:+.3f} ± {best['gold_gain_ci95']:.3f} gold "
                    f"in {best['train_cpu_seconds']:.1f} ± {best['train_cpu_seconds_ci95']:.1f} "
                    f"CPU-s, against {reference['gold_gain']:+.3f} ± "
                    f"{reference['gold_gain_ci95']:.3f} in {reference['train_cpu_seconds']:.1f} ± "
                    f"{reference['train_cpu_seconds_ci95']:.1f}")  # fmt: skip
    return verdict + f". PPOConfig's default value model is: {default}"


def critic_choice_sentence(report: dict) -> str:
    """The default critic (PPOConfig's ``critic_layers``) against the whole separate critic, from
    ``value_models.json``: gold gain and training CPU-seconds, each with its 95% interval."""
    from rlhf_lib.ppo import PPOConfig

    entries = {c["candidate"]: c for c in _entries(report, "candidates", VALUE_FIELDS,
                                                  "value_models")}  # fmt: skip
    reference = next(iter(entries.values()))
    defaults = PPOConfig()
    chosen = next((c for c in entries.values() if all(getattr(defaults, k) == v
                                                       for k, v in c.get("config", {}).items())),
                  None)  # fmt: skip
    if chosen is None or chosen is reference:
        return "the benchmark has no row for the default critic apart from the whole one"
    share = chosen["train_cpu_seconds"] / reference["train_cpu_seconds"]
    return (
        f'over {len(chosen["seeds"])} seeds the default ("{chosen["candidate"]}") gained '
        f"{chosen['gold_gain']:+.3f} ± {chosen['gold_gain_ci95']:.3f} gold against "
        f"{reference['gold_gain']:+.3f} ± {reference['gold_gain_ci95']:.3f} for the whole "
        f"critic, in {share:.0%} of its training CPU-seconds "
        f"({chosen['train_cpu_seconds']:.1f} ± {chosen['train_cpu_seconds_ci95']:.1f} against "
        f"{reference['train_cpu_seconds']:.1f} ± {reference['train_cpu_seconds_ci95']:.1f})"
    )


def implementation_sentence(report: dict) -> str:
    """One sentence per algorithm implemented twice (ours and TRL's) in ``rl_vs_trl.json``: gold
    gain with its 95% interval where recorded, training CPU-seconds, and the ratio of gold gain per
    CPU-second; empty when the report has no such pair."""
    runs = {m["method"]: m for m in _entries(report, "methods", METHOD_FIELDS + SPREAD_FIELDS,
                                            "rl_vs_trl")}  # fmt: skip

    def gain(m):
        ci = runs[m].get("gold_gain_ci95")
        return f"{runs[m]['gold_gain']:+.3f}" + (f" ± {ci:.3f}" if ci is not None else "")

    sentences = []
    for algorithm in ("rloo", "grpo"):
        ours = f"{algorithm}_ours"
        if ours not in runs or algorithm not in runs:
            continue
        theirs_rate = runs[algorithm]["gold_gain_per_cpu_second"]
        ratio = (f"{runs[ours]['gold_gain_per_cpu_second'] / theirs_rate:.2f}×"
                 if theirs_rate > 0
                 else "an undefined multiple (TRL's gained no gold)")  # fmt: skip
        sentences.append(
            f"our {algorithm.upper()} gained {gain(ours)} gold in "
            f"{runs[ours]['train_cpu_seconds']:.0f} CPU-s, TRL's {gain(algorithm)} in "
            f"{runs[algorithm]['train_cpu_seconds']:.0f} CPU-s: {ratio} TRL's gold gain per "
            "CPU-second"
        )
    return "; ".join(sentences)


def implementation_targets(report: dict) -> dict[str, dict]:
    """Our implementations against TRL's, each ``{target, measured, status, why}``:

    - ``rloo_impl`` and ``grpo_impl``: our RLOO (GRPO) reaches at least
      ``TARGET_GAIN_PER_CPU_RATIO`` times the gold gain per CPU-second of TRL's RLOO (GRPO), with
      a gold gain no more than one seed std below TRL's and a final KL of at most
      ``TARGET_MAX_KL`` nats;
    - ``best``: the best of our methods (PPO, RLOO, GRPO) per CPU-second against the best of TRL's.

    A target whose methods the report lacks, or whose budgets differ, is "not tested"."""
    runs = {m["method"]: m for m in _entries(report, "methods", METHOD_FIELDS + SPREAD_FIELDS,
                                            "rl_vs_trl")}  # fmt: skip

    def rate(m):
        return runs[m]["gold_gain_per_cpu_second"]

    def ratio_text(ours, theirs):
        return f"{rate(ours) / rate(theirs):.2f}×" if rate(theirs) > 0 else "undefined"

    def untested(*methods):
        missing = [m for m in methods if m not in runs]
        if missing:
            return [f"the report has no run of {', '.join(missing)}"]
        why = []
        if len({runs[m]["samples"] for m in methods}) > 1:
            why.append("unequal budgets: " + ", ".join(f"{runs[m]['samples']}" for m in methods))
        why += [f"{m} gained no gold score, so the ratio is undefined" for m in methods[1:]
                if rate(m) <= 0]  # fmt: skip
        return why

    targets = {}
    for algorithm in ("rloo", "grpo"):
        ours, theirs = f"{algorithm}_ours", algorithm
        why = untested(ours, theirs)
        name = algorithm.upper()
        target = (f"our {name}'s gold gain per CPU-second ≥ {TARGET_GAIN_PER_CPU_RATIO}× TRL's "
                  f"{name}'s, gold gain within one seed std, "
                  f"final KL ≤ {TARGET_MAX_KL:g}")  # fmt: skip
        if why:
            targets[f"{algorithm}_impl"] = _judge(target, "", False, why)
            continue
        gold_floor = runs[theirs]["gold_gain"] - runs[theirs]["gold_gain_std"]
        ok = (rate(ours) >= TARGET_GAIN_PER_CPU_RATIO * rate(theirs)
              and runs[ours]["gold_gain"] >= gold_floor
              and runs[ours]["final_kl"] <= TARGET_MAX_KL)  # fmt: skip
        measured = (f"{ratio_text(ours, theirs)}; gold gain {runs[ours]['gold_gain']:+.3f} vs "
                    f"{runs[theirs]['gold_gain']:+.3f}; "
                    f"KL {runs[ours]['final_kl']:.1f}")  # fmt: skip
        targets[f"{algorithm}_impl"] = _judge(target, measured, ok, [])
    ours = [m for m in ("ppo", "rloo_ours", "grpo_ours") if m in runs]
    theirs = [m for m in ("rloo", "grpo") if m in runs]
    target = f"our best method's gold gain per CPU-second ≥ {TARGET_GAIN_PER_CPU_RATIO}× TRL's best"
    if not ours or not theirs:
        targets["best"] = _judge(target, "", False, ["the report lacks our or TRL's methods"])
    else:
        best_ours, best_theirs = max(ours, key=rate), max(theirs, key=rate)
        why = untested(best_ours, best_theirs)
        from rlhf_lib.beyond_ppo import METHOD_NAMES

        measured = (f"{METHOD_NAMES[best_ours]} over {METHOD_NAMES[best_theirs]}: "
                    f"{ratio_text(best_ours, best_theirs)}")  # fmt: skip
        ok = not why and rate(best_ours) >= TARGET_GAIN_PER_CPU_RATIO * rate(best_theirs)
        targets["best"] = _judge(target, measured, ok, why)
    return targets


def targets_table(*targets: dict[str, dict]) -> pd.DataFrame:
    """The targets of :func:`execution_targets`, :func:`page_weight_targets` and
    :func:`method_targets` as one table."""
    rows = [row for group in targets for row in group.values()]
    if not rows:
        raise ValueError(
            "targets_table needs targets to list: pass the results of execution_targets, "
            "page_weight_targets or method_targets."
        )
    return pd.DataFrame(rows).set_index("target")


def binder_memory_sentence(report: dict) -> str:
    """One sentence on the peak memory of JupyterLab's server with a page's kernel, against the
    Binder limit, from ``benchmarks/binder_memory.py``'s report."""
    pages = _entries(report, "pages", BINDER_FIELDS, "binder_memory")
    limit = report.get("binder_limit_mb", TARGET_PEAK_MB)
    index, worst = max(enumerate(pages), key=lambda item: item[1]["peak_server_and_kernel_mb"])
    peak, idle = worst["peak_server_and_kernel_mb"], worst["server_and_idle_kernel_mb"]
    span = worst.get("peak_server_and_kernel_mb_range", [peak, peak])
    if (not isinstance(span, list | tuple) or len(span) != 2
            or not all(map(checks.is_finite_number, span))):  # fmt: skip
        raise ValueError(
            f"pages[{index}] ({worst['twin']!r}): peak_server_and_kernel_mb_range must be "
            f"[lowest, highest] MB over the repeats, got {span!r}; expected the output of "
            f"`{PRODUCERS['binder_memory']}`"
        )
    low, high = span
    if high > low and "repeats" not in worst:
        raise ValueError(
            f"pages[{index}] ({worst['twin']!r}) lacks ['repeats'] (how many runs its range "
            f"spans); expected the output of `{PRODUCERS['binder_memory']}`"
        )
    spread = (
        f" (from {low:.0f} to {high:.0f} MB over {worst['repeats']} runs)" if high > low else ""
    )
    cache = " from an empty stage cache" if report.get("cache") == "cold" else ""
    verdict = "within" if high <= limit else "over"
    return (
        f"With {worst['twin']}{cache}, the server and its kernel peaked at {peak:.0f} MB{spread}; "
        f"{idle:.0f} MB before the first cell ran. That is {verdict} the {limit} MB limit."
    )


# ---------------------------------------------------------------------------------------------
# Planning a course (the instructor's guide, back matter)
# ---------------------------------------------------------------------------------------------

NOT_MEASURED = "not measured"


def sessions_by_part(
    chapters: dict[str, str] | None = None, leave_out: tuple[str, ...] = ("Back matter",)
) -> dict[str, list[str]]:
    """One class session per part of ``_toc.yml``: ``{part caption: [page paths]}`` in book
    order. The introduction opens the first session; the parts in ``leave_out`` get none."""
    chapters = toc_chapters() if chapters is None else chapters
    sessions: dict[str, list[str]] = {}
    opening = [page for page, chapter in chapters.items() if chapter == ROOT_CHAPTER]
    for page, chapter in chapters.items():
        if chapter != ROOT_CHAPTER and chapter not in leave_out:
            sessions.setdefault(chapter, [])
            sessions[chapter].append(page)
    if sessions and opening:
        first = next(iter(sessions))
        sessions[first] = opening + sessions[first]
    return sessions


def _page_label(page: str) -> str:
    return page.removeprefix("book/").removesuffix(".md")


def session_plan_table(report: dict, sessions: dict[str, list[str]]) -> pd.DataFrame:
    """One row per page of ``sessions`` (``{session: [page paths]}``, as ``sessions_by_part``
    gives), in that order: the session, the page, and the seconds and peak MB of its kernel in
    ``book_execution.json``. A page the report does not hold (a page newer than the benchmark)
    has NaN there and ``note`` says "not measured"; a page that stopped at an error keeps its
    (cut short) time and ``note`` says so."""
    measured = {p["page"]: p for p in _entries(report, "pages", PAGE_FIELDS, "book_execution")}
    rows = []
    for session, pages in sessions.items():
        for page in pages:
            entry = measured.get(page)
            note = NOT_MEASURED if entry is None else ""
            if entry is not None and entry.get("error"):
                note = "stopped at an error: its time is cut short"
            rows.append(
                {
                    "session": session,
                    "page": _page_label(page),
                    "seconds": math.nan if entry is None else float(entry["wall_seconds"]),
                    "peak MB": math.nan if entry is None else float(entry["peak_rss_mb"]),
                    "note": note,
                }
            )
    return pd.DataFrame(rows, columns=["session", "page", "seconds", "peak MB", "note"])


def session_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per session of a :func:`session_plan_table`, in order: its pages, the seconds
    its measured pages took together, its largest kernel, and how many of its pages were not
    measured (when some were not, the seconds are a lower bound)."""
    order = list(dict.fromkeys(table["session"]))
    grouped = table.groupby("session", sort=False)
    summary = pd.DataFrame(
        {
            "pages": grouped["page"].size(),
            "seconds": grouped["seconds"].sum(min_count=1),
            "peak MB": grouped["peak MB"].max(),
            "not measured": grouped["note"].apply(lambda notes: int((notes == NOT_MEASURED).sum())),
        }
    )
    return summary.loc[order]


def results_commit(name: str, root: str | Path | None = None) -> tuple[str, str] | None:
    """``(short commit, date)`` of the commit that last changed ``benchmarks/results/{name}.json``
    in the repository's history; None without git, outside a repository, for a file never
    committed, or in a shallow clone (whose oldest commit would seem to add every file)."""
    import subprocess

    root = Path(root) if root is not None else repository_root()
    path = Path("benchmarks") / "results" / f"{name}.json"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        if git("rev-parse", "--is-shallow-repository") == "true":
            return None
        found = git("log", "-1", "--format=%h %cs", "--", str(path))
    except (OSError, subprocess.SubprocessError):
        return None
    if not found:
        return None
    commit, date = found.split(" ", 1)
    return commit, date


def commit_line(report: dict, name: str, root: str | Path | None = None) -> str:
    """One sentence: which commit of the book a benchmark report measured. Reports that record
    it (a ``git`` record, as ``page_weight.json``) say so; for the others, the commit that added
    the file to the repository is the closest the history can tell."""
    git = report.get("git") or {}
    if git.get("commit"):
        # results files written by an earlier benchmark of the same run change nothing measured
        code = [c for c in git.get("changed", []) if "benchmarks/results/" not in c]
        dirty = git.get("dirty") and (code or "changed" not in git)
        changes = " with uncommitted changes" if dirty else ""
        return f"The benchmark measured commit {git['commit'][:10]}{changes}."
    found = results_commit(name, root)
    if found is None:
        return "The results file does not record which commit of the book it measured."
    commit, date = found
    return (
        "The results file does not record which commit of the book it measured; it was last "
        f"committed in {commit} on {date}, so it measured that commit or an earlier one."
    )
