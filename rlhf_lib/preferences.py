"""The preference dataset: pairs of completions labelled by the annotators (chapter 4).

InstructGPT showed labelers K completions of one prompt and trained on all C(K,2) comparisons
among them. Here the SFT policy writes ``k`` completions for each training prompt (two for the
evaluation prompts), a simulated annotator (see :mod:`rlhf_lib.annotators`) picks the preferred
text of every pair, and each pair goes into a ``datasets.DatasetDict`` in TRL's *standard,
explicit-prompt* preference format:

    {"prompt": "I saw this film on Sunday. The plot",
     "chosen": " was great. I would recommend it.",
     "rejected": " was dull. Overall, a weak film."}

Three splits:

- ``train``: the C(k,2) pairs of every training prompt, with a ``group`` column (the prompt's
  index) so that :mod:`rlhf_lib.reward_kwise` can put a prompt's pairs back together. Rows are
  ordered pair-major: the first ``n_train`` rows hold one pair of each prompt, the next
  ``n_train`` another pair of each, and so on;
- ``eval``: one pair for each of ``n_eval`` prompts that training never saw;
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

    n_train: int = 1_600  # prompts; with k = 4, 6 labelled pairs each: 9 600 comparisons
    k: int = 4  # completions a training prompt (InstructGPT's K); k = 2 is one pair a prompt
    n_eval: int = 2_000  # one pair each: accuracy ± 1 point (one standard error)
    n_shifted: int = 400
    temperature: float = 1.0  # sample the SFT policy as it is
    shifted_temperature: float = 1.3  # the base model, more adventurous: a different distribution
    max_new_tokens: int = 40
    prompt_seed: int = 2  # prompts come from reviews no earlier stage trained on
    seed: int = 0
    annotators: AnnotatorPoolConfig = field(default_factory=AnnotatorPoolConfig)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)

    @property
    def n_comparisons(self) -> int:
        """Labelled pairs in the ``train`` split: C(k, 2) for each of ``n_train`` prompts."""
        return self.n_train * self.k * (self.k - 1) // 2

    def __post_init__(self):
        checks.ints(self, "n_train", "n_eval", "n_shifted", "max_new_tokens")
        if not checks.is_int(self.k) or self.k < 2:
            raise ValueError(
                f"PreferenceConfig.k must be an int >= 2 (completions compared per prompt), "
                f"got {self.k!r}."
            )
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


def _completions(model, tokenizer, prompts, k, temperature, max_new_tokens, seed, desc) -> list:
    """``k`` sampled completions of every prompt, as one list of ``k`` strings a prompt."""
    repeated = [p for p in prompts for _ in range(k)]  # a prompt's completions in one batch
    texts = sample_completions(
        model, tokenizer, repeated, temperature=temperature, max_new_tokens=max_new_tokens,
        seed=seed, batch_size=512, desc=desc,
    )  # fmt: skip
    return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]


def labelled_comparisons(policy, prompts, k, annotators, rng, *, temperature=1.0,
                         max_new_tokens=40, seed=0, desc="sampling") -> dict:  # fmt: skip
    """The columns of a preference split: ``k`` completions of every prompt sampled from
    ``policy`` = ``(model, tokenizer)``, and every one of their C(k,2) pairs labelled by an
    annotator of the pool (:func:`label_pairs`), plus ``group`` (the prompt's index).

    Rows are pair-major: the first ``len(prompts)`` rows hold one pair of every prompt.
    """
    completions = _completions(*policy, prompts, k, temperature, max_new_tokens, seed, desc)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    rows = [(p, texts[i], texts[j], g) for i, j in pairs
            for g, (p, texts) in enumerate(zip(prompts, completions, strict=True))]  # fmt: skip
    ps, a, b, group = map(list, zip(*rows, strict=True))
    return {**label_pairs(ps, a, b, annotators, rng), "group": group}


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
        k = config.k if name == "train" else 2
        columns = labelled_comparisons(
            shifted_policy if name == "shifted" else policy, chunk, k, annotators, rng,
            temperature=config.shifted_temperature if name == "shifted" else config.temperature,
            max_new_tokens=config.max_new_tokens, seed=config.seed + start,
            desc=f"sampling {name} completions",
        )  # fmt: skip
        splits[name] = Dataset.from_dict(columns)
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
