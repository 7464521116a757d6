"""The preference dataset: pairs of completions labelled by the annotators (chapter 4).

InstructGPT showed labelers several completions of one prompt and asked them to rank them. Here
the SFT policy writes two completions for each prompt, one simulated annotator (see
:mod:`rlhf_lib.annotators`) picks the one they prefer, and the pair goes into a
``datasets.DatasetDict`` in TRL's *standard, explicit-prompt* preference format:

    {"prompt": "I saw this film on Sunday. The plot",
     "chosen": " was great. I would recommend it.",
     "rejected": " was dull. Overall, a weak film."}

Three splits:

- ``train`` and ``eval``: pairs from the SFT policy (eval uses prompts train never saw);
- ``shifted``: pairs from a *different* policy, the base model sampled at a higher temperature,
  which is what a reward model meets once PPO moves the policy away from SFT.

Extra columns keep what training must not see but the book wants to measure: the gold scores of
both texts, which annotator labelled the pair, that annotator's probability of the choice, and a
second annotator's independent label (to measure agreement).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlhf_lib import checks
from rlhf_lib.annotators import AnnotatorPoolConfig, annotate, gold_score, make_annotators
from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.sft import SFTStageConfig, review_prompts, sample_completions

STAGE = "preferences"
SPLITS = ("train", "eval", "shifted")
COLUMNS = ("prompt", "chosen", "rejected")  # what TRL's RewardTrainer reads


@dataclass
class PreferenceConfig:
    """Everything that decides the preference dataset; its hash names the cached stage."""

    n_train: int = 1_600  # pairs; the reward model's accuracy is near the noise ceiling by then
    n_eval: int = 400  # enough for accuracy ± 2 points (one standard error)
    n_shifted: int = 400
    temperature: float = 1.0  # sample the SFT policy as it is
    shifted_temperature: float = 1.3  # the base model, more adventurous: a different distribution
    max_new_tokens: int = 40
    prompt_seed: int = 2  # prompts come from reviews no earlier stage trained on
    seed: int = 0
    annotators: AnnotatorPoolConfig = field(default_factory=AnnotatorPoolConfig)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)

    def __post_init__(self):
        checks.ints(self, "n_train", "n_eval", "n_shifted", "max_new_tokens")
        checks.ints(self, "prompt_seed", "seed", minimum=0)
        checks.positive(self, "temperature", "shifted_temperature")
        checks.instance_of(self, "annotators", AnnotatorPoolConfig)
        checks.instance_of(self, "sft", SFTStageConfig)


def label_pairs(prompts, completions_a, completions_b, annotators, rng) -> dict:
    """Score both completions with the hidden gold preference and let annotators choose.

    Returns the columns of a preference split: ``prompt``, ``chosen``, ``rejected`` and the
    hidden metadata (``gold_chosen``, ``gold_rejected``, ``annotator``, ``p_chosen``,
    ``second_agrees``, ``gold_agrees``).
    """
    prompts = checks.require_texts(prompts, "label_pairs", "prompts")
    completions_a = checks.require_texts(completions_a, "label_pairs", "completions_a")
    completions_b = checks.require_texts(completions_b, "label_pairs", "completions_b")
    if not len(prompts) == len(completions_a) == len(completions_b):
        raise ValueError("prompts, completions_a and completions_b must have the same length.")
    gold_a = np.array(gold_score([p + c for p, c in zip(prompts, completions_a, strict=True)]))
    gold_b = np.array(gold_score([p + c for p, c in zip(prompts, completions_b, strict=True)]))
    first = annotate(gold_a, gold_b, annotators, rng)
    second = annotate(gold_a, gold_b, annotators, rng)  # an independent second opinion
    a_wins = first["prefers_first"]
    chosen = np.where(a_wins, completions_a, completions_b)
    rejected = np.where(a_wins, completions_b, completions_a)
    g_chosen, g_rejected = np.where(a_wins, gold_a, gold_b), np.where(a_wins, gold_b, gold_a)
    return {
        "prompt": list(prompts),
        "chosen": chosen.tolist(),
        "rejected": rejected.tolist(),
        "gold_chosen": g_chosen.tolist(),
        "gold_rejected": g_rejected.tolist(),
        "annotator": first["annotator"].tolist(),
        "p_chosen": np.where(a_wins, first["p_first"], 1 - first["p_first"]).tolist(),
        "second_agrees": (second["prefers_first"] == a_wins).tolist(),
        "gold_agrees": (g_chosen > g_rejected).tolist(),  # ties count as disagreement
    }


def _pairs(model, tokenizer, prompts, temperature, max_new_tokens, seed, desc) -> tuple:
    doubled = [p for p in prompts for _ in range(2)]  # both completions of a prompt in one batch
    texts = sample_completions(
        model, tokenizer, doubled, temperature=temperature, max_new_tokens=max_new_tokens,
        seed=seed, batch_size=512, desc=desc,
    )  # fmt: skip
    return texts[0::2], texts[1::2]


def build_preferences(folder: Path, config: PreferenceConfig, policy=None, shifted_policy=None):
    """Sample, label and save the three splits in ``folder / "pairs"``.

    ``policy`` and ``shifted_policy`` are ``(model, tokenizer)`` pairs; by default the SFT policy
    and the base model (trained first if the cache lacks them).
    """
    from datasets import Dataset, DatasetDict

    if policy is None:
        from rlhf_lib.sft import load_sft_model

        policy = load_sft_model(config.sft)
    if shifted_policy is None:
        from rlhf_lib.base_model import load_base_model

        shifted_policy = load_base_model()
    annotators = make_annotators(config.annotators)
    rng = np.random.default_rng(config.seed)
    sizes = {"train": config.n_train, "eval": config.n_eval, "shifted": config.n_shifted}
    prompts = review_prompts(sum(sizes.values()), seed=config.prompt_seed)
    splits, start = {}, 0
    for name, n in sizes.items():
        chunk = prompts[start : start + n]
        start += n
        model, tokenizer = shifted_policy if name == "shifted" else policy
        temperature = config.shifted_temperature if name == "shifted" else config.temperature
        a, b = _pairs(model, tokenizer, chunk, temperature, config.max_new_tokens,
                      config.seed + start, f"sampling {name} pairs")  # fmt: skip
        splits[name] = Dataset.from_dict(label_pairs(chunk, a, b, annotators, rng))
    DatasetDict(splits).save_to_disk(str(Path(folder) / "pairs"))


def preferences_path(config: PreferenceConfig | None = None) -> Path:
    """The cached folder of the preference dataset (built first if needed)."""
    config = config or PreferenceConfig()
    return cached_stage(STAGE, config, lambda folder: build_preferences(folder, config))


def load_preferences(config: PreferenceConfig | None = None):
    """The preference ``DatasetDict`` with splits ``train``, ``eval`` and ``shifted``."""
    from datasets import load_from_disk

    path = preferences_path(config)
    with loading_stage(path):
        # In memory (a few MB): a dataset mapped later (the reward trainer tokenises it) then
        # writes no cache files into the stage folder.
        return load_from_disk(str(path / "pairs"), keep_in_memory=True)


def for_training(split):
    """Only the columns a reward model may learn from (the gold scores stay hidden)."""
    return split.select_columns(list(COLUMNS))
