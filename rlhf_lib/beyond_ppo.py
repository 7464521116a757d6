"""DPO, GRPO and RLOO with TRL, run on the miniature world beside our PPO (chapter 6).

Every method starts from the same SFT policy (chapter 3) and keeps it as the frozen reference:

- ``ppo``: :class:`rlhf_lib.ppo.PPOTrainer` (chapter 5), with a value model and a per-token KL
  penalty;
- ``grpo``: TRL's ``GRPOTrainer``, with no value model: a completion's advantage is its reward
  minus the mean of its group (the other completions of the same prompt), divided by their spread;
- ``rloo``: TRL's ``RLOOTrainer``: the advantage is the reward minus the mean reward of the *other*
  completions of the prompt (leave-one-out), with the KL penalty folded into the reward;
- ``dpo``: TRL's ``DPOTrainer``: no reward model and no sampling at all; it fits the policy to
  chapter 4's labelled pairs directly (the first ``n_samples / 2`` of them, one pass: as many
  completions as the online methods sample).

The online methods (PPO, GRPO, RLOO) get the same budget: ``n_samples`` completions of the same
training prompts, scored by the same reward model (chapter 4), with the same KL coefficient, the
same learning rate and the same number of gradient steps per rollout. The hidden gold preference is
logged beside the proxy reward (as a zero-weight reward function, so the TRL trainers never train
on it). At evenly spaced checkpoints one function, :func:`evaluate_policy`, measures every policy
the same way on held-out prompts: proxy reward, gold score and KL to the SFT policy.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from rlhf_lib import checks
from rlhf_lib.annotators import gold_score
from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.evaluation import Checkpoints, sft_checkpoint
from rlhf_lib.ppo import PPOConfig
from rlhf_lib.reward_model import (
    RewardModelConfig,
    load_reward_model,
    reward_model_path,
    score_texts,
)
from rlhf_lib.rlhf_run import RLHFRunConfig, load_run, load_run_record, train_run
from rlhf_lib.runtime import go_offline, local_folder
from rlhf_lib.sft import (
    ProgressCallback,
    SFTStageConfig,
    load_sft_model,
    review_prompts,
    sft_model_path,
    trainer_device_args,
)

STAGE = "method_run"
RECORD = "record.json"
METHODS = ("ppo", "grpo", "rloo", "dpo")
OURS = ("rloo_ours", "grpo_ours")  # our RLOO and GRPO (rlhf_lib.group_rl), beside TRL's
ONLINE = ("ppo", "grpo", "rloo")  # the methods that sample from the policy while training
DPO_LABELS = ("annotators", "gold")


@dataclass
class MethodRunConfig:
    """One run of one method; its hash names the cached stage. The defaults give every online
    method chapter 5's budget: 30 rollouts of 32 completions, 4 passes over each in minibatches
    of 8, learning rate 1e-4, β = 0.05."""

    method: str = "grpo"
    n_samples: int = 960  # completions generated while training (PPO: 30 steps × 32)
    rollout_size: int = 32  # completions per rollout
    group_size: int = 4  # GRPO/RLOO: completions per prompt (a rollout holds 8 prompts × 4)
    mini_batch_size: int = 8  # completions per gradient step
    epochs: int = 4  # passes over each rollout (PPO's ppo_epochs, TRL's num_iterations)
    learning_rate: float = 1e-4
    beta: float = 0.05  # KL coefficient (DPO's β is a different quantity: dpo_beta)
    max_new_tokens: int = 24
    missing_eos_penalty: float = 1.0  # as PPO: a review never ended loses one reward unit
    dpo_beta: float = 0.1  # DPO's inverse temperature of the implicit reward (TRL's default)
    # who labels DPO's pairs: chapter 4's noisy annotators, or the hidden gold preference itself
    # (as the DPO paper labels its IMDb pairs with the classifier it then evaluates with)
    dpo_labels: str = "annotators"
    n_prompts: int = 512  # training prompts, as chapter 5
    prompt_seed: int = 3
    n_eval_prompts: int = 128  # held-out prompts for the checkpoints
    eval_max_new_tokens: int = 40  # as the SFT data and chapter 4's pairs: a review is not cut
    n_checkpoints: int = 5  # evaluations after training starts (the SFT point comes free)
    seed: int = 0
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)

    def __post_init__(self):
        checks.one_of(self, "method", METHODS + OURS)
        checks.one_of(self, "dpo_labels", DPO_LABELS)
        checks.ints(self, "n_samples", "rollout_size", "group_size", "mini_batch_size", "epochs",
                    "max_new_tokens", "n_prompts", "n_eval_prompts", "eval_max_new_tokens",
                    "n_checkpoints")  # fmt: skip
        checks.ints(self, "prompt_seed", "seed", minimum=0)
        checks.positive(self, "learning_rate", "dpo_beta")
        checks.non_negative(self, "beta", "missing_eos_penalty")
        checks.instance_of(self, "sft", SFTStageConfig)
        checks.instance_of(self, "reward_model", RewardModelConfig)
        if self.method in ("grpo", "rloo", *OURS) and self.group_size < 2:
            raise checks.ConfigError(
                f"MethodRunConfig.group_size={self.group_size} is too small for {self.method}: "
                "its baseline is the other completions of the same prompt, so use group_size >= 2."
            )
        checks.multiple_of(self, "rollout_size", "mini_batch_size",
                           "each rollout is split into equal parts")  # fmt: skip
        checks.multiple_of(self, "rollout_size", "group_size",
                           "a rollout holds whole groups of completions of one prompt")  # fmt: skip
        if self.n_samples < self.rollout_size:
            raise checks.ConfigError(
                f"MethodRunConfig.n_samples={self.n_samples} is less than one rollout "
                f"({self.rollout_size}): raise n_samples or lower rollout_size."
            )
        checks.multiple_of(self, "n_samples", "rollout_size",
                           "every method samples whole rollouts")  # fmt: skip

    @property
    def rollouts(self) -> int:
        return self.n_samples // self.rollout_size

    @property
    def steps_per_rollout(self) -> int:
        return self.rollout_size // self.mini_batch_size


# ---------------------------------------------------------------------------------------------
# One measurement for every policy
# ---------------------------------------------------------------------------------------------


class _CheckpointCallback(TrainerCallback):
    def __init__(self, checkpoints: Checkpoints):
        self.checkpoints = checkpoints

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.checkpoints.steps:
            self.checkpoints.measure(model, state.global_step)


# ---------------------------------------------------------------------------------------------
# The four methods
# ---------------------------------------------------------------------------------------------


def _proxy_and_gold_rewards(config: MethodRunConfig, checkpoints: Checkpoints, eos_token_id: int):
    """TRL reward functions: the reward model (trained on) and the gold score (weight 0: logged
    as ``rewards/gold/mean``, never trained on)."""
    reward_model, rm_tokenizer = checkpoints.reward_model, checkpoints.rm_tokenizer

    def proxy(prompts, completions, completion_ids, **kwargs):
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        scores = score_texts(reward_model, rm_tokenizer, texts)
        ended = np.array([eos_token_id in ids for ids in completion_ids])
        return (scores - config.missing_eos_penalty * ~ended).tolist()  # as PPO does

    def gold(prompts, completions, **kwargs):
        return gold_score([p + c for p, c in zip(prompts, completions, strict=True)])

    return [proxy, gold]


def _trl_common_args(config: MethodRunConfig, output_dir) -> dict:
    return {
        "output_dir": str(output_dir),
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "constant",  # as our PPO: no schedule to confound the comparison
        "warmup_steps": 0,
        "per_device_train_batch_size": config.mini_batch_size,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": config.seed,
        **trainer_device_args(),
    }


def _train_online_trl(config: MethodRunConfig, output_dir):
    """GRPO or RLOO with TRL at PPO's budget; returns ``(policy, log_history, checkpoints,
    seconds)``."""
    go_offline()  # TRL's telemetry off and no hub look-ups, even without setup_notebook()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    config_class, trainer_class = {
        "grpo": (GRPOConfig, GRPOTrainer),
        "rloo": (RLOOConfig, RLOOTrainer),
    }[config.method]
    # TRL loads the policy *and* the reference from this folder
    sft_path = local_folder(sft_model_path(config.sft), "SFT model folder")
    reference, tokenizer = load_sft_model(config.sft)
    max_steps = config.rollouts * config.steps_per_rollout * config.epochs
    args = config_class(
        **_trl_common_args(config, output_dir),
        max_steps=max_steps,
        num_generations=config.group_size,
        steps_per_generation=config.steps_per_rollout,
        num_iterations=config.epochs,
        max_completion_length=config.max_new_tokens,
        temperature=1.0,
        beta=config.beta,
        reward_weights=[1.0, 0.0],
        disable_dropout=True,
    )
    prompts = review_prompts(config.n_prompts, seed=config.prompt_seed)
    checkpoints = Checkpoints(config, reference, tokenizer, max_steps,
                              config.n_samples / max_steps)  # fmt: skip
    trainer = trainer_class(
        model=str(sft_path),
        reward_funcs=_proxy_and_gold_rewards(config, checkpoints, tokenizer.eos_token_id),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
        callbacks=[ProgressCallback(config.method.upper()), _CheckpointCallback(checkpoints)],
    )
    _remove_printer(trainer)
    seconds = timed(trainer.train)
    return trainer.model, trainer.state.log_history, checkpoints, seconds


def _train_dpo(config: MethodRunConfig, output_dir):
    """DPO on ``n_samples / 2`` of chapter 4's training pairs, one pass; returns
    ``(policy, log_history, checkpoints, seconds)``."""
    go_offline()  # TRL's telemetry off and no hub look-ups, even without setup_notebook()
    from trl import DPOConfig, DPOTrainer

    from rlhf_lib.preferences import for_training, load_preferences

    split = load_preferences(config.reward_model.preferences)["train"]
    n_pairs = config.n_samples // 2
    if n_pairs > len(split):
        raise ValueError(
            f"DPO needs n_samples / 2 = {n_pairs} preference pairs, but chapter 4's training "
            f"split has {len(split)}: lower n_samples or raise PreferenceConfig.n_train."
        )
    split = split.select(range(n_pairs))
    pairs = gold_labelled(split) if config.dpo_labels == "gold" else for_training(split)
    reference, tokenizer = load_sft_model(config.sft)
    args = DPOConfig(
        **_trl_common_args(config, output_dir),
        num_train_epochs=1,
        beta=config.dpo_beta,
        max_length=config.reward_model.max_length,
    )
    trainer = DPOTrainer(
        model=str(local_folder(sft_model_path(config.sft), "SFT model folder")),
        args=args,
        train_dataset=pairs,
        processing_class=tokenizer,
        callbacks=[ProgressCallback("DPO")],
    )
    total_steps = len(trainer.get_train_dataloader())
    # DPO generates nothing: its "samples" are the labelled completions it read (2 per pair).
    checkpoints = Checkpoints(config, reference, tokenizer, total_steps,
                              2 * config.mini_batch_size)  # fmt: skip
    trainer.add_callback(_CheckpointCallback(checkpoints))
    _remove_printer(trainer)
    seconds = timed(trainer.train)
    return trainer.model, trainer.state.log_history, checkpoints, seconds


def gold_labelled(split):
    """A preference split's pairs, each chosen by the hidden gold score instead of its annotator
    (a tie keeps the annotator's order): the labels a noiseless annotator would give, in TRL's
    columns."""
    swap = np.asarray(split["gold_rejected"]) > np.asarray(split["gold_chosen"])
    chosen = np.where(swap, split["rejected"], split["chosen"]).tolist()
    rejected = np.where(swap, split["chosen"], split["rejected"]).tolist()
    from datasets import Dataset

    return Dataset.from_dict({"prompt": split["prompt"], "chosen": chosen, "rejected": rejected})


def _ppo_settings(config: MethodRunConfig) -> dict:
    """The shared budget in :class:`~rlhf_lib.ppo.PPOConfig`'s names (our PPO, RLOO and GRPO)."""
    return {"total_steps": config.rollouts, "batch_size": config.rollout_size,
            "mini_batch_size": config.mini_batch_size, "ppo_epochs": config.epochs,
            "max_new_tokens": config.max_new_tokens, "kl_coef": config.beta,
            "missing_eos_penalty": config.missing_eos_penalty,
            "learning_rate": config.learning_rate, "seed": config.seed}  # fmt: skip


def _ppo_run_config(config: MethodRunConfig) -> RLHFRunConfig:
    """Chapter 5's run with this budget: at the defaults, chapter 5's default run itself."""
    return RLHFRunConfig(ppo=PPOConfig(**_ppo_settings(config)), n_prompts=config.n_prompts,
                         prompt_seed=config.prompt_seed, sft=config.sft,
                         reward_model=config.reward_model, n_eval_prompts=config.n_eval_prompts,
                         eval_max_new_tokens=config.eval_max_new_tokens,
                         n_checkpoints=config.n_checkpoints)  # fmt: skip


def _train_group(config: MethodRunConfig, output_dir):
    """Our RLOO or GRPO (:mod:`rlhf_lib.group_rl`) at the same budget, on the same rollout core as
    our PPO; returns ``(policy, history, checkpoints, seconds)``."""
    import copy

    from rlhf_lib.group_rl import GroupConfig, GroupTrainer

    estimator = config.method.removesuffix("_ours")
    group = GroupConfig(**_ppo_settings(config), estimator=estimator,
                        group_size=config.group_size)  # fmt: skip
    policy, tokenizer = load_sft_model(config.sft)
    reward_model, rm_tokenizer = load_reward_model(config.reward_model)

    def reward_fn(texts):
        return torch.from_numpy(score_texts(reward_model, rm_tokenizer, texts))

    prompts = review_prompts(config.n_prompts, seed=config.prompt_seed)
    trainer = GroupTrainer(group, policy, copy.deepcopy(policy), tokenizer, prompts, reward_fn,
                           gold_score)  # fmt: skip
    checkpoints = Checkpoints(config, trainer.ref_policy, tokenizer, config.rollouts,
                              config.rollout_size)  # fmt: skip
    seconds = timed(lambda: trainer.train(after_step=checkpoints.after_step))
    return trainer.policy, trainer.history, checkpoints, seconds


def timed(train) -> tuple[float, float]:
    """Wall and CPU seconds of ``train()``: every method's clock covers its training loop only
    (loading the models and building the trainer are not training), checkpoints included; the
    caller subtracts the time the checkpoints spent measuring."""
    wall, cpu = time.perf_counter(), time.process_time()
    train()
    return time.perf_counter() - wall, time.process_time() - cpu


def _remove_printer(trainer) -> None:
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps the bar for a log printer


TRAINERS = {"grpo": _train_online_trl, "rloo": _train_online_trl,
            "dpo": _train_dpo, "rloo_ours": _train_group, "grpo_ours": _train_group}  # fmt: skip


def train_method(config: MethodRunConfig, folder, reuse_chapter_5: bool = True) -> dict:
    """Train one method, save its policy in ``folder`` and return (and save) its record:
    checkpoints (samples, proxy, gold, KL), the trainer's log, training wall and CPU seconds
    (measurement excluded) and the final held-out samples.

    PPO is chapter 5's run (:func:`rlhf_lib.rlhf_run.train_run`), measured the same way, and with
    ``reuse_chapter_5`` taken from the stage cache when chapter 5 already trained it: nothing is
    trained twice. A benchmark that times the training passes ``reuse_chapter_5=False``."""
    folder = Path(folder)
    # the stages every method starts from, built (on a cold cache) before the clock starts: the
    # training time is the method's own, not the SFT policy's or the reward model's
    sft_model_path(config.sft)
    reward_model_path(config.reward_model)
    if config.method == "ppo":
        policy, result = _ppo_run(config, reuse_chapter_5)
    else:
        torch.manual_seed(config.seed)
        policy, history, checkpoints, (wall, cpu) = TRAINERS[config.method](
            config, folder / "trainer"
        )
        result = {
            "checkpoints": [sft_checkpoint(checkpoints), *checkpoints.rows],
            "history": history,
            "train_wall_seconds": wall - checkpoints.wall_seconds,
            "train_cpu_seconds": cpu - checkpoints.cpu_seconds,
            "samples": checkpoints.texts,
        }
    record = {"method": config.method, "config": asdict(config), **result}
    tokenizer = load_sft_model(config.sft)[1]
    policy.save_pretrained(folder / "policy")
    tokenizer.save_pretrained(folder / "policy")
    (folder / RECORD).write_text(json.dumps(record))
    return record


def _ppo_run(config: MethodRunConfig, reuse_chapter_5: bool):
    """Our PPO: chapter 5's run with this budget, cached or trained here; ``(policy, result)``."""
    run = _ppo_run_config(config)
    if reuse_chapter_5:
        policy, _, _, _ = load_run(run)
        record = load_run_record(run)
    else:
        trainer, record = train_run(run)
        policy = trainer.policy
    return policy, {
        "checkpoints": record["checkpoints"],
        "history": record["history"],
        "train_wall_seconds": record["seconds"],
        "train_cpu_seconds": record["cpu_seconds"],
        "samples": record["samples"],
    }


def method_run_path(config: MethodRunConfig) -> Path:
    """The cached folder of one method's run (trained first if needed)."""
    return cached_stage(STAGE, asdict(config), lambda folder: train_method(config, folder))


def load_method_run(config: MethodRunConfig) -> dict:
    """The record of a (cached) run; ``record["policy_path"]`` is its saved policy."""
    path = method_run_path(config)
    with loading_stage(path):
        record = json.loads((path / RECORD).read_text())
    record["policy_path"] = str(path / "policy")
    return record


# How figures and tables name each method (figures: rlhf_lib.dashboard.gold_vs_kl_figure).
METHOD_NAMES = {"ppo": "PPO (ours)", "grpo": "GRPO (TRL)", "rloo": "RLOO (TRL)",
                "dpo": "DPO (TRL)", "rloo_ours": "RLOO (ours)",
                "grpo_ours": "GRPO (ours)"}  # fmt: skip
