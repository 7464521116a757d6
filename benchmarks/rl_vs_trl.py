"""Our PPO, RLOO and GRPO against TRL's RLOO and GRPO (and DPO), from the same SFT policy, reward
model, prompts and sample budget, measured side by side in one run.

    python benchmarks/rl_vs_trl.py [--out FILE.json] [--seeds 0 1 ... 9]
                                   [--methods ppo rloo_ours grpo_ours rloo grpo dpo]

The SFT policy, reward model and preference pairs come from the stage cache (built first if
missing, before any clock starts). Each method then trains in its own fresh Python process, so
its peak resident memory is its own, through :func:`rlhf_lib.beyond_ppo.train_method`, the
function the book's chapter 6 runs. Training time excludes the held-out checkpoints, which
measure every method the same way (proxy reward, gold score, KL to SFT on 128 held-out prompts).
One run of RL is one draw: each method runs with several seeds, and the report gives the mean
(and the standard deviation of the gold gain and the KL) next to every seed's figures.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import _runs  # noqa: E402  (a fresh process per run, the summary's statistics, the report)
from _runs import ci95_half_width  # noqa: E402
from page_weight import git_state  # noqa: E402  (the commit measured)


def run_one(method: str, seed: int, out: Path) -> None:
    """Train ``method`` (in this process) and write its measured figures to ``out``."""
    from rlhf_lib import setup_notebook
    from rlhf_lib.beyond_ppo import MethodRunConfig, train_method
    from rlhf_lib.ppo import PPOConfig

    setup_notebook(seed=seed, plotly=False)
    config = MethodRunConfig(method=method, ppo=PPOConfig(seed=seed))
    with tempfile.TemporaryDirectory() as folder:
        record = train_method(config, folder, reuse_chapter_5=False)  # timed here, not cached
    start, final = record["checkpoints"][0], record["checkpoints"][-1]
    gold_gain = final["gold"] - start["gold"]
    samples = config.n_samples if method != "dpo" else final["samples"]
    result = {
        "method": method,
        "seed": seed,
        "samples": samples,
        "generates_samples": method != "dpo",
        "gold_start": start["gold"],
        "gold_final": final["gold"],
        "gold_gain": gold_gain,
        "proxy_start": start["proxy"],
        "proxy_final": final["proxy"],
        "proxy_gain": final["proxy"] - start["proxy"],
        "final_kl": final["kl"],
        "train_wall_seconds": record["train_wall_seconds"],
        "train_cpu_seconds": record["train_cpu_seconds"],
        "samples_per_second": samples / record["train_wall_seconds"],
        "gold_gain_per_cpu_second": gold_gain / record["train_cpu_seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "checkpoints": record["checkpoints"],
        "example_samples": record["samples"][:4],
    }
    out.write_text(json.dumps(result))


AVERAGED = ("gold_start", "gold_final", "gold_gain", "proxy_start", "proxy_final", "proxy_gain",
            "final_kl", "train_wall_seconds", "train_cpu_seconds", "samples_per_second",
            "gold_gain_per_cpu_second", "peak_rss_mb")  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    """One method's seeds: the mean of each figure, the spread of gold gain and KL, the mean
    curve (checkpoints are at the same sample counts for every seed) and every seed's figures."""
    import numpy as np

    first = runs[0]
    summary = {"method": first["method"], "samples": first["samples"],
               "generates_samples": first["generates_samples"],
               "seeds": [r["seed"] for r in runs]}  # fmt: skip
    summary |= _runs.means(runs, AVERAGED)
    summary["gold_gain_std"] = float(np.std([r["gold_gain"] for r in runs]))
    summary["final_kl_std"] = float(np.std([r["final_kl"] for r in runs]))
    for key in ("gold_gain", "final_kl", "gold_gain_per_cpu_second", "train_cpu_seconds"):
        summary[f"{key}_ci95"] = ci95_half_width([r[key] for r in runs])
    summary["checkpoints"] = [
        {key: float(np.mean([r["checkpoints"][i][key] for r in runs]))
         for key in ("samples", "gold", "proxy", "kl")}
        for i in range(len(first["checkpoints"]))
    ]  # fmt: skip
    summary["example_samples"] = first["example_samples"]
    summary["per_seed"] = [{k: v for k, v in r.items() if k != "example_samples"} for r in runs]
    return summary


def main() -> int:
    # 10 seeds: at 5, the gold gap between our RLOO and TRL's moved by a third between two runs
    parser = _runs.parser(__doc__, ROOT / "results/rl_vs_trl.json", list(range(10)))
    parser.add_argument(
        "--methods", nargs="+", default=["ppo", "rloo_ours", "grpo_ours", "rloo", "grpo", "dpo"]
    )
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.seeds[0], Path(args.out))
        return 0
    measured = git_state()  # the code checked out when the run starts is the code it measures

    from rlhf_lib.beyond_ppo import MethodRunConfig, flat_settings
    from rlhf_lib.preferences import preferences_path
    from rlhf_lib.reward_model import reward_model_path
    from rlhf_lib.sft import sft_model_path

    config = MethodRunConfig()
    sft_model_path(config.sft), reward_model_path(config.reward_model)  # build before timing
    preferences_path(config.reward_model.preferences)
    runs = _runs.in_fresh_processes(__file__, args.methods, args.seeds, "rl_vs_trl", measured,
                                    lambda r: (
        f"gold {r['gold_start']:.3f} -> {r['gold_final']:.3f}, KL {r['final_kl']:.2f}, "
        f"{r['train_wall_seconds']:.1f} s wall, {r['train_cpu_seconds']:.1f} s CPU, "
        f"peak {r['peak_rss_mb']:.0f} MB"))  # fmt: skip
    budget = {k: v for k, v in flat_settings(config).items() if k not in ("method", "ppo.seed")}
    _runs.write_report(args.out, "rl_vs_trl", measured, budget=budget,
                       methods=[summarise(r) for r in runs])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
