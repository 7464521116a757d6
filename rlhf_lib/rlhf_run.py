"""The miniature world's PPO runs (Chapter 5): the SFT policy optimised against the reward model.

:mod:`rlhf_lib.ppo` is the algorithm and knows nothing of reviews. This module wires it to the
earlier stages: the SFT policy (chapter 3) is the starting point and the frozen reference, the
reward model (chapter 4) is the reward and the value model's initialisation, and the hidden gold
preference is logged beside the proxy reward. Each run is a cached stage, so the
over-optimisation page reuses the default run of the training page, and chapter 6 reuses it as
its PPO run: every run is also measured on held-out prompts at ``n_checkpoints`` points
(:class:`rlhf_lib.evaluation.Checkpoints`), the measurement chapter 6 makes of every method.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rlhf_lib import checks
from rlhf_lib.annotators import gold_score
from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.evaluation import Checkpoints, sft_checkpoint
from rlhf_lib.ppo import PPOConfig, PPOTrainer
from rlhf_lib.reward_model import RewardModelConfig, load_reward_model, score_texts
from rlhf_lib.runtime import local_folder
from rlhf_lib.sft import SFTStageConfig, load_sft_model, review_prompts

STAGE = "ppo_run"
HISTORY = "history.json"
# Chapter 5's over-optimisation runs: these multiples of the default KL coefficient (0 = no
# penalty, 1 = the default run itself, 4 = a strong penalty).
KL_SWEEP = (0.0, 1.0, 4.0)


@dataclass
class RLHFRunConfig:
    """One PPO run of the miniature world; its hash names the cached stage."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    n_prompts: int = 512  # training prompts (review openings), drawn with replacement each step
    prompt_seed: int = 3  # new openings: neither SFT nor the reward model saw them
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    # held-out measurement during training, as chapter 6 measures every method
    n_eval_prompts: int = 128
    eval_max_new_tokens: int = 40  # as the SFT data and chapter 4's pairs: a review is not cut
    n_checkpoints: int = 5

    @property
    def seed(self) -> int:
        return self.ppo.seed

    def __post_init__(self):
        checks.ints(self, "n_prompts", "n_eval_prompts", "eval_max_new_tokens", "n_checkpoints")
        checks.ints(self, "prompt_seed", minimum=0)
        checks.instance_of(self, "ppo", PPOConfig)
        checks.instance_of(self, "sft", SFTStageConfig)
        checks.instance_of(self, "reward_model", RewardModelConfig)


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
    value_model = critic(reward_model, config.ppo)

    def reward_fn(texts):
        return torch.from_numpy(score_texts(reward_model, rm_tokenizer, texts))

    prompts = review_prompts(config.n_prompts, seed=config.prompt_seed)
    return PPOTrainer(config.ppo, policy, reference, value_model, tokenizer, prompts,
                      reward_fn=reward_fn, gold_fn=gold_score)  # fmt: skip


def critic(reward_model, ppo: PPOConfig):
    """PPO's separate value model: a copy of the reward model, which starts knowing which reviews
    score well, cut to its first ``ppo.critic_layers`` blocks if set; ``None`` when the value
    head shares the policy's trunk (``ppo.value_model == "shared"``)."""
    if ppo.value_model == "shared":
        return None
    value_model = copy.deepcopy(reward_model)
    if ppo.critic_layers is not None:
        blocks = value_model.transformer.h  # GPT-2's blocks, as the book's models are
        if ppo.critic_layers > len(blocks):
            raise checks.ConfigError(
                f"PPOConfig.critic_layers={ppo.critic_layers}, but the reward model has only "
                f"{len(blocks)} blocks: use at most {len(blocks)}, or None for all of them."
            )
        value_model.transformer.h = blocks[: ppo.critic_layers]
        value_model.config.n_layer = ppo.critic_layers
    return value_model


def train_run(config: RLHFRunConfig) -> tuple[PPOTrainer, dict]:
    """Train one run, measured at its checkpoints; returns the trainer and the run's record:
    ``history``, ``seconds`` / ``cpu_seconds`` of training (the measurement excluded),
    ``checkpoints`` (the SFT start first) and the last checkpoint's held-out ``samples``."""
    trainer = make_trainer(config)
    checkpoints = Checkpoints(config, trainer.ref_policy, trainer.tokenizer,
                              config.ppo.total_steps, config.ppo.batch_size)  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train(after_step=checkpoints.after_step)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return trainer, {
        "history": trainer.history,
        "seconds": wall - checkpoints.wall_seconds,
        "cpu_seconds": cpu - checkpoints.cpu_seconds,
        "checkpoints": [sft_checkpoint(checkpoints), *checkpoints.rows],
        "samples": checkpoints.texts,
    }


def build_run(folder: Path, config: RLHFRunConfig) -> None:
    trainer, record = train_run(config)
    trainer.policy.save_pretrained(folder)
    trainer.tokenizer.save_pretrained(folder)
    (Path(folder) / HISTORY).write_text(json.dumps(record))


def run_path(config: RLHFRunConfig | None = None) -> Path:
    """The cached folder of a PPO run (trained first if needed)."""
    config = config or RLHFRunConfig()
    return cached_stage(STAGE, asdict(config), lambda folder: build_run(folder, config))


def load_run_record(config: RLHFRunConfig | None = None) -> dict:
    """The record of a (cached) run (see :func:`train_run`); ``record["path"]`` is its folder."""
    path = local_folder(run_path(config), "PPO run folder")
    with loading_stage(path):
        record = json.loads((path / HISTORY).read_text())
    return record | {"path": str(path)}


def load_run(config: RLHFRunConfig | None = None):
    """``(policy, tokenizer, history, train_seconds)`` of a (cached) PPO run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = local_folder(run_path(config), "PPO run folder")
    with loading_stage(path):
        record = json.loads((path / HISTORY).read_text())
        policy = AutoModelForCausalLM.from_pretrained(path).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
    return policy, tokenizer, record["history"], record["seconds"]
