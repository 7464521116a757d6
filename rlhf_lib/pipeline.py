"""The pipeline map of the book's introduction: every stage of RLHF, and the chapter that builds it.

One pure function, :func:`pipeline_map`, returns a plotly figure. Its buttons switch every box
between what the stage is in this book's miniature world and what it was in InstructGPT
(Ouyang et al., 2022), so a reader sees which real thing each small piece stands for.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

# Okabe–Ito colours, which colour-blind readers tell apart (Tableau's put PPO's green beside
# the reward models' red). All are light enough for black box text at >= 5:1 contrast (WCAG 1.4.3;
# white text had 2.3:1 to 3.6:1 on most of the old colours). Okabe–Ito's blue is too dark for black
# text; the hidden gold preference stays grey (the chapters call it "the grey box").
PART_COLOURS = {
    1: "#56B4E9",  # transformers: sky blue
    2: "#009E73",  # causal transformers: bluish green
    3: "#E69F00",  # RLHF: orange
    4: "#CC79A7",  # reward models: reddish purple
    5: "#D55E00",  # PPO: vermillion
    6: "#F0E442",  # beyond PPO: yellow
    0: "#BBBBBB",  # hidden from training: grey
}
BOX_TEXT_COLOUR = "black"
PART_NAMES = {
    1: "Part 1 · Transformers",
    2: "Part 2 · Causal transformers",
    3: "Part 3 · RLHF",
    4: "Part 4 · Reward models",
    5: "Part 5 · PPO",
    6: "Part 6 · Beyond PPO",
    0: "Hidden from training",
}


@dataclass(frozen=True)
class Stage:
    key: str
    x: float
    y: float
    part: int
    in_this_book: str  # box text in the "this book" view (<br> breaks lines)
    in_instructgpt: str  # box text in the "InstructGPT" view
    detail: str  # hover text


# fmt: off
# One stage per two lines reads better than the formatter's one field per line.
STAGES = (
    Stage("transformer", 0, 2, 1, "Transformer<br>blocks", "Transformer<br>blocks",
          "Self-attention, multi-head attention, positions, feed-forward, layer norm."),
    Stage("corpus", 1, 2, 2, "Review generator<br>+ tokenizer", "Web-scale text<br>+ BPE tokenizer",
          "The language the base model learns: here, generated movie reviews."),
    Stage("base", 2, 2, 2, "Base model<br>(pretrained here)", "GPT-3<br>(175B parameters)",
          "A causal LM trained on next-token prediction."),
    Stage("sft", 3, 2, 3, "SFT<br>(TRL SFTTrainer)", "SFT on ~13k<br>demonstrations",
          "Supervised fine-tuning on demonstrations of the wanted behaviour."),
    Stage("pairs", 3, 1, 4, "Preference pairs<br>(datasets.Dataset)", "Rankings of<br>~33k prompts",
          "K completions of one prompt, every pair of them labelled by an annotator."),
    Stage("rm", 2, 1, 4, "Reward model<br>(TRL RewardTrainer)", "Reward model<br>(6B parameters)",
          "A scalar score per text, trained with the Bradley–Terry loss on all pairs of a prompt "
          "at once."),
    Stage("ppo", 1, 1, 5, "PPO + KL penalty<br>(rlhf_lib.ppo)", "PPO-ptx<br>(~31k prompts)",
          "The policy maximises reward minus β·KL to the SFT model."),
    Stage("beyond", 0, 0, 6, "DPO · GRPO · RLOO<br>(TRL trainers)",
          "Later methods<br>(DPO, GRPO, RLOO)",
          "Other ways to use the same preferences: DPO learns from the pairs directly; GRPO and "
          "RLOO replace PPO's value model with a group of samples per prompt."),
    Stage("annotators", 3, 0, 3, "Simulated annotators<br>(Bradley–Terry noise)",
          "~40 human<br>labelers",
          "Noisy judges: they agree with each other only part of the time (~73% in InstructGPT)."),
    Stage("gold", 2, 0, 0, "Hidden gold preference<br>(guarded VADER)", "What people<br>want",
          "Never shown to training. It lets this book measure what real RLHF cannot."),
    Stage("eval", 1, 0, 5, "Gold evaluation<br>(proxy vs gold)", "Human evaluation<br>(win rates)",
          "Every sample is scored by the proxy reward model and by the gold preference."),
)
# fmt: on

# (from, to, hidden): arrows from the hidden gold preference are drawn lighter.
EDGES = (
    ("transformer", "corpus", False),
    ("corpus", "base", False),
    ("base", "sft", False),
    ("sft", "pairs", False),
    ("pairs", "rm", False),
    ("rm", "ppo", False),
    ("annotators", "pairs", False),
    ("gold", "annotators", True),
    ("gold", "eval", True),
    ("ppo", "eval", False),
    ("rm", "beyond", False),
    ("pairs", "beyond", False),  # DPO learns from the pairs directly
    ("beyond", "eval", False),
)

# Edges whose straight line between box centres would cross another box: (dx of the tail on the
# bottom edge of its box, dx of the head on the top edge of its box), from the boxes' centres.
# "rm" -> "beyond" would clip PPO's box and "pairs" -> "beyond" the reward model's; both run
# below the middle row instead.
EDGE_ANCHORS = {("rm", "beyond"): (-0.2, -0.15), ("pairs", "beyond"): (-0.2, 0.2)}

BOX_HALF_WIDTH, BOX_HALF_HEIGHT = 0.44, 0.3


def pipeline_map(view: str = "book") -> go.Figure:
    """The RLHF pipeline as boxes and arrows, coloured by the part of the book that builds each.

    ``view`` is the view shown first: ``"book"`` (this book's miniature world) or
    ``"instructgpt"``; buttons above the figure switch between the two with no kernel needed.
    """
    if view not in ("book", "instructgpt"):
        raise ValueError(f"view must be 'book' or 'instructgpt', got {view!r}")
    by_key = {stage.key: stage for stage in STAGES}
    fig = go.Figure()

    for stage in STAGES:
        fig.add_shape(
            type="rect",
            x0=stage.x - BOX_HALF_WIDTH,
            x1=stage.x + BOX_HALF_WIDTH,
            y0=stage.y - BOX_HALF_HEIGHT,
            y1=stage.y + BOX_HALF_HEIGHT,
            fillcolor=PART_COLOURS[stage.part],
            opacity=0.9,
            layer="below",
            line=dict(color="white", width=2, dash="dot" if stage.part == 0 else "solid"),
        )
    for start, end, hidden in EDGES:
        a, b = by_key[start], by_key[end]
        if (start, end) in EDGE_ANCHORS:
            tail_dx, head_dx = EDGE_ANCHORS[start, end]
            tail = (a.x + tail_dx, a.y - BOX_HALF_HEIGHT)
            head = (b.x + head_dx, b.y + BOX_HALF_HEIGHT)
        else:
            tail, head = _edge_point(a, b), _edge_point(b, a)
        fig.add_annotation(
            x=head[0],
            y=head[1],
            ax=tail[0],
            ay=tail[1],
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            text="",
            showarrow=True,
            arrowhead=3,
            arrowsize=1.2,
            arrowwidth=2,
            arrowcolor="#777" if hidden else "#333",
        )

    for name, attribute in (("book", "in_this_book"), ("instructgpt", "in_instructgpt")):
        fig.add_trace(
            go.Scatter(
                x=[s.x for s in STAGES],
                y=[s.y for s in STAGES],
                mode="markers+text",
                name=name,
                visible=(name == view),
                showlegend=False,
                text=[getattr(s, attribute) for s in STAGES],
                textfont=dict(color=BOX_TEXT_COLOUR, size=11),
                marker=dict(size=1, color="rgba(0,0,0,0)"),
                hovertext=[f"<b>{PART_NAMES[s.part]}</b><br>{s.detail}" for s in STAGES],
                hoverinfo="text",
            )
        )
    # Legend entries for the colours (one invisible point per part).
    for part, colour in PART_COLOURS.items():
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=PART_NAMES[part],
                marker=dict(size=12, color=colour, symbol="square"),
                hoverinfo="skip",
            )
        )

    n_parts = len(PART_COLOURS)
    buttons = [
        dict(
            label="This book's miniature world",
            method="restyle",
            args=[{"visible": [True, False] + [True] * n_parts}],
        ),
        dict(
            label="InstructGPT (Ouyang et al., 2022)",
            method="restyle",
            args=[{"visible": [False, True] + [True] * n_parts}],
        ),
    ]
    fig.update_layout(
        # the title names the figure for every reader, and in its text alternative for a screen
        # reader (rlhf_lib.notebook.figure_alt_text); the top margin grew by its height
        title=dict(
            text="The RLHF pipeline, by the part of the book that builds each stage",
            x=0,
            y=0.98,
            yanchor="top",
        ),
        updatemenus=[
            dict(
                type="buttons",
                direction="right",
                buttons=buttons,
                active=0 if view == "book" else 1,
                x=0,
                y=1.16,
                xanchor="left",
            )
        ],
        xaxis=dict(visible=False, range=[-0.5, 3.5]),
        yaxis=dict(visible=False, range=[-0.45, 2.4]),
        height=540,
        margin=dict(l=10, r=10, t=110, b=10),
        plot_bgcolor="white",
        legend=dict(orientation="h", y=-0.02, x=0.5, xanchor="center", font=dict(size=11)),
        hoverlabel=dict(align="left"),
    )
    return fig


def _edge_point(stage: Stage, towards: Stage) -> tuple[float, float]:
    """Where the straight line from ``stage`` to ``towards`` leaves ``stage``'s box."""
    dx, dy = towards.x - stage.x, towards.y - stage.y
    scale = min(
        BOX_HALF_WIDTH / abs(dx) if dx else float("inf"),
        BOX_HALF_HEIGHT / abs(dy) if dy else float("inf"),
    )
    return stage.x + dx * scale, stage.y + dy * scale
