"""How many labels does a reward model need? Held-out accuracy against the annotators' noise
ceiling, for pairwise and K-wise comparisons, and for the book's default over seeds (issue 15).

    python benchmarks/reward_model.py [--out FILE.json]

Writes ``benchmarks/results/reward_model.json`` (chapter 4 renders it):

- **the held-out set**: one pair of SFT completions for each of 2000 review openings that no
  stage uses (``review_prompts(2000, seed=7)``; the book's stages use seeds 0, 1 and 2), labelled
  by the book's annotator pool, with its noise ceiling and the two-annotator agreement;
- **the label-budget curve**: reward models trained from the SFT model by the library's own
  trainers, each for 4 epochs (the chapter's default): TRL's ``RewardTrainer`` on 400 to 3200
  pairs (one pair a prompt, 32 pairs a step) and the K-wise trainer on 1600 to 6400 comparisons
  (K = 4 completions a prompt, all 6 pairs labelled, 16 prompts a step). Fresh prompts (seeds 11
  and 13), one data draw, training seed 0;
- **the book's default** (``RewardModelConfig()``: K-wise, 1600 prompts, 9600 comparisons), as
  the mean and spread over 3 seeds of the whole chain: the preference pairs (sampling and
  labels) and the reward model (head and data order). Seed 0 is the stage the book itself uses.

Accuracy is the share of held-out pairs where the reward model scores the annotator's choice
higher; the gap is the noise ceiling minus that accuracy. Train seconds are TRL's
``train_runtime`` on one torch thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from book_execution import machine  # noqa: E402
from page_weight import git_state  # noqa: E402

OUT = ROOT / "benchmarks/results/reward_model.json"
N_EVAL, EVAL_PROMPT_SEED = 2000, 7
PAIRWISE = (400, 800, 1600, 3200)  # comparisons = pairs = prompts
KWISE = (1600, 3200, 6400)  # comparisons = prompts x C(4, 2)
PAIR_PROMPT_SEED, GROUP_PROMPT_SEED = 11, 13
CHAIN_SEEDS = (0, 1, 2)


def comparisons_split(policy, n_prompts: int, k: int, prompt_seed: int):
    """A labelled split: ``k`` SFT completions of each of ``n_prompts`` fresh review openings."""
    from datasets import Dataset

    from rlhf_lib.annotators import make_annotators
    from rlhf_lib.preferences import labelled_comparisons
    from rlhf_lib.sft import review_prompts

    prompts = review_prompts(n_prompts, seed=prompt_seed)
    columns = labelled_comparisons(policy, prompts, k, make_annotators(),
                                   np.random.default_rng(prompt_seed), seed=prompt_seed,
                                   desc=f"sampling {n_prompts} x {k}")  # fmt: skip
    return Dataset.from_dict(columns)


def evaluate(model, tokenizer, split) -> dict:
    """Accuracy against the annotators' labels (with its standard error) and against gold."""
    from rlhf_lib.reward_model import score_pairs

    rc, rr = score_pairs(model, tokenizer, split)
    acc = float(np.mean(rc > rr))
    gold_c, gold_r = np.array(split["gold_chosen"]), np.array(split["gold_rejected"])
    decided = gold_c != gold_r  # a gold tie has no gold preference
    return {
        "accuracy": acc,
        "stderr": math.sqrt(acc * (1 - acc) / len(split)),
        "gold_agreement": float(np.mean((rc > rr)[decided] == (gold_c > gold_r)[decided])),
    }


def curve_point(method: str, train, held_out) -> dict:
    """Train one reward model from the SFT model for 4 epochs and score it on ``held_out``."""
    import torch

    from rlhf_lib.reward_model import RewardModelConfig, make_trainer, reward_model_from_sft

    kwise = method == "K-wise"
    config = RewardModelConfig() if kwise else RewardModelConfig(batch_size=32)  # 64 texts a step
    torch.manual_seed(config.seed)  # the new head's weights, as the stage build seeds them
    model, tokenizer = reward_model_from_sft()
    trainer = make_trainer(model, tokenizer, train, None, config, "/tmp/rm-benchmark",
                           kwise=kwise)  # fmt: skip
    result = trainer.train()
    model.eval()
    steps, texts_a_step = trainer.state.global_step, config.batch_size * (4 if kwise else 2)
    row = {"method": method, "comparisons": len(train), "steps": steps,
           "texts_forwarded": steps * texts_a_step,
           "train_seconds": round(result.metrics["train_runtime"], 1)}  # fmt: skip
    return {**row, **evaluate(model, tokenizer, held_out)}


def default_run(seed: int, held_out) -> dict:
    """The book's reward-model stage with every seed of the chain set to ``seed``."""
    from rlhf_lib.preferences import PreferenceConfig, load_preferences
    from rlhf_lib.reward_model import RewardModelConfig, load_reward_history, load_reward_model

    config = RewardModelConfig(seed=seed, preferences=PreferenceConfig(seed=seed))
    model, tokenizer = load_reward_model(config)  # trained now unless the cache holds it
    history = load_reward_history(config)
    own_eval = load_preferences(config.preferences)["eval"]
    seconds = next(r["train_runtime"] for r in history if "train_runtime" in r)
    return {
        "seed": seed,
        "train_seconds": round(seconds, 1),
        **evaluate(model, tokenizer, held_out),
        "own_eval_accuracy": evaluate(model, tokenizer, own_eval)["accuracy"],
    }


def slope_per_doubling(rows: list[dict]) -> float:
    """Least-squares slope of accuracy against log2(comparisons): accuracy gained a doubling."""
    x = np.log2([r["comparisons"] for r in rows])
    return float(np.polyfit(x, [r["accuracy"] for r in rows], 1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from rlhf_lib import setup_notebook
    from rlhf_lib.annotators import make_annotators, noise_ceiling
    from rlhf_lib.preferences import PreferenceConfig
    from rlhf_lib.sft import load_sft_model

    setup_notebook(seed=0, plotly=False)  # one torch thread, as the book's kernels
    git, started = git_state(), time.perf_counter()
    policy = load_sft_model()
    held_out = comparisons_split(policy, N_EVAL, 2, EVAL_PROMPT_SEED)
    curve = []
    pairs = comparisons_split(policy, max(PAIRWISE), 2, PAIR_PROMPT_SEED)
    for n in PAIRWISE:
        curve.append(curve_point("pairwise", pairs.select(range(n)), held_out))
        print(curve[-1], flush=True)
    groups = comparisons_split(policy, max(KWISE) // 6, 4, GROUP_PROMPT_SEED)
    for n in KWISE:  # the first n / 6 prompts, with all their pairs
        first = [i for i, g in enumerate(groups["group"]) if g < n // 6]
        curve.append(curve_point("K-wise", groups.select(first), held_out))
        print(curve[-1], flush=True)
    runs = [default_run(seed, held_out) for seed in CHAIN_SEEDS]
    print(runs, flush=True)
    ceiling = noise_ceiling(np.array(held_out["gold_chosen"]), np.array(held_out["gold_rejected"]),
                            make_annotators())  # fmt: skip
    accuracies, default = [r["accuracy"] for r in runs], PreferenceConfig()
    report = {
        "what": "reward-model held-out accuracy against the annotators' noise ceiling",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git,
        "n_eval": len(held_out),
        "eval_prompt_seed": EVAL_PROMPT_SEED,
        "ceiling": ceiling,
        "annotator_agreement": float(np.mean(held_out["second_agrees"])),
        "curve": curve,
        "default": {
            "comparisons": default.n_comparisons,
            "k": default.k,
            "runs": runs,
            "accuracy_mean": float(np.mean(accuracies)),
            "accuracy_std": float(np.std(accuracies, ddof=1)),
            "gap_mean": ceiling - float(np.mean(accuracies)),
        },
        "slope_per_doubling": {
            method: slope_per_doubling([r for r in curve if r["method"] == method])
            for method in ("pairwise", "K-wise")
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}: default {100 * report['default']['accuracy_mean']:.1f} ± "
          f"{100 * report['default']['accuracy_std']:.1f} against a ceiling of "
          f"{100 * ceiling:.1f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
