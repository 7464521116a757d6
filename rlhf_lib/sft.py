"""Supervised fine-tuning on demonstrations (chapter 3, "How RLHF works").

InstructGPT's first step: people wrote the answers they wanted for ~13k prompts and GPT-3 was
fine-tuned on them. In the miniature world the *prompts* are review openings ("I saw this film on
Sunday. The plot") and the *demonstrators* are the review generator restricted to well-formed,
positive reviews: they show the model what a good continuation looks like. Training uses TRL's
``SFTTrainer`` on a prompt/completion dataset, so the loss is computed on completion tokens only.

Later chapters call::

    from rlhf_lib.sft import load_sft_model, sample_completions
    policy, tokenizer = load_sft_model()          # fine-tunes first if not cached
    texts = sample_completions(policy, tokenizer, ["I watched this movie last night. The plot"])
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from rlhf_lib import checks
from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.reviews import (
    CLOSINGS,
    check_tokenizer_matches,
    generate_reviews,
    load_model_and_tokenizer,
)
from rlhf_lib.rollout import sample, sampling_settings
from rlhf_lib.runtime import go_offline, progress

STAGE = "sft_model"
HISTORY = "history.json"
ALL_CLOSINGS = {c for group in CLOSINGS.values() for c in group}


@dataclass
class SFTStageConfig:
    """Everything that decides the SFT policy; its hash names the cached stage."""

    # data: the demonstrations
    n_demonstrations: int = 2_000  # a few thousand suffice: the base model already writes reviews
    min_sentiment: float = 0.2  # demonstrators write positive reviews, but not only raving ones
    seed: int = 1  # reviews with seed 0 trained the base model; demonstrations are new text
    # training
    max_steps: int = 60  # ~1 epoch at 32 a batch: enough to shift the style; longer memorises
    batch_size: int = 32
    lr: float = 1e-3  # a third of pretraining's peak: adjust the model, do not overwrite it
    warmup_ratio: float = 0.1
    max_length: int = 64  # the base model's context (block_size)

    def __post_init__(self):
        checks.ints(self, "n_demonstrations", "max_steps", "batch_size", "max_length")
        checks.ints(self, "seed", minimum=0)
        checks.positive(self, "lr")
        checks.numbers(self, "warmup_ratio", low=0, high=1, high_open=True)
        # sentiments lie in [-1, 1]; at 1 or above no demonstrator ever qualifies
        checks.numbers(self, "min_sentiment", low=-1, high=1, high_open=True,
                       hint=" Sentiments lie in [-1, 1]: lower min_sentiment.")  # fmt: skip


def is_well_formed(text: str) -> bool:
    """A demonstration ends with one of the generator's closing sentences ("Overall, ...")."""
    return any(text.endswith(c) for c in ALL_CLOSINGS)


def demonstrations(config: SFTStageConfig | None = None) -> list[dict]:
    """``{"prompt", "completion"}`` records: review openings and demonstrators' continuations.

    The prompt is the review up to the subject of its first opinion; the completion is the rest,
    starting with a space (so prompt + completion is the review, token for token).
    """
    config = config or SFTStageConfig()
    records, i = [], 0
    while len(records) < config.n_demonstrations:
        batch = generate_reviews(4 * config.n_demonstrations, seed=config.seed)[i:]
        for r in batch:
            i += 1
            if r.sentiment >= config.min_sentiment and is_well_formed(r.text):
                records.append({"prompt": r.prompt, "completion": r.text[len(r.prompt) :]})
                if len(records) == config.n_demonstrations:
                    break
        if i >= 4 * config.n_demonstrations and len(records) < config.n_demonstrations:
            raise ValueError(
                f"Only {len(records)} of {4 * config.n_demonstrations} generated reviews have "
                f"sentiment >= {config.min_sentiment}; lower min_sentiment."
            )
    return records


def review_prompts(n: int, seed: int = 2) -> list[str]:
    """``n`` review openings (the prompts RM data and PPO use), from reviews no stage trained on."""
    return [r.prompt for r in generate_reviews(n, seed=seed)]


class ProgressCallback(TrainerCallback):
    """A ``transformers`` callback that drives :func:`rlhf_lib.runtime.progress` (a live bar in
    Jupyter, one summary line on the website build) and shows the last logged loss."""

    def __init__(self, desc: str):
        self.desc = desc

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = progress(total=state.max_steps, desc=self.desc)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()


def trainer_device_args() -> dict:
    """``TrainingArguments`` that run on the CPU, or on CUDA when present (fp32 either way: the
    models are tiny, mixed precision would save nothing and change the numbers)."""
    return {"use_cpu": not torch.cuda.is_available(), "bf16": False, "fp16": False}


def train_sft(model, tokenizer, records: list[dict], config: SFTStageConfig, output_dir) -> dict:
    """Fine-tune ``model`` in place on prompt/completion ``records`` with TRL's ``SFTTrainer``.

    Returns the trainer's log history (loss per logging step).
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    check_tokenizer_matches(model, tokenizer)
    checks.require_pad_token(tokenizer, "train_sft")
    if not records:
        raise ValueError("train_sft needs at least one demonstration; got none.")
    go_offline()  # TRL's telemetry off and no hub look-ups, even without setup_notebook()
    args = SFTConfig(
        output_dir=str(output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        lr_scheduler_type="linear",
        warmup_steps=max(1, int(config.warmup_ratio * config.max_steps)),
        max_length=config.max_length,
        completion_only_loss=True,  # learn to continue the prompt, not to write prompts
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,  # our ProgressCallback draws the bar
        seed=config.seed,
        dataloader_num_workers=0,
        **trainer_device_args(),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        callbacks=[ProgressCallback("SFT")],
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps the bar for a log printer
    trainer.train()
    model.eval()
    return trainer.state.log_history


def build_sft_model(folder: Path, config: SFTStageConfig, base=None) -> None:
    """Fine-tune the base model (or ``base = (model, tokenizer)``) and save it in ``folder``."""
    if base is None:
        from rlhf_lib.base_model import load_base_model

        base = load_base_model()
    model, tokenizer = base
    history = train_sft(model, tokenizer, demonstrations(config), config, Path(folder) / "trainer")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (Path(folder) / HISTORY).write_text(json.dumps(history))


def sft_model_path(config: SFTStageConfig | None = None) -> Path:
    """The cached folder of the SFT policy (fine-tuned first if needed)."""
    config = config or SFTStageConfig()
    return cached_stage(STAGE, config, lambda folder: build_sft_model(folder, config))


def load_sft_model(config: SFTStageConfig | None = None, device=None):
    """``(model, tokenizer)``: the SFT policy (a ``GPT2LMHeadModel``, eval mode) and its tokenizer.

    Chapter 4 samples preference pairs from it and chapter 5 starts PPO from it (and keeps a
    frozen copy as the KL reference).
    """
    from transformers import AutoModelForCausalLM

    path = sft_model_path(config)
    with loading_stage(path):
        return load_model_and_tokenizer(path, AutoModelForCausalLM, device)


def load_sft_history(config: SFTStageConfig | None = None) -> list[dict]:
    """The SFT trainer's log history (``loss`` every 10 steps)."""
    path = sft_model_path(config)
    with loading_stage(path):
        return json.loads((path / HISTORY).read_text())


def sample_completions(
    model,
    tokenizer,
    prompts: list[str],
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 40,
    batch_size: int = 256,
    seed: int = 0,
    desc: str | None = None,
) -> list[str]:
    """One sampled continuation per prompt (ancestral sampling, no top-k/top-p), as text.

    The returned strings are what follows each prompt, so ``prompt + completion`` is the review.
    Sampling stops at ``<|eos|>`` or after ``max_new_tokens``. It is :func:`rlhf_lib.rollout.sample`
    in batches of ``batch_size`` prompts, on one private random stream seeded with ``seed`` (the
    caller's is untouched).
    """
    prompts = checks.require_texts(prompts, "sample_completions", "prompts")
    if not (checks.is_finite_number(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be > 0 (a small value is near-greedy), got {temperature}."
        )
    if not checks.is_int(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}.")
    checks.require_pad_token(tokenizer, "sample_completions")
    settings = sampling_settings(tokenizer, max_new_tokens, temperature)
    out: list[str] = []
    batches = range(0, len(prompts), batch_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # seeded once: the batches continue one stream
        for start in progress(batches, desc=desc) if desc else batches:
            chunk = prompts[start : start + batch_size]
            out.extend(sample(model, tokenizer, chunk, settings, where="sample_completions")
                       .completions)  # fmt: skip
    return out


def sft_config_dict(config: SFTStageConfig | None = None) -> dict:
    """The config as a plain dict (for tables in the chapter)."""
    return asdict(config or SFTStageConfig())
