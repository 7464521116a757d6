"""The miniature world's PPO runs (Chapter 5): the SFT policy optimised against the reward model.

:mod:`rlhf_lib.ppo` is the algorithm and knows nothing of reviews. This module wires it to the
earlier stages: the SFT policy (chapter 3) is the starting point and the frozen reference, the
reward model (chapter 4) is the reward and the value model's initialisation, and the hidden gold
preference is logged beside the proxy reward. Each run is a cached stage, so the
over-optimisation page reuses the default run of the training page.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlhf_lib import checks
from rlhf_lib.annotators import gold_score
from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.ppo import PPOConfig, PPOTrainer
from rlhf_lib.reward_model import RewardModelConfig, load_reward_model, score_texts
from rlhf_lib.runtime import local_folder
from rlhf_lib.sft import SFTStageConfig, load_sft_model, review_prompts, sample_completions

STAGE = "ppo_run"
HISTORY = "history.json"


@dataclass
class RLHFRunConfig:
    """One PPO run of the miniature world; its hash names the cached stage."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    n_prompts: int = 512  # training prompts (review openings), drawn with replacement each step
    prompt_seed: int = 3  # new openings: neither SFT nor the reward model saw them
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)

    def __post_init__(self):
        checks.ints(self, "n_prompts")
        checks.ints(self, "prompt_seed", minimum=0)
        checks.instance_of(self, "ppo", PPOConfig)
        checks.instance_of(self, "sft", SFTStageConfig)
        checks.instance_of(self, "reward_model", RewardModelConfig)


def evaluation_prompts(n: int = 200, seed: int = 4) -> list[str]:
    """Held-out openings for comparing policies after training."""
    return review_prompts(n, seed=seed)


def make_trainer(config: RLHFRunConfig) -> PPOTrainer:
    """A :class:`PPOTrainer`: policy and reference from SFT, value model and reward from the RM."""
    policy, tokenizer = load_sft_model(config.sft)
    reference = copy.deepcopy(policy)
    reward_model, rm_tokenizer = load_reward_model(config.reward_model)
    if checks.vocabulary_hash(rm_tokenizer) != checks.vocabulary_hash(tokenizer):
        raise ValueError(
            "The reward model and the SFT policy must share one tokenizer: the value model "
            "(a copy of the reward model) reads the policy's token ids. Train the reward model "
            "from this SFT policy (RewardModelConfig.preferences.sft = RLHFRunConfig.sft)."
        )
    value_model = copy.deepcopy(reward_model)  # starts knowing which reviews score well

    def reward_fn(texts):
        return torch.from_numpy(score_texts(reward_model, rm_tokenizer, texts))

    prompts = review_prompts(config.n_prompts, seed=config.prompt_seed)
    return PPOTrainer(config.ppo, policy, reference, value_model, tokenizer, prompts,
                      reward_fn=reward_fn, gold_fn=gold_score)  # fmt: skip


def build_run(folder: Path, config: RLHFRunConfig) -> None:
    trainer = make_trainer(config)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.policy.save_pretrained(folder)
    trainer.tokenizer.save_pretrained(folder)
    (Path(folder) / HISTORY).write_text(
        json.dumps({"history": trainer.history, "seconds": seconds})
    )


def run_path(config: RLHFRunConfig | None = None) -> Path:
    """The cached folder of a PPO run (trained first if needed)."""
    config = config or RLHFRunConfig()
    return cached_stage(STAGE, asdict(config), lambda folder: build_run(folder, config))


def load_run(config: RLHFRunConfig | None = None):
    """``(policy, tokenizer, history, train_seconds)`` of a (cached) PPO run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = local_folder(run_path(config), "PPO run folder")
    with loading_stage(path):
        record = json.loads((path / HISTORY).read_text())
        policy = AutoModelForCausalLM.from_pretrained(path).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
    return policy, tokenizer, record["history"], record["seconds"]


def score_policy(policy, tokenizer, prompts, reward_model, rm_tokenizer, seed=0, max_new_tokens=40):
    """Sample one review per prompt; return the texts with their reward-model and gold scores."""
    completions = sample_completions(
        policy, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed
    )
    texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    return {
        "text": texts,
        "rm": score_texts(reward_model, rm_tokenizer, texts),
        "gold": np.asarray(gold_score(texts)),
    }


def gold_win_rate(gold_a, gold_b) -> float:
    """How often the gold preference prefers a over b on the same prompt (ties count half)."""
    gold_a, gold_b = np.asarray(gold_a), np.asarray(gold_b)
    return float(np.mean((gold_a > gold_b) + 0.5 * (gold_a == gold_b)))
