"""The chapters' set-up call, the progress bar and the device choice."""

import os
import sys
import types
from html import escape

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


@pytest.mark.parametrize(
    ("where", "renderer"),
    [
        ("build", "rlhf_site"),
        ("colab", "colab"),
        ("vscode", "vscode"),
        ("jupyterlab", "plotly_mimetype+notebook"),
    ],
)
def test_the_plotly_renderer_suits_the_environment(monkeypatch, where, renderer):
    for key in (notebook.BUILD_ENV, "VSCODE_PID", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if where == "build":
        monkeypatch.setenv(notebook.BUILD_ENV, "1")
    elif where == "colab":
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    elif where == "vscode":
        monkeypatch.setenv("VSCODE_PID", "1234")
    setup_notebook(seed=0)
    assert pio.renderers.default == renderer
    assert notebook.figure_mimebundle(go.Figure(go.Scatter(y=[1, 2]))), "empty bundle"


def test_site_figures_carry_no_plotly_js_and_no_cdn(monkeypatch):
    monkeypatch.setenv(notebook.BUILD_ENV, "1")
    setup_notebook(seed=0)
    bundle = notebook.figure_mimebundle(go.Figure(go.Scatter(y=[1, 2])))
    html = bundle["text/html"]
    assert "plotly-graph-div" in html and "Plotly.newPlot" in html
    assert len(html) < 20_000, "plotly.js is served once by the site, not with each figure"
    assert "cdn" not in html.lower() and "<script src=" not in html
    # the downloadable executed notebook still draws in JupyterLab, from plotly's own mime type
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [1, 2]


def test_site_figures_are_named_for_screen_readers(monkeypatch):
    monkeypatch.setenv(notebook.BUILD_ENV, "1")
    setup_notebook(seed=0)
    fig = go.Figure(go.Scatter(y=[1, 2], name='β <0.1> & "run"'))
    fig.update_layout(title="Reward <b>over</b> steps", xaxis_title="step", yaxis_title="reward")
    bundle = notebook.figure_mimebundle(fig)
    label = 'Line chart: Reward over steps; x: step, y: reward; series: β <0.1> & "run"'
    assert notebook.figure_alt_text(fig) == label
    html = bundle["text/html"]
    assert html.startswith(f'<div role="figure" aria-label="{escape(label, quote=True)}">')
    assert html.count("plotly-graph-div") == 1 and html.endswith("</div>")
    assert bundle["application/vnd.plotly.v1+json"]["layout"]["xaxis"]["title"]["text"] == "step"


def test_a_figure_without_a_title_is_still_described():
    from plotly.subplots import make_subplots

    lines = go.Figure([go.Scatter(y=[1, 2], name="train"), go.Scatter(y=[2, 1], name="eval")])
    lines.update_layout(xaxis_title="step")
    assert notebook.figure_alt_text(lines) == "Line chart; x: step; series: train, eval"
    assert notebook.figure_alt_text(go.Figure()) == "Chart"
    # hidden traces (another button's view) and legend-only colour keys do not count
    menu = go.Figure([go.Bar(y=[1], name="seconds"), go.Bar(y=[2], name="MB", visible=False)])
    assert notebook.figure_alt_text(menu) == "Bar chart; series: seconds"
    panels = make_subplots(rows=1, cols=2, subplot_titles=("proxy", "gold"))
    panels.add_trace(go.Scatter(y=[1], mode="markers", showlegend=False), row=1, col=1)
    panels.add_trace(go.Heatmap(z=[[1]], name="0"), row=1, col=2)
    panels.update_xaxes(title_text="√KL")
    assert notebook.figure_alt_text(panels) == (
        "Scatter plot and heatmap; x: √KL; panels: proxy, gold"
    )
    table = go.Figure(go.Table(header={"values": ["#", "text"]}, cells={"values": [[1], ["a"]]}))
    assert notebook.figure_alt_text(table) == "Table; columns: #, text"


def test_every_figure_of_the_library_has_a_title():
    from rlhf_lib.decoding import decoding_explorer_figure
    from rlhf_lib.explorer import positional_encoding_figure
    from rlhf_lib.pipeline import pipeline_map

    decoding = decoding_explorer_figure("The plot", {"greedy": [" was good."]})
    for fig in (pipeline_map(), positional_encoding_figure(d_models=(8,)), decoding):
        assert fig.layout.title.text, notebook.figure_alt_text(fig)
    assert notebook.figure_alt_text(pipeline_map()).startswith("Diagram: The RLHF pipeline")


def test_figures_take_colours_that_colour_blind_readers_tell_apart():
    setup_notebook(seed=0)
    colours = go.Figure().layout.template.layout.colorway
    assert list(colours) == list(notebook.OKABE_ITO[:7])
    assert "#EF553B" not in colours and "#00CC96" not in colours  # plotly's red and green
    # a figure on a white background keeps them (plain "plotly_white" would bring plotly's back)
    white = go.Figure(layout={"template": notebook.white_template()})
    assert list(white.layout.template.layout.colorway) == list(notebook.OKABE_ITO[:7])
    assert white.layout.template.layout.plot_bgcolor == "white"


def test_show_in_output_puts_the_figure_inside_the_widget(monkeypatch):
    import ipywidgets as widgets

    monkeypatch.delenv(notebook.BUILD_ENV, raising=False)
    setup_notebook(seed=0)
    out = widgets.Output()
    notebook.show_in_output(out, go.Figure(go.Scatter(y=[3, 4])))
    (item,) = out.outputs
    assert item["output_type"] == "display_data"
    assert item["data"]["application/vnd.plotly.v1+json"]["data"][0]["y"] == [3, 4]
    notebook.show_in_output(out, "Cannot run on this input\n")  # replaces, never appends
    assert out.outputs == (
        {"output_type": "stream", "name": "stdout", "text": "Cannot run on this input\n"},
    )


def test_glue_prints_name_and_value_outside_the_build(monkeypatch, capsys):
    import numpy as np

    monkeypatch.delenv(notebook.BUILD_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as in Colab: no myst-nb at all
    notebook.glue("kl", np.float64(0.123456), display=False)
    notebook.glue("steps", np.int64(30000))
    notebook.glue("method", "PPO")
    assert capsys.readouterr().out.splitlines() == ["kl = 0.1235", "steps = 30000", "method = PPO"]
    with pytest.raises(ValueError, match="glue name"):
        notebook.glue("two words", 1)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        notebook.seed_everything(seed)


def test_bad_threads():
    with pytest.raises(ValueError, match="threads"):
        setup_notebook(threads=0)
    with pytest.raises(ValueError, match="threads must be a positive int, got True"):
        setup_notebook(threads=True)


def test_threads_may_be_a_numpy_int(monkeypatch):
    import numpy as np

    for key in notebook.OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    threads = torch.get_num_threads()
    try:
        setup_notebook(threads=np.int64(1), plotly=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


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


def test_offline_mode_takes_effect_after_huggingface_hub_is_imported(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.utils import _telemetry

    for key in notebook.OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if imported before setup
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    sent = []
    monkeypatch.setattr(_telemetry, "_start_telemetry_thread", lambda: sent.append("started"))
    setup_notebook(plotly=False)
    assert constants.is_offline_mode() and constants.HF_HUB_DISABLE_TELEMETRY
    _telemetry.send_telemetry("rlhf_book/test")  # what TRL's trainers call in train()
    assert sent == []


def test_a_reader_who_sets_the_hub_online_keeps_it(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    notebook.go_offline()
    assert not constants.is_offline_mode()


def test_a_missing_local_folder_fails_at_once_naming_it(tmp_path):
    from rlhf_lib.runtime import local_folder

    assert local_folder(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="does-not-exist.*does not exist"):
        local_folder(tmp_path / "does-not-exist", "SFT model folder")
