"""The chapters' set-up call, the progress bar and the device choice."""

import os

import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

from rlhf_lib import notebook, setup_notebook
from rlhf_lib.device import get_device


def test_setup_is_reproducible_and_offline(monkeypatch):
    for key in notebook.OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    device = setup_notebook(seed=3)
    first = torch.rand(3)
    setup_notebook(seed=3)
    assert torch.equal(first, torch.rand(3))
    assert device == get_device()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert pio.renderers.default == "notebook"


def test_figures_embed_no_cdn_script():
    setup_notebook(seed=0)
    bundle = pio.renderers["notebook"].to_mimebundle(go.Figure(go.Scatter(y=[1, 2])).to_dict())
    html = bundle["text/html"]
    assert "plotly-graph-div" in html
    assert "cdn" not in html.lower() and "<script src=" not in html


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        notebook.seed_everything(seed)


def test_bad_threads():
    with pytest.raises(ValueError, match="threads"):
        setup_notebook(threads=0)


def test_progress_prints_one_summary_line_during_the_build(monkeypatch, capsys):
    monkeypatch.setenv(notebook.BUILD_ENV, "1")
    bar = notebook.progress(range(5), desc="training")
    for _ in bar:
        bar.set_postfix(loss=0.5)
    bar.close()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("training: 100%") and "5/5" in lines[0] and "loss=0.5" in lines[0]


def test_a_disabled_progress_bar_prints_nothing_during_the_build(monkeypatch, capsys):
    monkeypatch.setenv(notebook.BUILD_ENV, "1")
    bar = notebook.progress(range(3), disable=True)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert capsys.readouterr().out == ""


def test_progress_is_tqdm_when_live(monkeypatch):
    monkeypatch.delenv(notebook.BUILD_ENV, raising=False)
    bar = notebook.progress(range(2), disable=True)
    assert not isinstance(bar, notebook.SummaryLineProgress)
    assert list(bar) == [0, 1]


def test_device_choice(monkeypatch):
    monkeypatch.delenv("RLHF_BOOK_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected
    assert get_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="not a device"):
        get_device("tpu")
    monkeypatch.setenv("RLHF_BOOK_DEVICE", "gpu")
    with pytest.raises(ValueError, match="RLHF_BOOK_DEVICE="):
        get_device()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no GPU"):
            get_device("cuda")


def test_numpy_scalars_print_as_plain_numbers_for_glue():
    import numpy as np

    setup_notebook(seed=0)
    assert repr(np.float64(0.5)) == "0.5"  # myst-nb's glue parses this text to format it
