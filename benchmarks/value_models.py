"""Does PPO earn its value model? Chapter 5's PPO run with each candidate critic, side by side.

    python benchmarks/value_models.py [--out FILE.json] [--seeds 0 1 2]

Each candidate is chapter 5's default run (:class:`rlhf_lib.rlhf_run.RLHFRunConfig`) with the
value model changed and nothing else: a separate critic copied from the reward model (today's
choice, the comparison row), the same cut to its first block, values trained in the first pass
over each rollout only, a critic warmed up on the first rollout, and a linear value head on the
policy's own trunk. Every run trains in a fresh process from the cached SFT policy and reward
model, measured on 128 held-out prompts at 5 checkpoints as chapter 6 measures every method; the
report gives the mean over seeds, the spread and a 95% confidence interval.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import _runs  # noqa: E402  (a fresh process per run, the summary's statistics, the report)
from _runs import ci95_half_width  # noqa: E402
from page_weight import git_state  # noqa: E402  (the commit measured)

# Each candidate names every value-model field, so its row does not depend on PPOConfig's defaults.
SEPARATE = {"value_model": "separate", "critic_layers": None, "value_epochs": None,
            "critic_warmup_epochs": 0}  # fmt: skip
CANDIDATES = {
    "separate critic (all blocks)": SEPARATE,
    "separate critic, first block only": SEPARATE | {"critic_layers": 1},
    "values in the first pass only": SEPARATE | {"value_epochs": 1},
    "first block, first pass only": SEPARATE | {"critic_layers": 1, "value_epochs": 1},
    "critic warmed up on rollout 1": SEPARATE | {"critic_warmup_epochs": 4},
    "value head on the policy's trunk": SEPARATE | {"value_model": "shared"},
}


def run_one(name: str, seed: int, out: Path) -> None:
    """Train chapter 5's run with candidate ``name`` (in this process); write its figures."""
    import resource

    from rlhf_lib import setup_notebook
    from rlhf_lib.ppo import PPOConfig
    from rlhf_lib.rlhf_run import RLHFRunConfig, train_run

    setup_notebook(seed=seed, plotly=False)
    _, record = train_run(RLHFRunConfig(ppo=PPOConfig(seed=seed, **CANDIDATES[name])))
    start, final = record["checkpoints"][0], record["checkpoints"][-1]
    explained = [h["val/explained_variance"] for h in record["history"]]
    gain = final["gold"] - start["gold"]
    out.write_text(json.dumps({
        "candidate": name, "seed": seed, "gold_start": start["gold"], "gold_final": final["gold"],
        "gold_gain": gain, "final_kl": final["kl"], "train_cpu_seconds": record["cpu_seconds"],
        "train_wall_seconds": record["seconds"],
        "gold_gain_per_cpu_second": gain / record["cpu_seconds"],
        "explained_variance_last_5": sum(explained[-5:]) / 5,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


AVERAGED = ("gold_final", "gold_gain", "final_kl", "train_cpu_seconds", "train_wall_seconds",
            "gold_gain_per_cpu_second", "explained_variance_last_5", "peak_rss_mb")  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    import numpy as np

    summary = {"candidate": runs[0]["candidate"], "config": CANDIDATES[runs[0]["candidate"]],
               "seeds": [r["seed"] for r in runs]}  # fmt: skip
    summary |= _runs.means(runs, AVERAGED)
    for key in ("gold_gain", "gold_gain_per_cpu_second", "train_cpu_seconds"):
        summary[f"{key}_std"] = float(np.std([r[key] for r in runs], ddof=1))
        summary[f"{key}_ci95"] = ci95_half_width([r[key] for r in runs])
    summary["per_seed"] = runs
    return summary


def main() -> int:
    args = _runs.parser(__doc__, ROOT / "results/value_models.json", [0, 1, 2]).parse_args()
    if args.one:
        run_one(args.one, args.seeds[0], Path(args.out))
        return 0
    measured = git_state()  # the code checked out when the run starts is the code it measures

    from rlhf_lib.reward_model import reward_model_path
    from rlhf_lib.rlhf_run import RLHFRunConfig
    from rlhf_lib.sft import sft_model_path

    config = RLHFRunConfig()
    sft_model_path(config.sft), reward_model_path(config.reward_model)  # built before any clock
    runs = _runs.in_fresh_processes(__file__, CANDIDATES, args.seeds, "value_models", measured,
                                   lambda r: (
        f"gold {r['gold_start']:.3f} -> {r['gold_final']:.3f}, KL {r['final_kl']:.2f}, "
        f"{r['train_cpu_seconds']:.1f} CPU-s"))  # fmt: skip
    _runs.write_report(args.out, "value_models", measured,
                       candidates=[summarise(r) for r in runs])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
