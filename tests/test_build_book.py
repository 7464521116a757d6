"""How `make book` executes the pages: two at a time, in the chunks Sphinx reads."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from build_book import build_jobs, page_chunks  # noqa: E402
from twins import notebook_pages  # noqa: E402


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_the_chunks_hold_every_notebook_page_once(jobs):
    chunks = page_chunks(jobs)
    pages = [page for chunk in chunks for page in chunk]
    assert sorted(pages) == sorted(notebook_pages())
    assert len(pages) == len(set(pages))
    assert len(chunks) >= min(jobs, 2)  # more than one job splits the book


def test_one_job_reads_in_name_order_as_sphinx_does():
    (chunk,) = page_chunks(1)
    names = [page.relative_to(ROOT).with_suffix("").as_posix() for page in chunk]
    assert names == sorted(names)


def test_build_jobs_reads_the_environment(monkeypatch):
    monkeypatch.setenv("RLHF_BOOK_JOBS", "3")
    assert build_jobs() == 3
    monkeypatch.delenv("RLHF_BOOK_JOBS")
    assert 1 <= build_jobs() <= 2


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_jobs_value_says_what_to_set(monkeypatch, value):
    monkeypatch.setenv("RLHF_BOOK_JOBS", value)
    with pytest.raises(SystemExit, match="RLHF_BOOK_JOBS"):
        build_jobs()
