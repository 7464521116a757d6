"""Figures for looking inside attention: an attention explorer and positional-encoding plots.

Introduced in Chapter 1 (Transformers); Chapter 2 reuses :func:`attention_figure` for the causal
maps of GPT and LLaMA models. Each figure comes from a *pure* function that returns a plotly
``go.Figure`` whose own controls (dropdowns, sliders) work on the static website with no kernel.
The ``*_widget`` functions wrap the same builders in ipywidgets for live use (Binder, Colab): they
add what needs Python, such as running the model on new input text.

The attention format every function here accepts::

    maps = {
        "encoder self-attention": [            # one entry per kind of attention
            [w_l0_h0, w_l0_h1, ...],           # layer 0: one [Tq, Tk] array per head
            [w_l1_h0, w_l1_h1, ...],           # layer 1
        ],
        "cross-attention": [...],
    }
    labels = {"encoder self-attention": (query_labels, key_labels), ...}

Row i of a map is query i; its entries are how much query i takes from each key (a row sums to 1).
A causal LM has one kind (``{"self-attention": ...}``) and ``labels = (tokens, tokens)`` will do:
a single ``(query_labels, key_labels)`` pair is used for every kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rlhf_lib import checks

HEATMAP_SCALE = "Blues"


def _as_array(w) -> np.ndarray:
    if hasattr(w, "detach"):  # a torch tensor
        w = w.detach().cpu().numpy()
    return np.asarray(w, dtype=float)


def _is_labels(labels) -> bool:
    """A sequence of labels, one per query or key (tokens; a list, a tuple or an array)."""
    return (
        hasattr(labels, "__len__")
        and hasattr(labels, "__iter__")
        and not isinstance(labels, str | bytes | dict)
        and not any(isinstance(label, list | tuple | dict) for label in labels)
    )


def _validate_maps(maps, labels) -> tuple[dict, dict]:
    if not isinstance(maps, dict) or not maps:
        raise TypeError(
            "maps must be a non-empty dict {kind: [layers][heads] of [Tq, Tk] arrays}, "
            f"got {type(maps).__name__}."
        )
    # one (query_labels, key_labels) pair, as a tuple or a list, serves every kind
    if isinstance(labels, tuple | list) and len(labels) == 2 and all(map(_is_labels, labels)):
        labels = dict.fromkeys(maps, labels)
    if not isinstance(labels, dict) or set(labels) != set(maps):
        raise ValueError(
            "labels must be one (query_labels, key_labels) pair, or a dict with exactly the keys "
            f"of maps {list(maps)}."
        )
    arrays: dict = {}
    for kind, layers in maps.items():
        arrays[kind] = [[_as_array(w) for w in heads] for heads in layers]
        if not arrays[kind]:
            raise ValueError(
                f"{kind!r} has no layers: give a list of layers, each a list of one [Tq, Tk] map "
                "per head."
            )
        q_labels, k_labels = labels[kind]
        for li, heads in enumerate(arrays[kind]):
            if not heads:
                raise ValueError(
                    f"{kind!r} layer {li} has no heads: give one [Tq, Tk] map per head."
                )
            if len(heads) != len(arrays[kind][0]):
                raise ValueError(f"{kind!r}: every layer must have the same number of heads.")
            for hi, w in enumerate(heads):
                if w.shape != (len(q_labels), len(k_labels)):
                    raise ValueError(
                        f"{kind!r} layer {li} head {hi}: map of shape {w.shape} does not match "
                        f"{len(q_labels)} query labels × {len(k_labels)} key labels."
                    )
    return arrays, {k: (list(map(str, q)), list(map(str, v))) for k, (q, v) in labels.items()}


def attention_figure(
    maps: dict,
    labels,
    title: str = "Attention weights",
    max_cols: int = 3,
    panel_px: int = 280,
    initial_kind: str | None = None,
) -> go.Figure:
    """One interactive figure for every attention map of one input.

    - a **dropdown** chooses the kind of attention (encoder self-attention, decoder masked
      self-attention, cross-attention, ...);
    - a **slider** chooses the head, or "mean" (the average over heads);
    - every **layer** is shown side by side (at most ``max_cols`` per row), so the figure shows the
      whole model at once; hovering over a cell names its query and key and gives the weight.

    The controls compose because they change different things: the dropdown toggles which traces
    are visible (one heatmap per kind and layer), the slider rewrites the heatmaps' values. It all
    runs in the browser, so it works on the static website. See the module docstring for the
    ``maps`` / ``labels`` format; ``initial_kind`` is the kind shown first (default: the first).
    """
    checks.argument("attention_figure", "max_cols", max_cols, checks.ints)
    checks.argument("attention_figure", "panel_px", panel_px)
    arrays, labels = _validate_maps(maps, labels)
    kinds = list(arrays)
    initial_kind = initial_kind or kinds[0]
    if initial_kind not in kinds:
        raise ValueError(f"initial_kind {initial_kind!r} is not in maps; choose one of {kinds}.")
    n_layers = max(len(layers) for layers in arrays.values())
    n_heads = max(len(layers[0]) for layers in arrays.values())
    cols = min(max_cols, n_layers)
    rows = math.ceil(n_layers / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"layer {i + 1}" for i in range(n_layers)],
        horizontal_spacing=0.12,
        vertical_spacing=0.25 / rows,
    )

    def values(kind, layer, head):  # head == n_heads means the mean over heads
        heads = arrays[kind][layer]
        return np.mean(heads, axis=0) if head >= len(heads) else heads[head]

    traces = []  # (kind, layer) of each trace, in order
    for kind in kinds:
        q_labels, k_labels = labels[kind]
        hover = [[f"{q} → {k}" for k in k_labels] for q in q_labels]
        for layer in range(len(arrays[kind])):
            fig.add_trace(
                go.Heatmap(
                    z=values(kind, layer, 0),
                    text=hover,
                    hovertemplate="query → key: %{text}<br>weight %{z:.3f}<extra></extra>",
                    zmin=0,
                    zmax=1,
                    colorscale=HEATMAP_SCALE,
                    showscale=layer == 0,
                    colorbar={"title": {"text": "weight"}, "len": 0.8},
                    visible=kind == initial_kind,
                ),
                row=layer // cols + 1,
                col=layer % cols + 1,
            )
            traces.append((kind, layer))

    def axes_layout(kind):
        q_labels, k_labels = labels[kind]
        layout = {}
        for layer in range(n_layers):
            suffix = "" if layer == 0 else str(layer + 1)
            layout[f"xaxis{suffix}"] = {
                "tickvals": list(range(len(k_labels))),
                "ticktext": k_labels,
                "range": [-0.5, len(k_labels) - 0.5],
                "tickangle": -60,
                "title": {"text": "key (attended to)"},
            }
            layout[f"yaxis{suffix}"] = {
                "tickvals": list(range(len(q_labels))),
                "ticktext": q_labels,
                "range": [len(q_labels) - 0.5, -0.5],  # first query on top, like a matrix
                "title": {"text": "query" if layer % cols == 0 else ""},
            }
        return layout

    buttons = [
        {
            "label": kind,
            "method": "update",
            "args": [{"visible": [k == kind for k, _ in traces]}, _flatten(axes_layout(kind))],
        }
        for kind in kinds
    ]

    def rounded(z):  # 3 decimals, as the hover shows: the page's HTML carries every head's map
        return np.round(np.asarray(z, dtype=np.float64), 3)

    head_names = [f"head {h + 1}" for h in range(n_heads)] + ["mean"]
    steps = [
        {
            "label": name,
            "method": "restyle",
            "args": [{"z": [rounded(values(kind, layer, h)) for kind, layer in traces]}],
        }
        for h, name in enumerate(head_names)
    ]
    fig.update_layout(
        title={"text": title, "x": 0.01, "y": 0.98},
        updatemenus=[
            {
                "buttons": buttons,
                "direction": "down",
                "x": 0.0,
                "xanchor": "left",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 30},
                "showactive": True,
                "active": kinds.index(initial_kind),
            }
        ],
        sliders=[
            {
                "steps": steps,
                "active": 0,
                "currentvalue": {"prefix": "showing "},
                "pad": {"t": 90},
                "len": 0.9,
                "x": 0.05,
            }
        ],
        height=rows * panel_px + 260,
        margin={"t": 120, "l": 90, "r": 40, "b": 40},
    )
    fig.update_layout(axes_layout(initial_kind))
    return fig


def _flatten(layout: dict) -> dict:
    """``{"xaxis": {"range": r}}`` -> ``{"xaxis.range": r}``.

    A button's layout update replaces every top-level key it names, so passing a whole ``xaxis``
    would wipe the subplot's domain and anchor; dotted keys change only the named properties.
    """
    return {
        f"{axis}.{key}": value for axis, props in layout.items() for key, value in props.items()
    }


def heads_overview_figure(maps: dict, labels, kind: str | None = None, panel_px: int = 150):
    """Every layer (rows) × head (columns) of one kind of attention as small multiples.

    The all-heads overview of Chapter 1: patterns (diagonal, previous token, "look at the first
    word") are easier to spot side by side than one at a time. Same ``maps``/``labels`` format
    as :func:`attention_figure`; ``kind`` defaults to the first kind in ``maps``.
    """
    checks.argument("heads_overview_figure", "panel_px", panel_px)
    arrays, labels = _validate_maps(maps, labels)
    kind = kind or next(iter(arrays))
    if kind not in arrays:
        raise ValueError(f"kind {kind!r} is not in maps; choose one of {list(arrays)}.")
    layers = arrays[kind]
    n_layers, n_heads = len(layers), len(layers[0])
    q_labels, k_labels = labels[kind]
    fig = make_subplots(
        rows=n_layers,
        cols=n_heads,
        subplot_titles=[f"L{li + 1} H{hi + 1}" for li in range(n_layers) for hi in range(n_heads)],
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
    )
    for li, heads in enumerate(layers):
        for hi, w in enumerate(heads):
            fig.add_trace(
                go.Heatmap(
                    z=w,
                    x=list(range(len(k_labels))),
                    y=list(range(len(q_labels))),
                    customdata=[[f"{q} → {k}" for k in k_labels] for q in q_labels],
                    hovertemplate="%{customdata}<br>weight %{z:.3f}<extra></extra>",
                    zmin=0,
                    zmax=1,
                    colorscale=HEATMAP_SCALE,
                    showscale=False,
                ),
                row=li + 1,
                col=hi + 1,
            )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(
        title=f"{kind}: every layer and head",
        height=n_layers * panel_px + 100,
        margin={"t": 80, "l": 30, "r": 30, "b": 30},
    )
    return fig


def attention_explorer_widget(
    compute: Callable[[str], tuple[dict, object]], text: str, title: str = "Attention weights"
):
    """A live explorer: type new input text, the model runs again, the figure is redrawn.

    ``compute(text)`` returns ``(maps, labels)`` in the format of :func:`attention_figure`
    (Chapter 1 passes a function that runs the trained translator). Needs a running kernel
    (Binder, Colab, Jupyter); the static website shows :func:`attention_figure` instead.
    A bad input shows its error message under the text box instead of raising.
    """
    import ipywidgets as widgets

    from rlhf_lib.notebook import show_in_output

    box = widgets.Text(
        value=text,
        description="input",
        continuous_update=False,
        layout=widgets.Layout(width="600px"),
    )
    out = widgets.Output()

    def redraw(_=None):
        try:
            maps, labels = compute(box.value)
        except ValueError as err:
            show_in_output(out, f"Cannot run on this input: {err}\n")
            return
        show_in_output(out, attention_figure(maps, labels, title=f"{title}: {box.value!r}"))

    box.observe(redraw, names="value")
    redraw()
    return widgets.VBox([box, out])


def positional_encoding_figure(
    max_len: int = 64,
    d_models: Sequence[int] = (16, 32, 64, 128),
    dims: Sequence[int] | None = None,
) -> go.Figure:
    """The sinusoidal positional encoding in three panels, with a slider over ``d_model``.

    Left: the encoding itself (position × dimension). Middle: a few dimensions as curves along the
    positions: low dimensions oscillate fast, high ones slowly (default: four sine dimensions
    spread from 0 to d_model/2). Right: the cosine similarity of
    every pair of positions, which is high near the diagonal and depends (almost) only on the
    distance between the two positions. Introduced in Chapter 1, "Positional encoding".
    """
    from rlhf_lib.attention import sinusoidal_positional_encoding

    if not hasattr(d_models, "__iter__") or isinstance(d_models, str):
        raise TypeError(
            f"d_models must be a list of widths such as (16, 32, 64), got {d_models!r}; for one "
            f"width pass ({d_models!r},)."
        )
    d_models = list(d_models)
    if not d_models or any(not checks.is_int(d) or d < 2 or d % 2 for d in d_models):
        raise ValueError(f"d_models must be even ints >= 2, got {d_models}.")
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=[
            "encoding PE[pos, i]",
            "dimensions along positions",
            "similarity of positions",
        ],
        horizontal_spacing=0.09,
    )
    n_traces_per = []
    for n, d in enumerate(d_models):
        pe = sinusoidal_positional_encoding(max_len, d).numpy()
        unit = pe / np.linalg.norm(pe, axis=1, keepdims=True)
        visible = n == len(d_models) // 2
        traces = [
            go.Heatmap(
                z=pe.T,
                zmin=-1,
                zmax=1,
                colorscale="RdBu",
                showscale=False,
                hovertemplate="pos %{x}, dim %{y}: %{z:.2f}<extra></extra>",
                visible=visible,
            )
        ]
        shown = dims if dims is not None else sorted({0, 2 * (d // 16), 2 * (d // 8), d // 2})
        for dim in [i for i in shown if i < d]:
            traces.append(
                go.Scatter(
                    x=list(range(max_len)),
                    y=pe[:, dim],
                    mode="lines",
                    name=f"dim {dim} ({'sin' if dim % 2 == 0 else 'cos'})",
                    visible=visible,
                    legendgroup=str(d),
                )
            )
        traces.append(
            go.Heatmap(
                z=unit @ unit.T,
                zmin=-1,
                zmax=1,
                colorscale="RdBu",
                colorbar={"title": {"text": "value"}, "x": 1.02},
                hovertemplate="pos %{y} vs %{x}: %{z:.2f}<extra></extra>",
                visible=visible,
            )
        )
        for i, trace in enumerate(traces):
            col = 1 if i == 0 else (3 if i == len(traces) - 1 else 2)
            fig.add_trace(trace, row=1, col=col)
        n_traces_per.append(len(traces))

    steps = []
    for n, d in enumerate(d_models):
        visible = [m == n for m, count in enumerate(n_traces_per) for _ in range(count)]
        steps.append({"label": str(d), "method": "update", "args": [{"visible": visible}]})
    fig.update_layout(
        # the title names the figure, also in its text alternative (notebook.figure_alt_text)
        title={"text": "Sinusoidal positional encoding", "x": 0.01},
        sliders=[
            {
                "steps": steps,
                "active": len(d_models) // 2,
                "currentvalue": {"prefix": "d_model = "},
                "pad": {"t": 50},
            }
        ],
        height=490,
        # no width: the figure fills the page column (the website's is about 700 px wide)
        showlegend=False,  # hover names each curve; a legend would cover the panels
        margin={"t": 90, "b": 40},
    )
    fig.update_xaxes(title_text="position", row=1, col=1)
    fig.update_yaxes(title_text="dimension i", row=1, col=1)
    fig.update_xaxes(title_text="position", row=1, col=2)
    fig.update_xaxes(title_text="position", row=1, col=3)
    fig.update_yaxes(title_text="position", autorange="reversed", row=1, col=3)
    return fig


def positional_encoding_widget(max_len: int = 64, d_model: int = 64):
    """Live :func:`positional_encoding_figure`: sliders for length, width and dimensions."""
    import ipywidgets as widgets

    from rlhf_lib.notebook import show_in_output

    def slider(name, value, lo, hi, step):
        return widgets.IntSlider(
            value=value, min=lo, max=hi, step=step, description=name, continuous_update=False
        )

    sliders = [
        slider("max_len", max_len, 8, 256, 8),
        slider("d_model", d_model, 4, 256, 4),
        slider("first dim", 0, 0, 64, 2),
    ]
    out = widgets.Output()

    def redraw(_=None):
        length, width, first = (s.value for s in sliders)
        dims = (first, first + 1, first + 8, first + 9)
        show_in_output(out, positional_encoding_figure(length, (width,), dims))

    for s in sliders:
        s.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(sliders), out])
