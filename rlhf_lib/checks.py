"""Checks shared by the library's configs, models and trainers (issue: bad input fails early).

Every config dataclass calls these in ``__post_init__``, so an impossible value fails when the
config is built, before any model loads, with a message that names the class, the field and the
fix: ``PPOConfig.kl_coef must be a finite number >= 0, got nan.`` Without them NaN, a negative
coefficient or zero epochs reach torch or TRL, which train on silently (TRL falls back to 3
epochs when given 0) or fail many frames deep.

The tokenizer and token-id checks below are what every model and trainer of the library calls
before the first forward pass. This module imports nothing from the rest of ``rlhf_lib``.
"""

from __future__ import annotations

import hashlib
import json
import math
from numbers import Integral, Real


class ConfigError(ValueError):
    """A config field that no run can use."""


def _field(config, name: str) -> str:
    return f"{type(config).__name__}.{name}"


def is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def ints(config, *names: str, minimum: int = 1) -> None:
    """Each field is an int >= ``minimum`` (sizes, counts, steps, epochs; seeds with 0)."""
    for name in names:
        value = getattr(config, name)
        if not is_int(value) or value < minimum:
            what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
            raise ConfigError(f"{_field(config, name)} must be {what}, got {value!r}.")


def _bounds(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    return f" {'<' if high_open else '<='} {high:g}" if high is not None else ""


def _within(value, low, high, low_open, high_open) -> bool:
    if not is_finite_number(value):
        return False
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or (value < high if high_open else value <= high)


def numbers(config, *names: str, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, optional: bool = False,
            hint: str = "") -> None:  # fmt: skip
    """Each field is a finite number within the bounds (``None`` too if ``optional``)."""
    for name in names:
        value = getattr(config, name)
        if not (value is None and optional) and not _within(value, low, high, low_open, high_open):
            raise ConfigError(
                f"{_field(config, name)} must be a finite number"
                f"{_bounds(low, high, low_open, high_open)}{' or None' if optional else ''}, "
                f"got {value!r}.{hint}"
            )


def number_list(config, name: str, *, length: int | None = None, low: float | None = None,
                high: float | None = None, low_open: bool = False,
                high_open: bool = False) -> None:  # fmt: skip
    """The field is a non-empty list of finite numbers within the bounds (``length`` of them)."""
    values = getattr(config, name)
    if hasattr(values, "tolist") and getattr(values, "ndim", None) == 1:  # a NumPy array
        values = values.tolist()  # a config is hashed as JSON: keep plain numbers
        setattr(config, name, values)
    ok = isinstance(values, (list, tuple)) and len(values) > 0
    ok = ok and (length is None or len(values) == length)
    if not ok or not all(_within(v, low, high, low_open, high_open) for v in values):
        count = f"{length}" if length else "a non-empty list of"
        raise ConfigError(
            f"{_field(config, name)} must be {count} finite numbers"
            f"{_bounds(low, high, low_open, high_open)}, got {values!r}."
        )


def bools(config, *names: str) -> None:
    """Each field is True or False: a string such as ``"False"`` from a YAML file or a command
    line is truthy, so it would silently switch the option on."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ConfigError(f"{_field(config, name)} must be True or False, got {value!r}.")


def positive(config, *names: str, optional: bool = False) -> None:
    """Each field is a finite number > 0 (learning rates, temperatures, clip ranges)."""
    numbers(config, *names, low=0, low_open=True, optional=optional)


def non_negative(config, *names: str, optional: bool = False) -> None:
    """Each field is a finite number >= 0 (coefficients, penalties, weight decay)."""
    numbers(config, *names, low=0, optional=optional)


def arguments(function: str, **values):
    """A function's keyword arguments as an object the checks above accept; errors then name
    them ``function.argument``."""
    return type(function, (), values)()


def argument(function: str, name: str, value, check=None, **options) -> None:
    """One argument checked like a config field: ``check`` is one of the checks above (``ints``,
    ``positive`` by default, ``numbers``, ...) and its error names it ``function.name``."""
    (check or positive)(arguments(function, **{name: value}), name, **options)


def one_of(config, name: str, choices) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ConfigError(f"{_field(config, name)} must be one of {tuple(choices)}, got {value!r}.")


def instance_of(config, name: str, cls: type) -> None:
    """A nested config is an instance of its class (a dict would fail much later)."""
    value = getattr(config, name)
    if not isinstance(value, cls):
        raise TypeError(
            f"{_field(config, name)} must be a {cls.__name__}, got {type(value).__name__}: "
            f"build it as {cls.__name__}(...), e.g. {cls.__name__}(**your_dict)."
        )


def multiple_of(config, name: str, divisor: str, why: str = "") -> None:
    """``config.name`` is a multiple of ``config.divisor``; the error suggests the nearest ones."""
    n, d = getattr(config, name), getattr(config, divisor)
    if n % d:
        below, above = n // d * d, (n // d + 1) * d
        use = f"{below} or {above}" if below else f"{above}"
        raise ConfigError(
            f"{_field(config, name)}={n} must be divisible by {divisor}={d}"
            f"{f' ({why})' if why else ''}: use {name}={use}, or change {divisor}."
        )


# ---------------------------------------------------------------------------------------------
# Tokenizers and token ids
# ---------------------------------------------------------------------------------------------

# Models the library builds record their tokenizer's vocabulary here (rlhf_lib.base_model), so a
# tokenizer of the same size from another run, which would map text to other ids, is refused.
VOCAB_HASH_KEY = "tokenizer_vocab_hash"


def vocabulary_hash(tokenizer) -> str:
    """A short hash of the tokenizer's ``(token, id)`` pairs: equal hashes, same ids for a text."""
    items = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def check_tokenizer_matches(model, tokenizer) -> None:
    """Raise a clear error if ``tokenizer`` cannot be the tokenizer ``model`` was trained with.

    Compares the sizes and the special token ids and, when the model records one (every model
    the library builds does), the hash of the vocabulary itself.
    """
    vocab = getattr(model.config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's embedding has {vocab} "
            "rows: they do not belong together. Load both from one folder (e.g. "
            "rlhf_lib.base_model.load_base_model() returns a matching pair)."
        )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        model_id, tok_id = getattr(model.config, name, None), getattr(tokenizer, name)
        if model_id is not None and tok_id is not None and model_id != tok_id:
            raise ValueError(
                f"model.config.{name}={model_id} but tokenizer.{name}={tok_id}: the tokenizer does "
                "not match the model. Load both from the same folder."
            )
    expected = getattr(model.config, VOCAB_HASH_KEY, None)
    if expected and expected != vocabulary_hash(tokenizer):
        raise ValueError(
            f"The tokenizer's vocabulary is not the one the model was trained with (hash "
            f"{vocabulary_hash(tokenizer)}, the model records {expected}): the same text would "
            "become other token ids, so the tokenizer and the model do not belong together. Load "
            "both from one folder, e.g. the folder of the stage that trained the model."
        )


def require_pad_token(tokenizer, where: str) -> None:
    """``where`` pads batches: refuse a tokenizer without a pad token, saying how to add one."""
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise ValueError(
            f"{where} pads batches, but the tokenizer has no pad token (tokenizer.pad_token_id "
            "is None). Use the tokenizer saved with the model (the book's tokenizers have "
            "<|pad|>), or set one: tokenizer.pad_token = tokenizer.eos_token."
        )


def require_texts(texts, where: str, what: str = "texts", *, allow_empty: bool = True) -> list[str]:
    """``texts`` as a list of strings; a bare string (which would be split into characters), a
    set (whose order changes from one process to the next, so a seed would not fix a run), a
    non-string entry or, unless ``allow_empty``, no text at all is an error that says so."""
    if isinstance(texts, str):
        raise TypeError(f"{where} takes a list of {what}; wrap a single one as [text].")
    if isinstance(texts, (set, frozenset)):
        raise TypeError(
            f"{where} takes a list of {what}, got a {type(texts).__name__}: a set's order changes "
            f"from one Python process to the next, so the same seed would give another run. Pass "
            f"sorted({what}) or a list."
        )
    if not hasattr(texts, "__iter__"):
        raise TypeError(f"{where} takes a list of {what}, got {type(texts).__name__}.")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{where}: {what}[{i}] is {type(text).__name__} ({text!r}), not a string; "
                f"every entry of {what} must be text."
            )
    if not texts and not allow_empty:
        raise ValueError(f"{where} got an empty list of {what}; pass at least one.")
    return texts


def same_length(where: str, **sequences) -> None:
    """The sequences have one entry per item: equal lengths (zip would drop the extra ones)."""
    lengths = {name: len(values) for name, values in sequences.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{where}: {', '.join(lengths)} must have the same length, got {lengths}.")


def finite_numbers(values, name: str):
    """``values`` as a float numpy array, refusing anything that is not a finite number (a NaN
    compares False with everything, so it would be counted on one side of every comparison)."""
    import numpy as np

    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, got {values!r:.80}.") from None
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"{name} holds {array.flat[bad[0]]} at index {bad[0]} ({bad.size} non-finite values); "
            "every value must be a finite number."
        )
    return array


def same_shape(where: str, **tensors) -> None:
    """The tensors share one shape (``None`` entries are skipped). Broadcasting would otherwise
    turn a ``[B]`` tensor next to a ``[B, B]`` one into a silently wrong ``[B, B]`` result."""
    import torch

    for name, t in tensors.items():
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}.")
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{where}: these tensors must have the same shape, got {shapes}.")


def context_length(model) -> int | None:
    """The number of positions ``model`` can read (``None`` if its config does not say)."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings", "block_size"):
        if config is not None and getattr(config, name, None):
            return getattr(config, name)
    return None


def check_fits_context(model, tokenizer, prompts: list[str], max_new_tokens: int, where: str):
    """The longest prompt plus ``max_new_tokens`` fits the model's context (a longer sequence
    fails as an ``IndexError`` in the position embedding, after minutes of work)."""
    limit = context_length(model)
    if limit is None or not prompts:
        return
    longest = max(len(ids) for ids in tokenizer(list(prompts))["input_ids"])
    if longest + max_new_tokens > limit:
        room = f"lower max_new_tokens (to at most {limit - longest})"
        if longest >= limit:
            room = "the longest prompt alone fills the context"
        raise ValueError(
            f"{where}: the longest prompt ({longest} tokens) plus max_new_tokens={max_new_tokens} "
            f"exceeds the policy's context of {limit} positions: shorten the prompts or {room}."
        )


def check_token_ids(ids, vocab_size: int, name: str = "input_ids", dims: int | None = None):
    """Token ids are integers in ``[0, vocab_size)`` (in a ``[B, T]`` tensor if ``dims=2``): an
    id outside would index past the embedding table (an ``IndexError`` deep in torch) or, on a
    GPU, read garbage."""
    import torch

    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}.")
    if dims == 2 and ids.dim() != 2:
        raise ValueError(
            f"{name} must have shape [B, T] (a batch of sequences), got {tuple(ids.shape)}; "
            f"for a single sequence pass {name}[None]."
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer token ids (torch.long), got dtype {ids.dtype}; "
            f"pass {name}.long() if the values are ids."
        )
    if ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = high if high >= vocab_size else low
        raise ValueError(
            f"{name} holds token id {bad}, but the model's vocabulary has {vocab_size} tokens "
            f"(ids 0..{vocab_size - 1}; max id given {high}). The ids come from another "
            "tokenizer, or the model was built with a smaller vocab_size."
        )
