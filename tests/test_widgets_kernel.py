"""Every live widget of the book redraws inside its own output, driven through a real kernel.

For each widget: start a kernel, display the widget, send the comm ``update`` a browser sends when
a control moves, and check that a new figure landed inside the widget's ``Output``. This runs on
the project's ipywidgets 8 here; ``test_reader_env.py`` runs the same scenarios in a clean virtual
environment with Colab's ipywidgets 7.7 and plotly 5.24.
"""

from __future__ import annotations

import pytest
from live_kernel import LiveKernel

SETUP = """
from IPython.display import display
from rlhf_lib import setup_notebook
setup_notebook(seed=0)
"""

ATTENTION = """
import numpy as np
from rlhf_lib.explorer import attention_explorer_widget

def compute(text):
    if not text.strip():
        raise ValueError("type at least one character")
    tokens = list(text)
    uniform = np.full((len(tokens), len(tokens)), 1 / len(tokens))
    return {"encoder self-attention": [[uniform]]}, {"encoder self-attention": (tokens, tokens)}

display(attention_explorer_widget(compute, "abc"))
"""

POSITIONAL = """
from rlhf_lib.explorer import positional_encoding_widget
display(positional_encoding_widget(max_len=16, d_model=8))
"""

# A tiny random GPT-2 and a character tokenizer: the widget's wiring is what is tested.
DECODING = """
import types
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from rlhf_lib.decoding import decoding_explorer_widget

class Characters:
    eos_token_id = 0
    def __call__(self, text, return_tensors=None):
        return types.SimpleNamespace(input_ids=torch.tensor([[1 + ord(c) % 40 for c in text]]))
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(97 + int(i) % 26) for i in ids)

torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=41, n_positions=48, n_embd=16, n_layer=1,
                                   n_head=2)).eval()
display(decoding_explorer_widget(model, Characters(), prompt="the film", max_new_tokens=8))
"""

DASHBOARD = """
from rlhf_lib.dashboard import dashboard_widget
history = [{"step": s, "objective/scores": 0.1 * s, "objective/kl": 0.5 * s} for s in range(1, 6)]
display(dashboard_widget({"run": history}))
"""


def shape(z) -> tuple[int, int]:
    """A heatmap's ``z`` shape: a list of rows (plotly 5) or a typed array (plotly 6+)."""
    if isinstance(z, dict):
        return tuple(int(n) for n in z["shape"].split(","))
    return len(z), len(z[0])


def check_every_widget_redraws(kernel: LiveKernel) -> None:
    """The scenarios, one per live widget of the book (shared with the clean-environment test)."""
    kernel.run(SETUP)

    def new_widgets(code):
        before = set(kernel.models)
        kernel.run(code)
        return [comm_id for comm_id in kernel.models if comm_id not in before]

    def output_of(ids):
        (output,) = [i for i in ids if kernel.models[i]["_model_name"] == "OutputModel"]
        assert len(kernel.figures_in(output)) == 1, "the widget shows no figure before any change"
        return output

    # the attention explorer: type new text, the map is drawn for the new tokens
    ids = new_widgets(ATTENTION)
    box, output = kernel.find("TextModel", value="abc"), output_of(ids)
    kernel.move(box, value="hello")
    (figure,) = kernel.figures_in(output)
    assert "hello" in figure["layout"]["title"]["text"]
    assert shape(figure["data"][0]["z"]) == (5, 5)  # one row and column per character
    kernel.move(box, value="   ")  # a bad input shows its message inside the widget
    assert "type at least one character" in kernel.models[output]["outputs"][0]["text"]

    # the positional-encoding explorer: a slider changes the number of positions
    ids = new_widgets(POSITIONAL)
    slider, output = kernel.find("IntSliderModel", description="max_len"), output_of(ids)
    kernel.move(slider, value=40)
    (figure,) = kernel.figures_in(output)
    assert shape(figure["data"][0]["z"]) == (8, 40)  # d_model x positions

    # the decoding explorer: a new temperature samples and draws a new table
    ids = new_widgets(DECODING)
    temperature, output = kernel.find("FloatSliderModel", description="temperature"), output_of(ids)
    kernel.move(temperature, value=1.7)
    (figure,) = kernel.figures_in(output)
    assert "temperature 1.7" in figure["data"][0]["header"]["values"][1]

    # the PPO dashboard: choosing another metric redraws it (a Dropdown syncs its index)
    ids = new_widgets(DASHBOARD)
    metric, output = kernel.find("DropdownModel", description="metric"), output_of(ids)
    (before,) = kernel.figures_in(output)
    assert not before["layout"]["yaxis"]["title"]["text"].startswith("KL")
    kernel.move(metric, index=1)  # objective/kl
    (after,) = kernel.figures_in(output)
    assert after["layout"]["yaxis"]["title"]["text"].startswith("KL to the reference")


@pytest.fixture(scope="module")
def kernel():
    live = LiveKernel()
    yield live
    live.close()


def test_every_live_widget_redraws_inside_its_output(kernel):
    check_every_widget_redraws(kernel)
