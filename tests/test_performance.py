"""The performance page's library: reading benchmark results, grouping pages, judging targets."""

import json
import math
import sys
from pathlib import Path

import pytest
import yaml

from rlhf_lib import performance as perf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import page_weight  # noqa: E402  (benchmarks/page_weight.py: weighs a built site)
import twins  # noqa: E402  (the toc's notebook pages, as the build and the benchmark see them)

HEADER = "---\njupytext:\n  text_representation:\n    extension: .md\n---\n\n# A page\n"
MACHINE = {
    "cores": 2, "usable_cores": 2, "cpu_model": "Intel(R) Xeon(R) Processor", "memory_gb": 23.5,
    "python": "3.11.7", "torch": "2.13.0+cpu", "cuda": False,
}  # fmt: skip
CHAPTERS = {  # page -> chapter, as toc_chapters() returns it for the toy book below
    "book/intro.md": "Introduction",
    "book/a/one.md": "Part A",
    "book/a/two.md": "Part A",
    "book/b/three.md": "Part B",
    "book/c/four.md": "Part C",
}


def toy_book(tmp_path: Path) -> Path:
    """A repository with an intro, two parts and a references page without code."""
    toc = {
        "format": "jb-book",
        "root": "book/intro",
        "parts": [
            {"caption": "Part A", "chapters": [{"file": "book/a/one"}, {"file": "book/a/two"}]},
            {"caption": "Part B", "chapters": [{"file": "book/b/three"}]},
            {"caption": "Part C", "chapters": [{"file": "book/c/four"}]},
            {"caption": "Back matter", "chapters": [{"file": "book/references"}]},
        ],
    }
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(toc))
    for page in CHAPTERS:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text(HEADER)
    (tmp_path / "book/references.md").write_text("# References\n")  # not a notebook
    return tmp_path


def execution_report(seconds=(5, 40, 60, 100, 30), peaks=(300, 900, 1200, 800, 500), **changes):
    pages = [
        {"page": page, "wall_seconds": s, "peak_rss_mb": mb, "code_cells": 3, "error": None}
        for page, s, mb in zip(CHAPTERS, seconds, peaks, strict=True)
    ]
    report = {"date": "2026-11-28T00:31:02+00:00", "machine": dict(MACHINE), "cache": "cold"}
    report.update(pages=pages, total_wall_seconds=sum(seconds), max_peak_rss_mb=max(peaks))
    report.update(warm={"stages_wall_seconds": 5.0, "pages_wall_seconds": 100.0,
                        "total_wall_seconds": 105.0})  # fmt: skip
    report.update(changes)
    return report


def method(name, gold_final, gain_per_cpu, samples=960, gold_start=0.2, seeds=(0, 1, 2)) -> dict:
    cpu = 100.0
    return {
        "method": name, "samples": samples, "generates_samples": name != "dpo",
        "seeds": list(seeds), "gold_gain_std": 0.02, "final_kl_std": 0.5,
        "gold_start": gold_start, "gold_final": gold_final, "gold_gain": gold_final - gold_start,
        "proxy_start": 0.3, "proxy_final": 0.6, "proxy_gain": 0.3, "final_kl": 3.0,
        "train_wall_seconds": cpu / 2, "train_cpu_seconds": cpu, "samples_per_second": 19.2,
        "gold_gain_per_cpu_second": gain_per_cpu, "peak_rss_mb": 950.0,
        "checkpoints": [
            {"step": 0, "samples": 0, "proxy": 0.3, "gold": gold_start, "kl": 0.0},
            {"step": 30, "samples": samples, "proxy": 0.6, "gold": gold_final, "kl": 3.0},
        ],
        "example_samples": ["A fine film."],
    }  # fmt: skip


def methods_report(*methods) -> dict:
    methods = methods or (
        method("ppo", 0.55, 0.003),
        method("grpo", 0.50, 0.001),
        method("rloo", 0.45, 0.002),  # faster than GRPO, but GRPO ends higher: GRPO is the best
        method("dpo", 0.60, 0.010, samples=2400),  # offline: never the comparison
    )
    return {
        "date": "2026-11-29T10:00:00+00:00", "machine": dict(MACHINE),
        "command": "python benchmarks/rl_vs_trl.py", "budget": {"n_samples": 960},
        "methods": list(methods),
    }  # fmt: skip


# --- reading results -----------------------------------------------------------------------------


def test_repository_root_is_this_repository():
    assert perf.repository_root() == ROOT


def test_load_benchmark_reads_a_report(tmp_path):
    (tmp_path / "rl_vs_trl.json").write_text(json.dumps(methods_report()))
    assert perf.load_benchmark("rl_vs_trl", tmp_path)["methods"][0]["method"] == "ppo"


@pytest.mark.parametrize(
    "name, command",
    [
        ("rl_vs_trl", "python benchmarks/rl_vs_trl.py"),
        ("book_execution", "make benchmark"),
        ("page_weight", "python benchmarks/page_weight.py"),
    ],
)
def test_a_missing_file_names_the_command_that_writes_it(tmp_path, name, command):
    with pytest.raises(FileNotFoundError, match=command) as err:
        perf.load_benchmark(name, tmp_path)
    assert str(tmp_path / f"{name}.json") in str(err.value)


def test_malformed_files_and_reports_raise_clear_errors(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        perf.load_benchmark("broken", tmp_path)
    (tmp_path / "listed.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a benchmark report"):
        perf.load_benchmark("listed", tmp_path)
    with pytest.raises(ValueError, match="no .*'pages'.*make benchmark"):
        perf.execution_table(methods_report(), CHAPTERS)
    with pytest.raises(ValueError, match="no .*'methods'.*rl_vs_trl"):
        perf.methods_table(execution_report())
    with pytest.raises(ValueError, match="no .*'pages'"):
        perf.execution_table(execution_report(pages=[]), CHAPTERS)
    report = execution_report()
    del report["pages"][2]["peak_rss_mb"]
    with pytest.raises(ValueError, match=r"pages\[2\] lacks \['peak_rss_mb'\]"):
        perf.chapter_summary(report, CHAPTERS)
    with pytest.raises(ValueError, match="'date' and a 'machine'"):
        perf.machine_line({"pages": []})


def test_machine_line_states_only_what_the_report_records():
    unsaid = {key: value for key, value in MACHINE.items() if key != "cuda"}
    with pytest.raises(ValueError, match=r"lacks \['cuda'\]"):
        perf.machine_line(execution_report(machine=unsaid))
    with pytest.raises(ValueError, match="must be ints, got None"):
        perf.machine_line(execution_report(machine={**MACHINE, "cores": None}))
    with pytest.raises(ValueError, match="ISO 8601"):
        perf.machine_line(execution_report(date=20261128))
    no_cpu_name = execution_report(machine={**MACHINE, "cpu_model": ""})
    assert "on an unknown CPU with 2 cores" in perf.machine_line(no_cpu_name)


def test_machine_line():
    line = perf.machine_line(execution_report())
    for part in ("28 November 2026", "an Intel(R) Xeon(R) Processor", "2 cores", "23.5 GB",
                 "3.11.7", "torch 2.13.0+cpu", "CPU only"):  # fmt: skip
        assert part in line, (part, line)
    gpu = execution_report(machine={**MACHINE, "cores": 8, "usable_cores": 2, "cuda": True})
    assert "2 of its 8 cores" in perf.machine_line(gpu)
    assert "CUDA GPU" in perf.machine_line(gpu) and "CPU only" not in perf.machine_line(gpu)


# --- executing the book --------------------------------------------------------------------------


def _toc_files(entries):
    for entry in entries or []:
        if "file" in entry:
            yield entry["file"]
        yield from _toc_files(entry.get("sections"))
        yield from _toc_files(entry.get("chapters"))


def test_chapter_grouping_covers_every_page_of_the_book():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = perf.toc_chapters()
    captions = {part["caption"] for part in toc["parts"]}
    assert chapters[f"{toc['root']}.md"] == perf.ROOT_CHAPTER
    for part in toc["parts"]:
        for name in _toc_files(part["chapters"]):
            assert chapters[f"{name}.md"] == part["caption"], name
    for page in twins.notebook_pages():  # every page the benchmark can measure
        assert chapters[str(page.relative_to(ROOT))] in captions | {perf.ROOT_CHAPTER}
    assert chapters["book/performance.md"] == "Back matter"


def test_toy_toc_grouping_and_unmeasured_pages(tmp_path):
    root = toy_book(tmp_path)
    assert perf.toc_chapters(root / "_toc.yml") == {**CHAPTERS, "book/references.md": "Back matter"}
    report = execution_report()
    assert perf.unmeasured_pages(report, root) == []  # references.md has no code: not a notebook
    report["pages"].pop(1)
    assert perf.unmeasured_pages(report, root) == ["book/a/one.md"]


def test_chapter_summary_totals_equal_sums():
    report = execution_report()
    report["pages"] = report["pages"][::-1]  # both keep book order, not report order
    report["pages"].append({"page": "book/old/gone.md", "wall_seconds": 7, "peak_rss_mb": 100})
    pages, summary = perf.execution_table(report, CHAPTERS), perf.chapter_summary(report, CHAPTERS)
    assert list(summary.index) == ["Introduction", "Part A", "Part B", "Part C", perf.NOT_IN_TOC]
    assert summary["seconds"].sum() == pytest.approx(pages["seconds"].sum())
    assert summary.loc["Part A", "seconds"] == pytest.approx(40 + 60)
    assert summary.loc["Part A", "peak MB"] == 1200
    assert summary["pages"].sum() == len(pages) == 6
    assert list(pages["page"]) == ["intro", "a/one", "a/two", "b/three", "c/four", "old/gone"]


def test_chapter_summary_flags():
    summary = perf.chapter_summary(execution_report(seconds=(5, 100, 81, 20, 30)), CHAPTERS)
    assert not summary.loc["Part A", "≤ 180 s"] and summary.loc["Part B", "≤ 180 s"]
    summary = perf.chapter_summary(execution_report(peaks=(300, 900, 2049, 800, 500)), CHAPTERS)
    assert not summary.loc["Part A", "≤ 2048 MB"] and summary.loc["Part B", "≤ 2048 MB"]


def _statuses(report, root):
    return {key: row["status"] for key, row in perf.execution_targets(report, root).items()}


def test_execution_targets_flip(tmp_path):
    root = toy_book(tmp_path)
    met = {"total": "met", "warm": "met", "chapter": "met", "memory": "met", "errors": "met"}
    assert _statuses(execution_report(), root) == met
    # a chapter of 181 s, a book of 601 s, a kernel of 2049 MB: each target misses alone
    assert _statuses(execution_report(seconds=(5, 100, 81, 20, 30)), root)["chapter"] == "missed"
    over = _statuses(execution_report(seconds=(150, 100, 50, 150, 151)), root)
    assert over == {**met, "total": "missed"}
    assert _statuses(execution_report(seconds=(180, 90, 90, 180, 60)), root) == met  # limits hold
    heavy = _statuses(execution_report(peaks=(300, 900, 2049, 800, 500)), root)
    assert heavy == {**met, "memory": "missed"}
    # runs that do not match the conditions test nothing
    untested = {"total": "not tested", "warm": "not tested", "chapter": "not tested",
                "memory": "not tested"}  # fmt: skip
    warm = execution_report(
        seconds=(5, 100, 81, 20, 30), cache="warm (whatever RLHF_BOOK_CACHE held)"
    )
    assert _statuses(warm, root) == {**untested, "errors": "met"}
    many_cores = execution_report(machine={**MACHINE, "cores": 16, "usable_cores": 16})
    assert _statuses(many_cores, root) == {**untested, "errors": "met"}
    failed = execution_report()
    failed["pages"][4]["error"] = "RuntimeError: boom"
    assert _statuses(failed, root) == {**untested, "errors": "missed"}
    partial = execution_report()
    partial["pages"].pop(0)
    targets = perf.execution_targets(partial, root)
    assert targets["total"]["status"] == "not tested" and "book/intro.md" in targets["total"]["why"]
    for machine in (None, {}):  # a report that does not say how many cores: nothing tested
        targets = perf.execution_targets(execution_report(machine=machine), root)
        assert targets["total"]["status"] == "not tested"
        assert targets["total"]["why"] == "the report does not record how many cores the run had"


def test_pages_run_side_by_side_count_their_wall_time_not_their_sum(tmp_path):
    root = toy_book(tmp_path)
    # 651 s of pages one after the other, 340 s two at a time, after 250 s of stage builds
    side_by_side = execution_report(
        seconds=(150, 100, 50, 150, 151), pages_wall_seconds=340.0, stages={"wall_seconds": 250.0}
    )
    assert perf.book_seconds(side_by_side) == 590.0
    assert _statuses(side_by_side, root)["total"] == "met"
    one_at_a_time = execution_report(seconds=(150, 100, 50, 150, 151))
    assert perf.book_seconds(one_at_a_time) == 601.0
    assert _statuses(one_at_a_time, root)["total"] == "missed"


def test_the_warm_target(tmp_path):
    root = toy_book(tmp_path)
    slow = execution_report(warm={"total_wall_seconds": 241.0})
    assert _statuses(slow, root)["warm"] == "missed"
    assert perf.warm_book_seconds(slow) == 241.0
    targets = perf.execution_targets(execution_report(warm=None), root)
    assert targets["warm"]["status"] == "not tested"
    assert targets["warm"]["why"] == "the report has no second, cached build"
    assert targets["total"]["status"] == "met"


# --- our PPO against TRL -------------------------------------------------------------------------


def test_ppo_vs_best_trl_ratio():
    versus = perf.ppo_vs_best_trl(methods_report())
    assert versus["best_trl"] == "grpo"  # the higher gold score, not the faster trainer
    assert versus["gold_ppo"] == 0.55 and versus["gold_best_trl"] == 0.50
    assert versus["gain_per_cpu_ratio"] == pytest.approx(0.003 / 0.001)
    only_rloo = perf.ppo_vs_best_trl(
        methods_report(method("ppo", 0.5, 0.003), method("rloo", 0.4, 0.002))
    )
    assert only_rloo["best_trl"] == "rloo" and only_rloo["gain_per_cpu_ratio"] == pytest.approx(1.5)
    stalled = methods_report(method("ppo", 0.5, 0.003), method("grpo", 0.1, -0.001))
    assert math.isnan(perf.ppo_vs_best_trl(stalled)["gain_per_cpu_ratio"])
    with pytest.raises(ValueError, match="needs 'ppo'"):
        perf.ppo_vs_best_trl(methods_report(method("grpo", 0.5, 0.001), method("dpo", 0.5, 0.01)))
    with pytest.raises(ValueError, match="one of TRL's online methods"):
        perf.ppo_vs_best_trl(methods_report(method("ppo", 0.5, 0.001), method("dpo", 0.5, 0.01)))


def _method_statuses(*methods):
    return {
        key: row["status"] for key, row in perf.method_targets(methods_report(*methods)).items()
    }


def test_method_targets_flip():
    assert _method_statuses() == {"gold": "met", "speed": "met"}
    # equal gold and exactly 1.5x: both met; a little less: both missed
    assert _method_statuses(method("ppo", 0.5, 0.0015), method("grpo", 0.5, 0.001)) == {
        "gold": "met", "speed": "met"
    }  # fmt: skip
    assert _method_statuses(method("ppo", 0.49, 0.00149), method("grpo", 0.5, 0.001)) == {
        "gold": "missed", "speed": "missed"
    }  # fmt: skip
    unequal = _method_statuses(method("ppo", 0.6, 0.003, samples=1920), method("grpo", 0.5, 0.001))
    assert unequal == {"gold": "not tested", "speed": "not tested"}
    stalled = methods_report(method("ppo", 0.5, 0.003), method("grpo", 0.1, -0.01))
    stalled = perf.method_targets(stalled)
    assert stalled["speed"]["status"] == "not tested" and "undefined" in stalled["speed"]["why"]
    assert stalled["speed"]["measured"] == "undefined"


def test_methods_table():
    from rlhf_lib.beyond_ppo import METHOD_NAMES

    table = perf.methods_table(methods_report())
    assert list(table.index) == [METHOD_NAMES[m] for m in ("ppo", "grpo", "rloo", "dpo")]
    assert table.loc[METHOD_NAMES["dpo"], "samples"] == 2400
    assert table.loc[METHOD_NAMES["ppo"], "seeds"] == 3
    assert table.loc[METHOD_NAMES["ppo"], "gold start → final"] == "0.200 → 0.550"
    # means with their spread (std over the seeds), as the report gives them
    assert table.loc[METHOD_NAMES["ppo"], "gold gain ± std"] == "+0.350 ± 0.020"
    assert table.loc[METHOD_NAMES["ppo"], "final KL ± std"] == "3.00 ± 0.50"
    for column in ("proxy gain", "train CPU s", "samples/s", "gold gain per CPU-s", "peak MB"):
        assert column in table.columns


def test_methods_table_needs_the_seeds_and_their_spread():
    single_run = method("ppo", 0.55, 0.003)
    del single_run["gold_gain_std"]
    with pytest.raises(ValueError, match=r"methods\[0\] lacks \['gold_gain_std'\]"):
        perf.methods_table(methods_report(single_run))


def test_seed_counts():
    assert perf.seed_counts(methods_report()) == "3"
    mixed = methods_report(method("ppo", 0.55, 0.003, seeds=(0, 1)), method("grpo", 0.5, 0.001))
    assert perf.seed_counts(mixed) == "2 to 3"


def test_targets_table_lists_every_target(tmp_path):
    table = perf.targets_table(
        perf.execution_targets(execution_report(), toy_book(tmp_path)),
        perf.method_targets(methods_report()),
    )
    assert len(table) == 7 and list(table.columns) == ["measured", "status", "why"]
    assert set(table["status"]) == {"met"}


# --- page weight ---------------------------------------------------------------------------------

KB, MB = 1024, 2**20


def weight_report(html=(50, 300, 900, 200, 80), notebooks=(40, 500, 1000, 300, 100), site_mb=30):
    """A page_weight.json for the toy book: KB of each page's HTML and of its executed notebook."""
    pages = []
    for page, html_kb, notebook_kb in zip(CHAPTERS, html, notebooks, strict=True):
        name = page.removesuffix(".md")
        downloads = {f"_sources/{name}.md": 3 * KB}
        if notebook_kb is not None:
            downloads[f"_sources/{name}.ipynb"] = notebook_kb * KB
        pages.append({
            "page": f"{name}.html", "html_bytes": html_kb * KB, "downloads": downloads,
            "assets": ["_static/x.js"], "asset_bytes": 2 * MB,
            "first_visit_bytes": html_kb * KB + 2 * MB,
        })  # fmt: skip
    references = {"page": "book/references.html", "html_bytes": 20 * KB, "downloads": {},
                  "assets": [], "asset_bytes": 0, "first_visit_bytes": 20 * KB}  # fmt: skip
    return {
        "date": "2026-11-28T23:00:00+00:00", "machine": dict(MACHINE),
        "git": {"commit": "0" * 40, "dirty": False, "changed": []},
        "pages": [*pages, references], "site_bytes": int(site_mb * MB), "site_files": 321,
    }  # fmt: skip


TOY_TOC = {**CHAPTERS, "book/references.md": "Back matter"}


def _weight_statuses(report):
    return {key: row["status"] for key, row in perf.page_weight_targets(report, TOY_TOC).items()}


def test_page_weight_table():
    table = perf.page_weight_table(weight_report(), TOY_TOC)
    assert list(table["page"]) == ["intro", "a/one", "a/two", "b/three", "c/four", "references"]
    assert list(table["chapter"][:3]) == ["Introduction", "Part A", "Part A"]
    assert table.loc[2, "HTML KB"] == 900 and table.loc[2, "notebook KB"] == 1000
    assert table.loc[2, "first-visit KB"] == 900 + 2048
    assert math.isnan(table.loc[5, "notebook KB"])  # a page of text: no notebook to download


def test_page_weight_targets_flip():
    met = {"page_html": "met", "notebook": "met", "site": "met"}
    assert _weight_statuses(weight_report()) == met
    limits = weight_report(html=(50, 300, 1024, 200, 80), notebooks=(40, 500, 1024, 300, 100))
    assert _weight_statuses(weight_report(site_mb=40)) == _weight_statuses(limits) == met
    heavy_page = weight_report(html=(50, 300, 1025, 200, 80))
    assert _weight_statuses(heavy_page) == {**met, "page_html": "missed"}
    heavy_notebook = weight_report(notebooks=(40, 500, 1000, 4900, 100))
    assert _weight_statuses(heavy_notebook) == {**met, "notebook": "missed"}
    targets = perf.page_weight_targets(heavy_notebook, TOY_TOC)
    assert targets["notebook"]["measured"] == "largest: b/three, 4.79 MB"
    assert _weight_statuses(weight_report(site_mb=149)) == {**met, "site": "missed"}
    no_notebooks = _weight_statuses(weight_report(notebooks=(None,) * 5))
    assert no_notebooks == {**met, "notebook": "not tested"}
    partial = weight_report(site_mb=149)
    partial["pages"].pop(1)
    targets = perf.page_weight_targets(partial, TOY_TOC)
    assert {row["status"] for row in targets.values()} == {"not tested"}
    assert "book/a/one.md" in targets["site"]["why"]


def test_page_weight_reports_are_checked():
    with pytest.raises(ValueError, match=r"pages\[0\] lacks .*'html_bytes'.*page_weight\.py"):
        perf.page_weight_table(execution_report(), TOY_TOC)
    with pytest.raises(ValueError, match=r"pages\[0\] lacks .*'wall_seconds'.*make benchmark"):
        perf.execution_table(weight_report(), CHAPTERS)
    report = weight_report()
    del report["site_bytes"]
    with pytest.raises(ValueError, match="no 'site_bytes'.*page_weight.py"):
        perf.page_weight_targets(report, TOY_TOC)
    with pytest.raises(ValueError, match="no .*'pages'.*page_weight.py"):
        perf.page_weight_table(methods_report(), TOY_TOC)


def test_targets_table_takes_the_page_weight_targets(tmp_path):
    table = perf.targets_table(
        perf.execution_targets(execution_report(), toy_book(tmp_path)),
        perf.page_weight_targets(weight_report(site_mb=149), TOY_TOC),
    )
    assert len(table) == 8 and list(table.columns) == ["measured", "status", "why"]
    assert table.loc["the whole website ≤ 40 MB", "status"] == "missed"


def test_page_weight_measures_a_built_site(tmp_path):
    site = tmp_path / "html"
    files = {
        "book/a/one.html": '<html><head><script src="../../_static/x.js?digest=1"></script>'
        '<link rel="stylesheet" href="../../_static/x.css"><link rel="next" href="two.html">'
        '<script src="https://cdn.example/y.js"></script></head><body>'
        '<a href="../../_sources/book/a/one.ipynb">.ipynb</a><img src="../../_images/f.png">'
        "</body></html>",
        "book/a/two.html": '<script src="../../_static/x.js"></script><p>text</p>',
        "book/genindex.html": "<p>index</p>",
        "search.html": "<p>search</p>",
        "_static/x.js": "x" * 1000,
        "_static/x.css": "c" * 300,
        "_static/plotly.min.js": "p" * 5000,
        "_images/f.png": "i" * 700,
        "_sources/book/a/one.ipynb": "n" * 4000,
        "_sources/book/a/one.md": "m" * 200,
    }
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    report = page_weight.measure_site(site)
    one, two = report["pages"]
    assert one["page"] == "book/a/one.html" and two["page"] == "book/a/two.html"
    assert one["html_bytes"] == len(files["book/a/one.html"])
    assert one["downloads"] == {"_sources/book/a/one.ipynb": 4000, "_sources/book/a/one.md": 200}
    assert two["downloads"] == {}
    assert one["assets"] == ["_images/f.png", "_static/x.css", "_static/x.js"]
    assert one["first_visit_bytes"] == one["html_bytes"] + 1000 + 300 + 700
    assert two["first_visit_bytes"] == two["html_bytes"] + 1000
    # clicking through: every page's HTML, and each shared asset once
    assert report["click_through_bytes"] == one["html_bytes"] + two["html_bytes"] + 2000
    assert report["site_bytes"] == sum(len(text) for text in files.values())
    assert report["site_files"] == len(files) and report["plotly_js_bytes"] == 5000
    assert report["largest_files"][0] == {"path": "_static/plotly.min.js", "bytes": 5000}
    assert report["folders"]["_static"] == 6300 and report["folders"]["_static/x.js"] == 1000
    # the report reads back through the performance page's functions
    targets = perf.page_weight_targets(report, {"book/a/one.md": "A", "book/a/two.md": "A"})
    assert {row["status"] for row in targets.values()} == {"met"}


def test_page_weight_without_a_site_names_make_book(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["page_weight.py", "--site", str(tmp_path / "none")])
    assert page_weight.main() == 2
    assert "make book" in capsys.readouterr().err


# --- figures -------------------------------------------------------------------------------------


def test_execution_figure_switches_between_time_and_memory():
    fig = perf.execution_figure(execution_report(), CHAPTERS)
    chapters = ["Introduction", "Part A", "Part B", "Part C"]
    assert [t.name for t in fig.data] == chapters * 2
    assert [t.visible for t in fig.data] == [True] * 4 + [False] * 4
    assert all(t.orientation == "h" for t in fig.data)
    assert list(fig.data[1].y) == ["a/one", "a/two"] and list(fig.data[1].x) == [40, 60]
    assert list(fig.data[5].x) == [900, 1200]  # Part A's memory
    (ceiling,) = fig.layout.shapes
    assert ceiling.x0 == ceiling.x1 == perf.TARGET_PEAK_MB and ceiling.line.dash == "dash"
    assert not ceiling.visible  # the time view shows no memory ceiling
    time_button, memory_button = fig.layout.updatemenus[0].buttons
    assert memory_button.args[0]["visible"] == [False] * 4 + [True] * 4
    assert memory_button.args[1]["shapes[0].visible"] is True
    assert time_button.args[1]["shapes[0].visible"] is False


def test_gold_vs_kl_figure_reads_the_benchmark_methods():
    from rlhf_lib.beyond_ppo import METHOD_NAMES
    from rlhf_lib.dashboard import gold_vs_kl_figure

    fig = gold_vs_kl_figure(methods_report()["methods"])
    assert [t.name for t in fig.data] == [METHOD_NAMES[m] for m in ("ppo", "grpo", "rloo", "dpo")]
    assert list(fig.data[0].y) == [0.2, 0.55]


def test_binder_memory_sentence():
    from rlhf_lib.performance import binder_memory_sentence

    report = {"binder_limit_mb": 2048, "pages": [
        {"twin": "a.ipynb", "peak_server_and_kernel_mb": 900.0, "server_and_idle_kernel_mb": 300.0},
        {"twin": "b.ipynb", "peak_server_and_kernel_mb": 2100.4, "server_and_idle_kernel_mb": 310},
    ]}  # fmt: skip
    sentence = binder_memory_sentence(report)
    assert sentence.startswith("With b.ipynb") and "2100 MB" in sentence and "over the" in sentence
    report["pages"].pop()
    assert "within the 2048 MB limit" in binder_memory_sentence(report)
    report["pages"][0] |= {"repeats": 3, "peak_server_and_kernel_mb_range": [850.0, 2050.0]}
    sentence = binder_memory_sentence(report)  # judged by the worst of the repeats
    assert "from 850 to 2050 MB over 3 runs" in sentence and "over the 2048 MB limit" in sentence
    with pytest.raises(ValueError, match="binder_memory.py"):
        binder_memory_sentence({"pages": [{"twin": "a.ipynb"}]})


def test_method_verdicts_follow_the_numbers():
    # ppo 0.35 ± 0.02, grpo 0.30, rloo 0.25, dpo 0.40 over 3 seeds: the standard error of a
    # difference is 0.02·sqrt(2/3) = 0.016, so only gaps up to 0.033 are seed noise.
    verdicts = perf.method_verdicts(methods_report())
    assert verdicts["gold"].startswith("DPO (TRL) gained the most gold (+0.400 ± 0.020")
    assert "beyond seed noise of every other method" in verdicts["gold"]
    close = methods_report(method("ppo", 0.55, 0.003), method("grpo", 0.53, 0.003),
                           method("rloo", 0.40, 0.003))  # fmt: skip
    verdicts = perf.method_verdicts(close)
    assert "GRPO (TRL) (+0.330 ± 0.020) is within seed noise of it" in verdicts["gold"]
    assert verdicts["gold"].endswith("RLOO (TRL) (+0.200 ± 0.020) gained less")
    assert verdicts["cost"].count("(1.00×)") == 3 and verdicts["dpo"] == ""
    cheap = method("rloo", 0.40, 0.003) | {"train_cpu_seconds": 50.0, "final_kl": 2.0}
    verdicts = perf.method_verdicts(methods_report(method("ppo", 0.55, 0.003), cheap))
    assert verdicts["cost"] == "RLOO (TRL) 50 CPU-s (1.00×), PPO (ours) 100 CPU-s (2.00×)"
    assert verdicts["kl"].startswith("RLOO (TRL) ended at the lowest KL of the online methods, 2.0")


def test_method_verdicts_without_any_spread_over_seeds():
    steady = [method(name, gold, 0.003) | {"gold_gain_std": 0.0}
              for name, gold in (("ppo", 0.55), ("rloo", 0.45), ("dpo", 0.60))]  # fmt: skip
    verdicts = perf.method_verdicts(methods_report(*steady))
    assert verdicts["dpo"] == (
        "DPO gained +0.400 ± 0.000; the online methods' gains did not vary over seeds at all, so "
        "there is no spread to compare its own with"
    )
    assert "beyond seed noise of every other method" in verdicts["gold"]


def test_sessions_by_part_opens_with_the_introduction_and_skips_the_back_matter(tmp_path):
    chapters = perf.toc_chapters(toy_book(tmp_path) / "_toc.yml")
    sessions = perf.sessions_by_part(chapters)
    assert sessions == {
        "Part A": ["book/intro.md", "book/a/one.md", "book/a/two.md"],
        "Part B": ["book/b/three.md"],
        "Part C": ["book/c/four.md"],
    }
    assert list(perf.sessions_by_part(chapters, leave_out=("Part C", "Back matter"))) == [
        "Part A",
        "Part B",
    ]
    # The real book: every part but the back matter, the introduction in the first session.
    real = perf.sessions_by_part()
    assert "Back matter" not in real and next(iter(real.values()))[0] == "book/intro.md"


def test_session_plan_table_says_which_pages_were_not_measured(tmp_path):
    chapters = perf.toc_chapters(toy_book(tmp_path) / "_toc.yml")
    sessions = perf.sessions_by_part(chapters)
    sessions["Part B"].append("book/b/new.md")  # a page newer than the benchmark
    report = execution_report()
    report["pages"][3]["error"] = "KeyError: 'x'"  # book/b/three.md stopped at an error
    table = perf.session_plan_table(report, sessions)
    assert list(table["page"]) == ["intro", "a/one", "a/two", "b/three", "b/new", "c/four"]
    assert list(table["session"]) == ["Part A"] * 3 + ["Part B"] * 2 + ["Part C"]
    new = table.set_index("page").loc["b/new"]
    assert math.isnan(new["seconds"]) and new["note"] == perf.NOT_MEASURED
    assert "error" in table.set_index("page").loc["b/three", "note"]
    assert table.set_index("page").loc["a/two", "seconds"] == 60.0

    summary = perf.session_summary(table)
    assert list(summary.index) == ["Part A", "Part B", "Part C"]
    assert summary.loc["Part A", "seconds"] == 5 + 40 + 60
    assert summary.loc["Part A", "peak MB"] == 1200
    assert summary.loc["Part B", "not measured"] == 1 and summary.loc["Part B", "seconds"] == 100
    only_new = perf.session_summary(perf.session_plan_table(report, {"S": ["book/b/new.md"]}))
    assert math.isnan(only_new.loc["S", "seconds"]) and only_new.loc["S", "not measured"] == 1
    with pytest.raises(ValueError, match="book_execution.py"):
        perf.session_plan_table({"pages": []}, sessions)


def test_commit_line_names_the_measured_commit(tmp_path):
    import subprocess

    recorded = {"git": {"commit": "3b4b695ccb5a5e8917dda6cd05f92d1b3323f3cc", "dirty": True}}
    line = perf.commit_line(recorded, "page_weight", tmp_path)
    assert line == "The benchmark measured commit 3b4b695ccb with uncommitted changes."
    results_only = {"git": {"commit": "3b4b695ccb5a5e8917dda6cd05f92d1b3323f3cc", "dirty": True,
                            "changed": [" M benchmarks/results/frontier.json"]}}  # fmt: skip
    assert perf.commit_line(results_only, "rl_vs_trl", tmp_path).endswith("3b4b695ccb.")
    # No git record and no repository: the sentence says the commit is unknown.
    assert perf.results_commit("book_execution", tmp_path) is None
    assert "does not record" in perf.commit_line({}, "book_execution", tmp_path)

    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=tmp_path, check=True, capture_output=True,
        )  # fmt: skip

    git("init", "-q")
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "book_execution.json").write_text("{}")
    git("add", ".")
    git("commit", "-q", "-m", "results")
    (tmp_path / "other.txt").write_text("later work")
    git("add", ".")
    git("commit", "-q", "-m", "later")
    commit, date = perf.results_commit("book_execution", tmp_path)
    first = subprocess.run(
        ["git", "rev-list", "--max-parents=0", "--abbrev-commit", "HEAD"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert first.startswith(commit) and len(date) == 10
    line = perf.commit_line({}, "book_execution", tmp_path)
    assert f"last committed in {commit} on {date}" in line
    assert perf.results_commit("rl_vs_trl", tmp_path) is None  # never committed


def test_implementation_targets_compare_the_same_algorithm():
    base = [method("ppo", 0.55, 0.003), method("grpo", 0.50, 0.002), method("rloo", 0.45, 0.002)]
    fast = perf.implementation_targets(methods_report(
        *base, method("rloo_ours", 0.45, 0.003), method("grpo_ours", 0.50, 0.0029)))  # fmt: skip
    assert fast["rloo_impl"]["status"] == "met" and fast["rloo_impl"]["measured"].startswith(
        "1.50×"
    )
    assert fast["grpo_impl"]["status"] == "missed"  # 1.45×
    assert fast["best"]["status"] == "met"  # PPO 0.003 over 0.002
    # faster, but a gold gain beyond one seed std below TRL's: missed
    worse = perf.implementation_targets(methods_report(*base, method("rloo_ours", 0.40, 0.01)))
    assert worse["rloo_impl"]["status"] == "missed"
    assert worse["grpo_impl"]["status"] == "not tested"  # no run of grpo_ours
    assert "grpo_ours" in worse["grpo_impl"]["why"]
    unequal = perf.implementation_targets(
        methods_report(*base, method("rloo_ours", 0.45, 0.01, samples=1920)))  # fmt: skip
    assert unequal["rloo_impl"]["status"] == "not tested"


def test_implementation_sentence_pairs_each_algorithm_with_its_twin():
    pair = methods_report(method("rloo", 0.45, 0.002), method("rloo_ours", 0.50, 0.003))
    sentence = perf.implementation_sentence(pair)
    assert sentence.startswith("our RLOO gained +0.300 gold") and "1.50× TRL's" in sentence
    assert "GRPO" not in sentence  # no pair of GRPO runs: nothing said about it
    assert perf.implementation_sentence(methods_report()) == ""


def value_report(*rows):
    def row(name, config, gain, cpu, rate_ci):
        return {"candidate": name, "config": config, "seeds": [0, 1, 2], "gold_gain": gain,
                "gold_gain_ci95": 0.05, "final_kl": 4.0, "train_cpu_seconds": cpu,
                "train_cpu_seconds_ci95": 3.0, "gold_gain_per_cpu_second": gain / cpu,
                "gold_gain_per_cpu_second_ci95": rate_ci,
                "explained_variance_last_5": 0.3}  # fmt: skip

    return {"candidates": [row(*r) for r in rows]}


def test_value_model_verdicts_follow_the_numbers():
    from rlhf_lib.ppo import PPOConfig

    default = {"critic_layers": PPOConfig().critic_layers, "value_model": "separate"}
    other = {"critic_layers": None if default["critic_layers"] else 1, "value_model": "separate"}
    report = value_report(
        ("whole", other, 0.30, 60.0, 0.0002), ("cut", default, 0.30, 40.0, 0.0002)
    )
    table = perf.value_models_table(report)
    assert list(table.index) == ["whole", "cut"]
    verdict = perf.value_models_verdict(report)
    assert verdict.startswith("cut gained the most gold per CPU-second, 1.50×")
    assert "do not overlap" in verdict and verdict.endswith("default value model is: cut")
    assert "in 67% of its training CPU-seconds" in perf.critic_choice_sentence(report)
    noisy = value_report(("whole", other, 0.30, 60.0, 0.004), ("cut", default, 0.30, 40.0, 0.004))
    assert "overlap: with these seeds" in perf.value_models_verdict(noisy)
    alone = value_report(("whole", default, 0.30, 60.0, 0.001), ("cut", other, 0.20, 40.0, 0.001))
    assert perf.value_models_verdict(alone).startswith("the separate critic with all its blocks")


def test_the_table_is_in_book_order_whatever_order_the_pages_ran_in():
    report = execution_report()
    in_book_order = [p["page"] for p in report["pages"]]
    report["pages"].reverse()  # two at a time, the pages finish in the order of their chunks
    table = perf.execution_table(report, CHAPTERS)
    assert ["book/" + page + ".md" for page in table["page"]] == in_book_order
    assert list(perf.execution_table(report, {})["page"]) == list(reversed(table["page"]))
