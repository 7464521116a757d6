"""Turning next-token logits into text: greedy, temperature, top-k, top-p, and the KV cache.

Introduced in chapter 2, "Causal transformers" (page "A base model of our own"). A causal LM only
gives a distribution over the next token; *decoding* chooses from it, appends the choice and asks
again. Each rule below is a small function of the logits ``[..., vocab]``, so they can be tested
and combined; :func:`generate` is the loop, written out, with or without a KV cache.
"""

from __future__ import annotations

import inspect
import time
from numbers import Real

import plotly.graph_objects as go
import torch

from rlhf_lib import checks
from rlhf_lib.rollout import forward_with_cache


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by ``temperature``: < 1 sharpens the distribution (safer, duller), > 1 flattens it."""
    if not _is_number(temperature) or not temperature > 0:
        raise ValueError(
            f"temperature must be a number > 0, got {temperature!r}; for the most likely token, "
            "greedy=True."
        )
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits, set the rest to ``-inf`` (``None`` or 0 keeps all)."""
    if k is None:
        return logits
    if not checks.is_int(k) or k < 0:
        raise ValueError(f"top_k must be a positive int (or None to keep all), got {k!r}.")
    if k == 0:
        return logits
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # the k-th largest, per row
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al., 2020): keep the smallest set of most likely tokens whose
    probabilities add up to at least ``p``; the most likely token is always kept."""
    if p is not None and not (_is_number(p) and 0 < p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], got {p!r}.")
    if p is None or p == 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    # drop a token if the tokens *before* it already reach p (so the one that crosses p stays)
    drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token(
    logits: torch.Tensor,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` ``[B, vocab]`` -> ``[B, 1]``."""
    if torch.isnan(logits).any() or (logits == float("inf")).any():
        raise ValueError(
            "the logits hold NaN or +inf: the model's output is broken (NaN weights, or a "
            "division by zero), so no token can be sampled from it."
        )
    if (logits == float("-inf")).all(-1).any():
        raise ValueError(
            "every logit of a row is -inf: every token is masked out, so none can be picked. "
            "Check the mask or filter that produced these logits."
        )
    if greedy:
        return logits.argmax(-1, keepdim=True)
    logits = top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _logits(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


def _vocab_size(model) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "vocab_size", None)


_context_length = checks.context_length


def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    use_cache: bool = True,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Autoregressive generation, one token at a time, from an HF causal LM (``use_cache=False``
    also works with :class:`rlhf_lib.gpt.GPT` and :class:`rlhf_lib.gpt.LLaMA`).

    ``input_ids`` ``[B, T]`` are prompts of equal length (no padding). Without a cache every step
    runs the whole sequence again (cost ~ T^2 per token, in all). With ``use_cache`` the keys and
    values of past tokens are kept, and each step feeds only the newest token. Both give the same
    tokens. Rows that produced ``eos_token_id`` keep receiving it. Returns ``[B, T + new]``;
    ``max_new_tokens=0`` returns the prompts unchanged.
    """
    if isinstance(input_ids, torch.Tensor) and input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}.")
    vocab = _vocab_size(model)
    if vocab is not None:
        checks.check_token_ids(input_ids, vocab, "input_ids")
    if not checks.is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}.")
    if input_ids.size(1) == 0:
        raise ValueError(
            "input_ids holds no tokens (shape [B, 0]): generation continues a prompt of at least "
            "one token; start from the tokenizer's BOS token."
        )
    forward = inspect.signature(model.forward).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in forward.values())
    if use_cache and not ({"past_key_values", "cache"} & forward.keys() or takes_any):
        raise ValueError(
            f"{type(model).__name__} keeps no KV cache (its forward takes no past_key_values): "
            "pass use_cache=False, which runs the whole sequence at every step."
        )
    limit = _context_length(model)
    if limit is not None and input_ids.size(1) + max_new_tokens > limit:
        raise ValueError(
            f"The prompt has {input_ids.size(1)} tokens and {max_new_tokens} new ones were asked "
            f"for, but the model's context is {limit} tokens. Shorten the prompt or ask for at "
            f"most {max(0, limit - input_ids.size(1))} new tokens."
        )
    was_training = model.training
    model.eval()
    ids = input_ids
    done = torch.zeros(ids.size(0), 1, dtype=torch.bool, device=ids.device)
    past = None
    for _ in range(max_new_tokens):
        if use_cache:
            # first step: the whole prompt; later steps: only the newest token, plus the cache
            newest = ids if past is None else ids[:, -1:]
            out, past = forward_with_cache(model, past, input_ids=newest)
        else:  # the whole sequence again (an HF model, or our own GPT / LLaMA)
            out = model(ids, use_cache=False) if hasattr(model, "generation_config") else model(ids)
        logits = _logits(out)[:, -1, :]  # [B, vocab]: the distribution of the next token
        token = next_token(logits, greedy=greedy, temperature=temperature, top_k=top_k,
                           top_p=top_p, generator=generator)  # fmt: skip
        if eos_token_id is not None:
            token = token.masked_fill(done, eos_token_id)
            done = done | (token == eos_token_id)
        ids = torch.cat([ids, token], dim=1)
        if eos_token_id is not None and done.all():
            break
    model.train(was_training)
    return ids


def time_generation(model, input_ids, max_new_tokens: int, use_cache: bool, repeats: int = 3):
    """Best-of-``repeats`` wall time (seconds) of greedy :func:`generate`, for the KV-cache demo."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        generate(model, input_ids, max_new_tokens, use_cache=use_cache, greedy=True)
        best = min(best, time.perf_counter() - start)
    return best


DEFAULT_SETTINGS = [
    {"name": "greedy", "greedy": True},
    {"name": "temperature 0.7", "temperature": 0.7},
    {"name": "temperature 1.0", "temperature": 1.0},
    {"name": "temperature 1.5", "temperature": 1.5},
    {"name": "top-k 5", "top_k": 5},
    {"name": "top-p 0.9", "top_p": 0.9},
    {"name": "temperature 1.5 + top-p 0.9", "temperature": 1.5, "top_p": 0.9},
]


def sample_settings(model, tokenizer, prompt: str, settings=None, n: int = 4, max_new_tokens=40,
                    seed: int = 0) -> dict[str, list[str]]:  # fmt: skip
    """``n`` continuations of ``prompt`` under each decoding setting: ``{name: [text, ...]}``."""
    settings = DEFAULT_SETTINGS if settings is None else settings
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be one string, got {type(prompt).__name__}.")
    checks.argument("sample_settings", "n", n, checks.ints)
    for i, setting in enumerate(settings):
        if not isinstance(setting, dict) or not isinstance(setting.get("name"), str):
            raise ValueError(
                f"settings[{i}] must be a dict with a 'name' (the table's label) and the "
                f"arguments of generate(), e.g. {{'name': 'top-k 5', 'top_k': 5}}; got {setting!r}."
            )
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    limit = _context_length(model) or (ids.size(1) + max_new_tokens)
    if ids.size(1) >= limit:
        raise ValueError(
            f"The prompt has {ids.size(1)} tokens, but the model's context is {limit}: nothing is "
            "left to generate. Shorten the prompt."
        )
    max_new_tokens = min(max_new_tokens, limit - ids.size(1))
    result = {}
    for setting in settings:
        kwargs = {k: v for k, v in setting.items() if k != "name"}
        n_rows = 1 if kwargs.get("greedy") else n  # greedy gives one answer only
        out = generate(model, ids.repeat(n_rows, 1), max_new_tokens, eos_token_id=
                       tokenizer.eos_token_id, generator=torch.Generator().manual_seed(seed),
                       **kwargs)  # fmt: skip
        result[setting["name"]] = [
            tokenizer.decode(row[ids.size(1) :], skip_special_tokens=True).strip() for row in out
        ]
    return result


def decoding_explorer_figure(prompt: str, samples: dict[str, list[str]]) -> go.Figure:
    """A table of continuations of ``prompt``, one decoding setting at a time (a dropdown picks
    it): the static page's version of the chapter's decoding explorer."""
    if not samples:
        raise ValueError("samples is empty: pass {setting name: [continuation, ...]}.")
    samples = {name: checks.require_texts(texts, "decoding_explorer_figure", f"samples[{name!r}]")
               for name, texts in samples.items()}  # fmt: skip
    names = list(samples)
    fig = go.Figure()
    for i, name in enumerate(names):
        texts = samples[name]
        fig.add_trace(
            go.Table(
                header=dict(values=["#", f"“{prompt}” + … ({name})"], align="left"),
                cells=dict(
                    values=[list(range(1, len(texts) + 1)), texts], align="left", height=28
                ),  # fmt: skip
                columnwidth=[0.06, 0.94],
                visible=i == 0,
            )
        )
    buttons = [
        dict(label=name, method="update",
             args=[{"visible": [j == i for j in range(len(names))]}])
        for i, name in enumerate(names)
    ]  # fmt: skip
    fig.update_layout(
        # on the right: the menu of settings sits on the left
        title={
            "text": f"Continuations of “{prompt}”, one decoding setting at a time",
            "x": 0.99,
            "xanchor": "right",
            "font": {"size": 14},
        },  # fmt: skip
        updatemenus=[
            dict(buttons=buttons, direction="down", x=0.0, y=1.2, xanchor="left", yanchor="top")
        ],
        margin=dict(l=10, r=10, t=70, b=10),
        height=320,
    )
    return fig


def decoding_explorer_widget(model, tokenizer, prompt: str = "The acting", n: int = 4,
                             max_new_tokens: int = 40):  # fmt: skip
    """The live decoding explorer (Binder, Colab, Jupyter): type a prompt, move the temperature,
    top-k, top-p and seed, and the table of ``n`` continuations is sampled and redrawn."""
    import ipywidgets as widgets

    from rlhf_lib.notebook import show_in_output

    def control(kind, value, description, **limits):
        return kind(value=value, description=description, continuous_update=False, **limits)

    box = control(widgets.Text, prompt, "prompt", layout=widgets.Layout(width="600px"))
    temperature = control(widgets.FloatSlider, 1.0, "temperature", min=0.1, max=2.0, step=0.1)
    top_k = control(widgets.IntSlider, 0, "top-k (0: all)", min=0, max=50)
    top_p = control(widgets.FloatSlider, 1.0, "top-p", min=0.05, max=1.0, step=0.05)
    seed = control(widgets.IntText, 0, "seed")
    out = widgets.Output()

    def redraw(_=None):
        name = f"temperature {temperature.value:.1f}, top-k {top_k.value}, top-p {top_p.value:.2f}"
        setting = {"name": name, "temperature": temperature.value,
                   "top_k": top_k.value or None, "top_p": top_p.value}  # fmt: skip
        if not box.value.strip():
            show_in_output(out, "Type a prompt: the model continues it.\n")
            return
        samples = sample_settings(model, tokenizer, box.value, [setting], n=n,
                                  max_new_tokens=max_new_tokens, seed=seed.value)  # fmt: skip
        show_in_output(out, decoding_explorer_figure(box.value, samples))

    for widget in (box, temperature, top_k, top_p, seed):
        widget.observe(redraw, names="value")
    redraw()
    return widgets.VBox([box, widgets.HBox([temperature, top_k]), widgets.HBox([top_p, seed]), out])
