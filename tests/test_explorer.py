"""Chapter 1: the attention explorer and positional-encoding figures (pure builders + widgets)."""

import numpy as np
import plotly.graph_objects as go
import pytest

from rlhf_lib.explorer import (
    attention_explorer_widget,
    attention_figure,
    heads_overview_figure,
    positional_encoding_figure,
    positional_encoding_widget,
)


def _maps(n_layers=2, n_heads=3, tq=4, tk=5):
    rng = np.random.default_rng(0)

    def rows(tq, tk):
        w = rng.random((tq, tk))
        return w / w.sum(1, keepdims=True)

    return {
        "encoder self-attention": [[rows(tk, tk) for _ in range(n_heads)] for _ in range(n_layers)],
        "cross-attention": [[rows(tq, tk) for _ in range(n_heads)] for _ in range(n_layers)],
    }


LABELS = {
    "encoder self-attention": (list("abcde"), list("abcde")),
    "cross-attention": (list("wxyz"), list("abcde")),
}


def test_attention_figure_controls():
    maps = _maps()
    fig = attention_figure(maps, LABELS)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 4  # one heatmap per (kind, layer)
    assert [t.visible for t in fig.data] == [True, True, False, False]
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == list(maps)
    assert menu.buttons[1].args[0]["visible"] == [False, False, True, True]
    assert list(menu.buttons[1].args[1]["yaxis.ticktext"]) == list("wxyz")
    assert "xaxis2.domain" not in menu.buttons[1].args[1]  # only ticks and ranges change
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["head 1", "head 2", "head 3", "mean"]
    z_head2 = steps[1].args[0]["z"]
    # the slider's maps are rounded to the 3 decimals the hover shows (they weigh on the page)
    assert np.allclose(z_head2[3], maps["cross-attention"][1][1], rtol=0, atol=5e-4)
    mean = np.mean(maps["encoder self-attention"][0], 0)
    assert np.allclose(steps[3].args[0]["z"][0], mean, rtol=0, atol=5e-4)


def test_attention_figure_single_label_pair_for_causal_lm():
    causal = {"self-attention": [[np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]]]}
    fig = attention_figure(causal, (["a", "b", "c"], ["a", "b", "c"]))
    assert len(fig.data) == 1


def test_attention_figure_errors():
    with pytest.raises(TypeError, match="non-empty dict"):
        attention_figure([], LABELS)
    with pytest.raises(ValueError, match="keys of maps"):
        attention_figure(_maps(), {"cross-attention": LABELS["cross-attention"]})
    bad = dict(LABELS, **{"cross-attention": (list("wxy"), list("abcde"))})
    with pytest.raises(ValueError, match="does not match"):
        attention_figure(_maps(), bad)


def test_one_label_pair_may_be_a_list_or_hold_tuples():
    causal = {"self-attention": [[np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]]]}
    as_list = attention_figure(causal, [["a", "b", "c"], ["a", "b", "c"]])
    of_tuples = attention_figure(causal, (("a", "b", "c"), ("a", "b", "c")))
    as_tuple = attention_figure(causal, (["a", "b", "c"], ["a", "b", "c"]))
    assert as_list.to_json() == of_tuples.to_json() == as_tuple.to_json()
    assert len(heads_overview_figure(causal, [("a", "b", "c"), ("a", "b", "c")]).data) == 1


def test_heads_overview():
    fig = heads_overview_figure(_maps(), LABELS, kind="cross-attention")
    assert len(fig.data) == 6
    with pytest.raises(ValueError, match="not in maps"):
        heads_overview_figure(_maps(), LABELS, kind="nope")


def test_positional_encoding_figure():
    fig = positional_encoding_figure(max_len=10, d_models=(4, 8), dims=(0, 1, 5))
    # d=4: heatmap + dims 0, 1 + similarity; d=8: heatmap + 3 dims + similarity
    assert len(fig.data) == 4 + 5
    steps = fig.layout.sliders[0].steps
    assert steps[0].args[0]["visible"] == [True] * 4 + [False] * 5
    sim = fig.data[3].z
    assert np.allclose(np.diag(sim), 1.0)
    with pytest.raises(ValueError, match="even"):
        positional_encoding_figure(d_models=(5,))


def test_widgets_build():
    w = attention_explorer_widget(lambda text: (_maps(), LABELS), "abc")
    assert w.children[0].value == "abc"

    def failing(text):
        raise ValueError("unknown word")

    attention_explorer_widget(failing, "zzz")  # shows the message, does not raise
    positional_encoding_widget(max_len=16, d_model=8)


def test_attention_figure_initial_kind():
    fig = attention_figure(_maps(), LABELS, initial_kind="cross-attention")
    assert [t.visible for t in fig.data] == [False, False, True, True]
    assert fig.layout.updatemenus[0].active == 1
    assert list(fig.layout.yaxis.ticktext) == list("wxyz")
    with pytest.raises(ValueError, match="initial_kind"):
        attention_figure(_maps(), LABELS, initial_kind="nope")
