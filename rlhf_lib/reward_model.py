"""The reward model: training with TRL's ``RewardTrainer`` and evaluating it (chapter 4).

The reward model is the SFT model with its language-model head replaced by a scalar head
(``AutoModelForSequenceClassification`` with ``num_labels=1``): it reads ``prompt + completion +
<|eos|>`` and its score is the head's output at the last real token. It is trained on the
annotators' pairs with the Bradley–Terry loss (:func:`rlhf_lib.reward.bradley_terry_loss`), all
pairs of one prompt in one batch element (InstructGPT's K-wise comparisons,
:mod:`rlhf_lib.reward_kwise`; a subclass of TRL's ``RewardTrainer``).

:func:`check_preference_inputs` catches, with one clear message each, the mistakes TRL would
report late, obscurely or not at all (a pair longer than ``max_length`` is silently dropped).

Later chapters call::

    from rlhf_lib.reward_model import load_reward_model, score_texts
    rm, tokenizer = load_reward_model()               # trains first if not cached
    rewards = score_texts(rm, tokenizer, ["I saw this film on Sunday. The plot was great."])
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.trainer_callback import PrinterCallback

from rlhf_lib import checks
from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.preferences import COLUMNS, PreferenceConfig, for_training, load_preferences
from rlhf_lib.reviews import check_tokenizer_matches, load_model_and_tokenizer
from rlhf_lib.runtime import go_offline, local_folder
from rlhf_lib.sft import ProgressCallback, sft_model_path, trainer_device_args

STAGE = "reward_model"
HISTORY = "history.json"


@dataclass
class RewardModelConfig:
    """Everything that decides the reward model; its hash names the cached stage."""

    epochs: float = 4.0  # measured: held-out accuracy still rises through epoch 4, then flattens
    batch_size: int = 16  # prompts a step: 16 x K = 4 completions = 64 texts, 96 comparisons
    lr: float = 1e-3  # the head starts random; 5e-4 left the model under-fitted after 4 epochs
    weight_decay: float = 0.0
    max_length: int = 64  # the SFT model's context; TRL *drops* longer pairs
    center_rewards_coefficient: float | None = 0.01  # keeps rewards near 0 (PPO likes that)
    eval_steps: int = 40  # how often train/eval accuracy is measured (the over-fitting figure)
    n_train_probe: int = 200  # train pairs re-scored at each evaluation ...
    n_eval_probe: int = 400  # ... next to this many eval pairs (all of them are scored after)
    seed: int = 0
    preferences: PreferenceConfig = field(default_factory=PreferenceConfig)

    def __post_init__(self):
        checks.positive(self, "epochs", "lr")
        checks.non_negative(self, "weight_decay")
        checks.non_negative(self, "center_rewards_coefficient", optional=True)
        checks.ints(self, "batch_size", "max_length", "eval_steps", "n_train_probe", "n_eval_probe")
        checks.ints(self, "seed", minimum=0)
        checks.instance_of(self, "preferences", PreferenceConfig)


class PreferenceDataError(ValueError):
    """A preference dataset, model or tokenizer that the reward trainer cannot use."""


def _columns_message(columns) -> str:
    return (
        f"The preference dataset has columns {sorted(columns)}, but the reward trainer needs "
        "either 'chosen' and 'rejected' (text; an optional 'prompt' is put in front of both) or "
        "'chosen_ids' and 'rejected_ids' (token ids). Rename your columns, e.g. "
        "dataset.rename_columns({'good': 'chosen', 'bad': 'rejected'})."
    )


def pair_lengths(tokenizer, dataset) -> np.ndarray:
    """Token length of the longer text of each pair, as TRL will tokenise it
    (``prompt + text + eos``, with the tokenizer's special tokens)."""
    columns = set(dataset.column_names)
    if {"chosen_ids", "rejected_ids"} <= columns:
        pairs = zip(dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
        return np.array([max(len(c), len(r)) for c, r in pairs])
    prompts = dataset["prompt"] if "prompt" in columns else [""] * len(dataset)
    eos = tokenizer.eos_token or ""
    lengths = []
    for key in ("chosen", "rejected"):
        texts = [p + t + ("" if t.endswith(eos) else eos) for p, t in
                 zip(prompts, dataset[key], strict=True)]  # fmt: skip
        lengths.append([len(ids) for ids in tokenizer(texts)["input_ids"]])
    return np.maximum(*map(np.array, lengths))


def _check_text_columns(dataset, columns, name) -> None:
    """Every prompt, chosen and rejected entry is a string (TRL would fail deep in tokenising)."""
    for column in ("prompt", "chosen", "rejected"):
        if column not in columns:
            continue
        for row, value in enumerate(dataset[column]):
            if not isinstance(value, str):
                raise PreferenceDataError(
                    f"Column {column!r} of the {name} dataset holds {type(value).__name__} "
                    f"({value!r}) in row {row}; every entry must be text. Drop or fill such rows, "
                    f"e.g. dataset.filter(lambda r: isinstance(r[{column!r}], str))."
                )


def _check_id_columns(dataset, columns, name, vocab_size) -> None:
    """Every ``chosen_ids`` / ``rejected_ids`` entry is a non-empty list of the model's token ids
    (an id past the embedding fails deep in the first training step; an empty list has nothing
    to score)."""
    for column in ("chosen_ids", "rejected_ids"):
        if column not in columns:
            continue
        for row, ids in enumerate(dataset[column]):
            if not ids:
                raise PreferenceDataError(
                    f"Column {column!r} of the {name} dataset holds an empty list of token ids in "
                    f"row {row}: there is no text to score. Drop such rows, e.g. "
                    f"dataset.filter(lambda r: len(r[{column!r}]) > 0)."
                )
            bad = [i for i in ids if not checks.is_int(i) or not 0 <= i < vocab_size]
            if bad:
                raise PreferenceDataError(
                    f"Column {column!r} of the {name} dataset holds token id {bad[0]!r} in row "
                    f"{row}, but the model's vocabulary has {vocab_size} tokens (ids 0.."
                    f"{vocab_size - 1}): the ids come from another tokenizer. Tokenise the texts "
                    "with the model's own tokenizer."
                )


def _warn_identical_pairs(dataset, columns, name) -> None:
    """A pair whose chosen and rejected texts are the same teaches nothing (its loss is log 2
    whatever the model does); a dataset of only such pairs would train at loss 0.693 forever."""
    text = {"chosen", "rejected"} <= columns
    keys = ("chosen", "rejected") if text else ("chosen_ids", "rejected_ids")
    same = sum(c == r for c, r in zip(dataset[keys[0]], dataset[keys[1]], strict=True))
    if same == len(dataset):
        raise PreferenceDataError(
            f"In all {same} pairs of the {name} dataset '{keys[0]}' equals '{keys[1]}': there is "
            "no preference to learn (the loss would stay at log 2 = 0.693). Check how the pairs "
            "were built: chosen and rejected must be two different completions."
        )
    if same:
        warnings.warn(
            f"{same} of {len(dataset)} pairs of the {name} dataset have identical "
            f"'{keys[0]}' and '{keys[1]}'; they carry no preference. Drop them, e.g. "
            f"dataset.filter(lambda r: r[{keys[0]!r}] != r[{keys[1]!r}]).",
            stacklevel=3,
        )


def check_preference_inputs(model, tokenizer, dataset, max_length: int | None, name="train"):
    """Raise :class:`PreferenceDataError` with one clear message if TRL cannot use these inputs.

    Checks, in order: the dataset type and columns, that it is not empty, that every text is a
    string, that the model has one output (``num_labels=1``), that the tokenizer belongs to the
    model and has a pad token, that not every pair has ``chosen == rejected``, and that not every
    pair is longer than ``max_length`` (TRL would silently drop them and train on nothing).
    Warnings say how many pairs are identical, and how many will be dropped when only some are
    too long.
    """
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        raise PreferenceDataError(
            f"The {name} dataset must be a datasets.Dataset, got {type(dataset).__name__}. "
            "Build one with datasets.Dataset.from_list([{'chosen': ..., 'rejected': ...}, ...])."
        )
    columns = set(dataset.column_names)
    if not ({"chosen", "rejected"} <= columns or {"chosen_ids", "rejected_ids"} <= columns):
        raise PreferenceDataError(_columns_message(columns))
    if len(dataset) == 0:
        raise PreferenceDataError(
            f"The {name} dataset is empty: a reward model needs at least one preference pair."
        )
    _check_text_columns(dataset, columns, name)
    _check_id_columns(dataset, columns, name, model.config.vocab_size)
    num_labels = getattr(model.config, "num_labels", None)
    if num_labels != 1:
        raise PreferenceDataError(
            f"The model has num_labels={num_labels}; a reward model outputs one number per text. "
            "Load it with AutoModelForSequenceClassification.from_pretrained(path, num_labels=1) "
            "(rlhf_lib.reward_model.reward_model_from_sft does this)."
        )
    try:
        check_tokenizer_matches(model, tokenizer)
        checks.require_pad_token(tokenizer, "The reward trainer")
    except ValueError as err:
        raise PreferenceDataError(str(err)) from None
    _warn_identical_pairs(dataset, columns, name)
    if max_length is not None:
        lengths = pair_lengths(tokenizer, dataset)
        too_long = int((lengths > max_length).sum())
        if too_long == len(dataset):
            raise PreferenceDataError(
                f"All {len(dataset)} pairs of the {name} dataset are longer than "
                f"max_length={max_length} tokens (the shortest has {lengths.min()}). TRL drops "
                "such pairs without a word and would train on nothing: raise max_length or "
                "shorten the texts."
            )
        if too_long:
            warnings.warn(
                f"{too_long} of {len(dataset)} pairs of the {name} dataset are longer than "
                f"max_length={max_length} tokens; TRL will drop them.",
                stacklevel=2,
            )


def reward_model_from_sft(path=None):
    """``(model, tokenizer)``: a reward model initialised from the SFT policy at ``path``.

    The transformer body is the SFT model's; the scalar head (``score``, a bias-free linear
    layer from the hidden size to 1) is new and random. The language-model head is dropped.
    """
    path = local_folder(path or sft_model_path(), "SFT model folder")  # before slow imports
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    with suppress_seqcls_warning():  # "score.weight newly initialised" is the point here
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _reward_config(config: RewardModelConfig, output_dir, max_steps: int, evaluate: bool):
    """TRL's ``RewardConfig`` for this reward model (one place for both trainers below)."""
    from trl import RewardConfig

    return RewardConfig(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=256,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=5,
        max_length=config.max_length,
        center_rewards_coefficient=config.center_rewards_coefficient,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps,
        logging_steps=config.eval_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        **trainer_device_args(),
    )


def make_trainer(model, tokenizer, train, eval_sets=None, config=None, output_dir="/tmp/rm",
                 max_steps: int = -1, kwise: bool = False):  # fmt: skip
    """A reward trainer for these pairs, after :func:`check_preference_inputs`.

    ``kwise=False``: TRL's own ``RewardTrainer``, one batch element a pair. ``kwise=True``:
    :class:`rlhf_lib.reward_kwise.KWiseRewardTrainer`, one batch element a prompt with all its
    pairs (``config.batch_size`` counts prompts then); the eval sets are scored pair by pair.
    """
    from trl import RewardTrainer

    from rlhf_lib.reward_kwise import KWiseRewardTrainer, groups_from_pairs

    config = config or RewardModelConfig()
    check_preference_inputs(model, tokenizer, train, config.max_length, "train")
    for name, split in (eval_sets or {}).items():
        check_preference_inputs(model, tokenizer, split, config.max_length, name)
    go_offline()  # TRL's telemetry off and no hub look-ups, even without setup_notebook()
    if kwise:
        train = groups_from_pairs(train, tokenizer, config.max_length)
        eval_sets = {name: groups_from_pairs(for_training(split), tokenizer, config.max_length)
                     for name, split in (eval_sets or {}).items()}  # fmt: skip
    trainer = (KWiseRewardTrainer if kwise else RewardTrainer)(
        model=model,
        args=_reward_config(config, output_dir, max_steps, evaluate=bool(eval_sets)),
        train_dataset=train,
        eval_dataset=eval_sets or None,
        processing_class=tokenizer,
        callbacks=[ProgressCallback("reward model")],
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps the bar for a log printer
    return trainer


def build_reward_model(folder: Path, config: RewardModelConfig, start=None, pairs=None) -> None:
    """Train the reward model and save it, its tokenizer and its log history in ``folder``.

    ``start`` = ``(model, tokenizer)`` and ``pairs`` (a preference ``DatasetDict``) default to
    :func:`reward_model_from_sft` and :func:`rlhf_lib.preferences.load_preferences`. Training is
    K-wise: every prompt's pairs in one batch element.
    """
    torch.manual_seed(config.seed)  # the new score head's starting weights
    model, tokenizer = start or reward_model_from_sft(sft_model_path(config.preferences.sft))
    pairs = pairs if pairs is not None else load_preferences(config.preferences)
    train = pairs["train"]
    train = train.select_columns([c for c in (*COLUMNS, "group") if c in train.column_names])
    n_prompts = len(set(train["group"])) if "group" in train.column_names else len(train)
    probe = for_training(train.select(range(min(config.n_train_probe, n_prompts))))  # 1 a prompt
    held_out = pairs["eval"].select(range(min(config.n_eval_probe, len(pairs["eval"]))))
    eval_sets = {"train": probe, "eval": for_training(held_out)}
    trainer = make_trainer(model, tokenizer, train, eval_sets, config, Path(folder) / "trainer",
                           kwise=True)  # fmt: skip
    trainer.train()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (Path(folder) / HISTORY).write_text(json.dumps(trainer.state.log_history))


def reward_model_path(config: RewardModelConfig | None = None) -> Path:
    """The cached folder of the reward model (trained first if needed)."""
    config = config or RewardModelConfig()
    return cached_stage(STAGE, config, lambda folder: build_reward_model(folder, config))


def load_reward_model(config: RewardModelConfig | None = None, device=None):
    """``(model, tokenizer)``: the trained reward model (eval mode) and its tokenizer.

    Score texts with :func:`score_texts`. Chapter 5 uses it as PPO's reward.
    """
    from transformers import AutoModelForSequenceClassification

    path = reward_model_path(config)
    with loading_stage(path):
        return load_model_and_tokenizer(path, AutoModelForSequenceClassification, device)


def load_reward_history(config: RewardModelConfig | None = None) -> list[dict]:
    """The reward trainer's log history (train loss/accuracy; train-probe and eval accuracy)."""
    path = reward_model_path(config)
    with loading_stage(path):
        return json.loads((path / HISTORY).read_text())


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """The reward of each full text (prompt + completion), exactly as the trainer saw it:
    ``<|bos|> text <|eos|>``, padded on the right, read at the last real token."""
    texts = checks.require_texts(texts, "score_texts")
    checks.argument("score_texts", "batch_size", batch_size, checks.ints)
    checks.require_pad_token(tokenizer, "score_texts")
    checks.check_tokenizer_matches(model, tokenizer)  # another run's tokenizer: other token ids
    no_pad = hasattr(model.config, "pad_token_id") and model.config.pad_token_id is None
    if no_pad and len(texts) > 1:  # transformers' classifiers find the last token by the pad id
        raise ValueError(
            "score_texts: model.config.pad_token_id is None, so the model cannot find the last "
            "real token of a padded batch. Set it: model.config.pad_token_id = "
            "tokenizer.pad_token_id (reward_model_from_sft does)."
        )
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token, tokenizer.pad_token_id
    limit = getattr(model.config, "n_positions", None) or 10**9
    scores = []
    for start in range(0, len(texts), batch_size):
        chunk = [t if t.endswith(eos) else t + eos for t in texts[start : start + batch_size]]
        ids = [x[-limit:] for x in tokenizer(chunk)["input_ids"]]  # keep the end: it has the eos
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), pad)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
        scores.append(out.logits.squeeze(-1).float().cpu())
    return torch.cat(scores).numpy() if scores else np.zeros(0)


def score_pairs(model, tokenizer, split) -> tuple[np.ndarray, np.ndarray]:
    """``(r_chosen, r_rejected)`` for every pair of a preference split."""
    prompts = split["prompt"] if "prompt" in split.column_names else [""] * len(split)
    chosen = [p + t for p, t in zip(prompts, split["chosen"], strict=True)]
    rejected = [p + t for p, t in zip(prompts, split["rejected"], strict=True)]
    return score_texts(model, tokenizer, chosen), score_texts(model, tokenizer, rejected)


def pairwise_metrics(r_chosen, r_rejected) -> dict:
    """Accuracy (chosen scored higher), mean margin and Bradley–Terry loss, as TRL logs them."""
    from rlhf_lib.reward import bradley_terry_loss

    rc, rr = np.asarray(r_chosen, dtype=float), np.asarray(r_rejected, dtype=float)
    if rc.shape != rr.shape:
        raise ValueError(
            f"r_chosen and r_rejected must have one reward per pair each, got shapes {rc.shape} "
            f"and {rr.shape}."
        )
    return {
        "accuracy": float(np.mean(rc > rr)),
        "margin": float(np.mean(rc - rr)),
        "loss": float(bradley_terry_loss(torch.tensor(rc), torch.tensor(rr))),
        "n": int(rc.size),
    }


def calibration_table(r_chosen, r_rejected, n_bins: int = 8) -> dict:
    """Predicted ``P(chosen) = sigmoid(r_chosen - r_rejected)`` against observed frequency.

    Each pair is seen both ways round (a, b) and (b, a), so predictions fill [0, 1]; pairs are
    binned by prediction and the observed frequency is how often the first text was the chosen
    one. A calibrated model lies on the diagonal.
    """
    checks.argument("calibration_table", "n_bins", n_bins, checks.ints)
    rc = checks.finite_numbers(r_chosen, "calibration_table: r_chosen")
    rr = checks.finite_numbers(r_rejected, "calibration_table: r_rejected")
    checks.same_length("calibration_table", r_chosen=rc, r_rejected=rr)
    d = rc - rr
    pred = 1 / (1 + np.exp(-np.concatenate([d, -d])))
    observed = np.concatenate([np.ones_like(d), np.zeros_like(d)])
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(pred, edges) - 1, 0, n_bins - 1)
    rows = {"predicted": [], "observed": [], "count": []}
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            rows["predicted"].append(float(pred[sel].mean()))
            rows["observed"].append(float(observed[sel].mean()))
            rows["count"].append(int(sel.sum()))
    return rows


def accuracy_history(history: list[dict]) -> dict:
    """Train-probe and eval accuracy per evaluation step, from the trainer's log history.

    With several eval sets TRL 1.16 names the loss per set (``eval_train_loss``,
    ``eval_eval_loss``) but logs its own metrics as plain ``eval_accuracy`` for every set, so a
    row's set is read from its loss key.
    """
    out = {"step": [], "train": [], "eval": [], "train_loss": [], "eval_loss": []}
    for row in history:
        for name in ("train", "eval"):
            if f"eval_{name}_loss" in row:
                if name == "eval":
                    out["step"].append(row["step"])
                out[name].append(row["eval_accuracy"])
                out[f"{name}_loss"].append(row[f"eval_{name}_loss"])
    return out


def probe_edits(model, tokenizer, texts: list[str]) -> dict:
    """How the reward model and the gold preference react to edits that should not help.

    Three surface edits of each text: an exclamation mark instead of the last full stop, the
    last sentence repeated (longer, repetitive) and one word doubled (degenerate for the gold
    guard). Returns the mean change of both scores per edit, and one edited example.
    """
    from rlhf_lib.annotators import gold_score

    texts = checks.require_texts(texts, "probe_edits", allow_empty=False)
    empty = [i for i, t in enumerate(texts) if not t.split()]
    if empty:
        raise ValueError(f"probe_edits: texts[{empty[0]}] has no words to edit.")

    def exclaim(t):
        return t[:-1] + "!" if t.endswith(".") else t + "!"

    def repeat_last(t):
        last = t.rstrip(".").split(". ")[-1]
        return f"{t} {last}."

    def double_word(t):
        words = t.split()
        i = min(len(words) - 1, 3)
        return " ".join([*words[: i + 1], words[i], *words[i + 1 :]])

    edits = {"exclamation mark": exclaim, "last sentence repeated": repeat_last,
             "a word doubled": double_word}  # fmt: skip
    base_rm, base_gold = score_texts(model, tokenizer, texts), np.array(gold_score(texts))
    out = {}
    for name, edit in edits.items():
        edited = [edit(t) for t in texts]
        out[name] = {
            "reward model": float(np.mean(score_texts(model, tokenizer, edited) - base_rm)),
            "gold": float(np.mean(np.array(gold_score(edited)) - base_gold)),
            "example": edited[0],
        }
    return out
