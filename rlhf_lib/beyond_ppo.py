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

The online methods (PPO, GRPO, RLOO) get the same budget, one :class:`~rlhf_lib.ppo.PPOConfig`
(``MethodRunConfig.ppo``): ``n_samples`` completions of the same training prompts, scored by the
same reward model (chapter 4), with the same KL coefficient, the same learning rate and the same
number of gradient steps per rollout; :func:`trl_arguments` turns it into TRL's arguments. The
hidden gold preference is logged beside the proxy reward (as a zero-weight reward function, so the
TRL trainers never train on it). At evenly spaced checkpoints one function,
:func:`evaluate_policy`, measures every policy the same way on held-out prompts: proxy reward,
gold score and KL to the SFT policy.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
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
TRL_ONLINE = ("grpo", "rloo")  # TRL's online trainers
GROUPED = (*TRL_ONLINE, *OURS)  # the methods whose baseline is a group of completions of a prompt
DPO_LABELS = ("annotators", "gold")


# Which fields of ``MethodRunConfig.ppo`` (a :class:`~rlhf_lib.ppo.PPOConfig`) each method reads.
# The budget reaches every method: DPO reads n_samples / 2 pairs (total_steps × batch_size / 2) once
# in minibatches, with the same optimiser settings and seed. The online methods add the sampling,
# the KL coefficient, the clip range and the missing-EOS penalty. Our RLOO and GRPO run on PPO's
# loop, so they also adapt β towards target_kl as PPO does; TRL's keep β fixed. The rest of
# PPOConfig (GAE, the value model, PPO's KL estimator, the entropy bonus) changes PPO alone.
_OPTIMISER = ("total_steps", "batch_size", "mini_batch_size", "learning_rate", "max_grad_norm",
              "weight_decay", "adam_eps", "seed")  # fmt: skip
_ONLINE = (*_OPTIMISER, "ppo_epochs", "max_new_tokens", "temperature", "kl_coef",
           "missing_eos_penalty", "cliprange")  # fmt: skip
PPO_FIELDS_READ = {
    "ppo": tuple(f.name for f in fields(PPOConfig)),
    "grpo": _ONLINE,
    "rloo": _ONLINE,
    "dpo": _OPTIMISER,
    "rloo_ours": (*_ONLINE, "target_kl", "kl_horizon"),
    "grpo_ours": (*_ONLINE, "target_kl", "kl_horizon"),
}


@dataclass
class MethodRunConfig:
    """One run of one method; its hash names the cached stage.

    ``ppo`` is the one source of the budget every method shares, in
    :class:`~rlhf_lib.ppo.PPOConfig`'s names; at its defaults every method gets chapter 5's
    budget: ``total_steps`` = 30 rollouts of ``batch_size`` = 32 completions (960 in all), split
    into minibatches of ``mini_batch_size`` = 8 for ``ppo_epochs`` = 4 passes each, learning rate
    1e-4, ``kl_coef`` = β = 0.05. What each method reads of it (:data:`PPO_FIELDS_READ`):

    - ``ppo``, our PPO: all of it (it is chapter 5's run, :func:`_ppo_run_config`);
    - ``rloo_ours`` and ``grpo_ours``, our RLOO and GRPO (:mod:`rlhf_lib.group_rl`): the budget,
      ``max_new_tokens``, ``temperature``, ``kl_coef`` (and ``target_kl``, ``kl_horizon``),
      ``missing_eos_penalty``, ``cliprange``, ``max_grad_norm``, ``weight_decay``, ``adam_eps``
      and ``seed``;
      the value-model fields must stay at their defaults;
    - ``grpo`` and ``rloo``, TRL's: the same but a fixed β (no ``target_kl``), every one turned
      into TRL's arguments by one function, :func:`trl_arguments`;
    - ``dpo``, TRL's: ``n_samples / 2`` pairs (``total_steps × batch_size / 2``), read once in
      minibatches of ``mini_batch_size``, and the optimiser's fields (:func:`trl_arguments`).

    PPO's own fields (``gamma``, ``lam``, ``vf_coef``, ``cliprange_value``, ``kl_estimator``,
    ``entropy_coef``, ``value_model``, ``critic_layers``, ``value_epochs``,
    ``critic_warmup_epochs``) do not affect the other methods. ``group_size`` is GRPO's and
    RLOO's: a rollout of ``ppo.batch_size`` completions holds ``batch_size / group_size`` prompts.
    """

    method: str = "grpo"
    ppo: PPOConfig = field(default_factory=PPOConfig)  # the shared budget: see above
    group_size: int = 4  # GRPO/RLOO: completions per prompt (a rollout holds 8 prompts × 4)
    dpo_beta: float = 0.1  # DPO's inverse temperature of the implicit reward (TRL's default)
    # who labels DPO's pairs: chapter 4's noisy annotators, or the hidden gold preference itself
    # (as the DPO paper labels its IMDb pairs with the classifier it then evaluates with)
    dpo_labels: str = "annotators"
    n_prompts: int = 512  # training prompts, as chapter 5
    prompt_seed: int = 3
    n_eval_prompts: int = 128  # held-out prompts for the checkpoints
    eval_max_new_tokens: int = 40  # as the SFT data and chapter 4's pairs: a review is not cut
    n_checkpoints: int = 5  # evaluations after training starts (the SFT point comes free)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)

    def __post_init__(self):
        checks.one_of(self, "method", METHODS + OURS)
        checks.one_of(self, "dpo_labels", DPO_LABELS)
        checks.ints(self, "group_size", "n_prompts", "n_eval_prompts", "eval_max_new_tokens",
                    "n_checkpoints")  # fmt: skip
        checks.ints(self, "prompt_seed", minimum=0)
        checks.positive(self, "dpo_beta")
        checks.instance_of(self, "ppo", PPOConfig)  # which checks its own fields
        checks.instance_of(self, "sft", SFTStageConfig)
        checks.instance_of(self, "reward_model", RewardModelConfig)
        if self.method in GROUPED:
            if self.group_size < 2:
                raise checks.ConfigError(
                    f"MethodRunConfig.group_size={self.group_size} is too small for "
                    f"{self.method}: its baseline is the other completions of the same prompt, "
                    "so use group_size >= 2."
                )
            # the error names the field to change: MethodRunConfig.ppo.batch_size
            sizes = {"ppo.batch_size": self.ppo.batch_size, "group_size": self.group_size}
            rollout = checks.arguments("MethodRunConfig", **sizes)
            checks.multiple_of(rollout, "ppo.batch_size", "group_size",
                               f"a rollout of {self.method} holds whole groups of completions of "
                               "one prompt")  # fmt: skip
        if self.method in TRL_ONLINE and self.ppo.target_kl is not None:
            raise checks.ConfigError(
                f"MethodRunConfig.ppo.target_kl={self.ppo.target_kl}: TRL's {self.method} keeps "
                "β fixed at ppo.kl_coef and cannot adapt it towards a KL target. Use "
                f"target_kl=None, or our {self.method}_ours, which adapts β as PPO does."
            )
        if self.method in OURS:
            try:  # the config _train_group runs, checked now rather than after the stages load
                self.group_config()
            except checks.ConfigError as err:
                raise checks.ConfigError(
                    f"MethodRunConfig.ppo cannot run {self.method}: {err}"
                ) from err

    @property
    def n_samples(self) -> int:
        """Completions the online methods generate while training (DPO reads half as many pairs)."""
        return self.ppo.total_steps * self.ppo.batch_size

    @property
    def rollouts(self) -> int:
        return self.ppo.total_steps

    @property
    def steps_per_rollout(self) -> int:
        """Gradient steps per pass over a rollout."""
        return self.ppo.batch_size // self.ppo.mini_batch_size

    @property
    def seed(self) -> int:
        return self.ppo.seed

    def group_config(self):
        """Our RLOO's or GRPO's :class:`~rlhf_lib.group_rl.GroupConfig`: ``ppo`` with this
        method's estimator and ``group_size``."""
        from rlhf_lib.group_rl import GroupConfig

        return GroupConfig(**asdict(self.ppo), estimator=self.method.removesuffix("_ours"),
                           group_size=self.group_size)  # fmt: skip


def flat_settings(config: MethodRunConfig) -> dict:
    """Every setting of a run as one flat dict for tables and reports (the stages ``sft`` and
    ``reward_model`` left out): ``method``, ``n_samples``, ``ppo``'s fields as ``ppo.<name>``,
    then the rest of the config's own fields."""
    own = {f.name: getattr(config, f.name) for f in fields(config)
           if f.name not in ("method", "ppo", "sft", "reward_model")}  # fmt: skip
    return {"method": config.method, "n_samples": config.n_samples,
            **{f"ppo.{k}": v for k, v in asdict(config.ppo).items()}, **own}  # fmt: skip


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
    penalty = config.ppo.missing_eos_penalty or 0.0  # None: no penalty, as PPO

    def proxy(prompts, completions, completion_ids, **kwargs):
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        scores = score_texts(reward_model, rm_tokenizer, texts)
        ended = np.array([eos_token_id in ids for ids in completion_ids])
        return (scores - penalty * ~ended).tolist()  # as PPO does

    def gold(prompts, completions, **kwargs):
        return gold_score([p + c for p, c in zip(prompts, completions, strict=True)])

    return [proxy, gold]


def trl_arguments(config: MethodRunConfig, output_dir) -> dict:
    """Every argument of TRL's config for ``config.method`` (``GRPOConfig``, ``RLOOConfig`` or
    ``DPOConfig``), derived from ``config.ppo`` (and DPO's own fields): the one place where the
    shared budget becomes TRL's."""
    ppo = config.ppo
    common = {
        "output_dir": str(output_dir),
        "learning_rate": ppo.learning_rate,
        "lr_scheduler_type": "constant",  # as our PPO: no schedule to confound the comparison
        "warmup_steps": 0,
        "per_device_train_batch_size": ppo.mini_batch_size,
        "max_grad_norm": ppo.max_grad_norm,  # TRL's defaults are PPOConfig's: 1.0 and 0.0
        "weight_decay": ppo.weight_decay,
        "adam_epsilon": ppo.adam_eps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": ppo.seed,
        **trainer_device_args(),
    }
    if config.method == "dpo":  # one pass over the pairs
        return common | {"num_train_epochs": 1, "beta": config.dpo_beta,
                         "max_length": config.reward_model.max_length}  # fmt: skip
    if config.method not in TRL_ONLINE:
        raise ValueError(f"TRL does not train {config.method!r}: only {(*TRL_ONLINE, 'dpo')}.")
    return common | {
        # a gradient step per minibatch, ppo_epochs passes over each of total_steps rollouts
        "max_steps": config.rollouts * config.steps_per_rollout * ppo.ppo_epochs,
        "num_generations": config.group_size,
        "steps_per_generation": config.steps_per_rollout,  # a rollout is batch_size completions
        "num_iterations": ppo.ppo_epochs,
        "max_completion_length": ppo.max_new_tokens,
        "temperature": ppo.temperature,
        "beta": ppo.kl_coef,
        "epsilon": ppo.cliprange,  # TRL's default is PPOConfig's: 0.2
        "reward_weights": [1.0, 0.0],  # the proxy reward; the gold score only logged
        "disable_dropout": True,
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
    args = config_class(**trl_arguments(config, output_dir))
    max_steps = args.max_steps
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
    args = DPOConfig(**trl_arguments(config, output_dir))
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
                              2 * config.ppo.mini_batch_size)  # fmt: skip
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


def _ppo_run_config(config: MethodRunConfig) -> RLHFRunConfig:
    """Chapter 5's run with this budget: at the defaults, chapter 5's default run itself."""
    return RLHFRunConfig(ppo=config.ppo, n_prompts=config.n_prompts,
                         prompt_seed=config.prompt_seed, sft=config.sft,
                         reward_model=config.reward_model, n_eval_prompts=config.n_eval_prompts,
                         eval_max_new_tokens=config.eval_max_new_tokens,
                         n_checkpoints=config.n_checkpoints)  # fmt: skip


def _train_group(config: MethodRunConfig, output_dir):
    """Our RLOO or GRPO (:mod:`rlhf_lib.group_rl`) at the same budget, on the same rollout core as
    our PPO; returns ``(policy, history, checkpoints, seconds)``."""
    import copy

    from rlhf_lib.group_rl import GroupTrainer

    group = config.group_config()
    policy, tokenizer = load_sft_model(config.sft)
    reward_model, rm_tokenizer = load_reward_model(config.reward_model)

    def reward_fn(texts):
        return torch.from_numpy(score_texts(reward_model, rm_tokenizer, texts))

    prompts = review_prompts(config.n_prompts, seed=config.prompt_seed)
    trainer = GroupTrainer(group, policy, copy.deepcopy(policy), tokenizer, prompts, reward_fn,
                           gold_score)  # fmt: skip
    checkpoints = Checkpoints(config, trainer.ref_policy, tokenizer, config.rollouts,
                              config.ppo.batch_size)  # fmt: skip
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
