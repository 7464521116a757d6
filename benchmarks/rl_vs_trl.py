"""Our PPO, RLOO and GRPO against TRL's RLOO and GRPO (and DPO), from the same SFT policy, reward
model, prompts and sample budget, measured side by side in one run.

    python benchmarks/rl_vs_trl.py [--out FILE.json] [--seeds 0 1 2 3 4]
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

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from book_execution import machine  # noqa: E402  (cores, CPU model, memory, versions)
from page_weight import git_state  # noqa: E402  (the commit measured)


def run_one(method: str, seed: int, out: Path) -> None:
    """Train ``method`` (in this process) and write its measured figures to ``out``."""
    from rlhf_lib import setup_notebook
    from rlhf_lib.beyond_ppo import MethodRunConfig, train_method

    setup_notebook(seed=seed, plotly=False)
    config = MethodRunConfig(method=method, seed=seed)
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


def ci95_half_width(values) -> float:
    """Half the width of the 95% confidence interval of the mean of ``values`` (Student's t with
    n − 1 degrees of freedom): the mean ± this covers the mean a rerun tends to, 19 times in 20.
    NaN for a single value."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan")
    return float(t_975(len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


# Student's t 97.5% quantile for 1-10 degrees of freedom (any statistics table)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t_975(df: int) -> float:
    """Student's t 97.5% quantile: the table up to 10 degrees of freedom, then the
    Cornish-Fisher expansion around the normal's 1.960 (within 0.001 of the exact value)."""
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarise(runs: list[dict]) -> dict:
    """One method's seeds: the mean of each figure, the spread of gold gain and KL, the mean
    curve (checkpoints are at the same sample counts for every seed) and every seed's figures."""
    import numpy as np

    first = runs[0]
    summary = {"method": first["method"], "samples": first["samples"],
               "generates_samples": first["generates_samples"],
               "seeds": [r["seed"] for r in runs]}  # fmt: skip
    summary |= {key: float(np.mean([r[key] for r in runs])) for key in AVERAGED}
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "results/rl_vs_trl.json"))
    parser.add_argument(
        "--methods", nargs="+", default=["ppo", "rloo_ours", "grpo_ours", "rloo", "grpo", "dpo"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one method here
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.seeds[0], Path(args.out))
        return 0
    measured = git_state()  # the code checked out when the run starts is the code it measures

    from dataclasses import asdict

    from rlhf_lib.beyond_ppo import MethodRunConfig
    from rlhf_lib.preferences import preferences_path
    from rlhf_lib.reward_model import reward_model_path
    from rlhf_lib.sft import sft_model_path

    config = MethodRunConfig()
    sft_model_path(config.sft), reward_model_path(config.reward_model)  # build before timing
    preferences_path(config.reward_model.preferences)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            runs = []
            for seed in args.seeds:
                out = Path(tmp) / f"{method}-{seed}.json"
                print(f"[rl_vs_trl] training {method}, seed {seed} ...", flush=True)
                env = {**os.environ, "RLHF_BOOK_BUILD": "1"}  # one summary line per progress bar
                subprocess.run([sys.executable, __file__, "--one", method, "--seeds", str(seed),
                                "--out", str(out)], check=True, env=env)  # fmt: skip
                runs.append(json.loads(out.read_text()))
                r = runs[-1]
                print(f"[rl_vs_trl] {method} seed {seed}: gold {r['gold_start']:.3f} -> "
                      f"{r['gold_final']:.3f}, KL {r['final_kl']:.2f}, "
                      f"{r['train_wall_seconds']:.1f} s wall, {r['train_cpu_seconds']:.1f} s CPU, "
                      f"peak {r['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
            results.append(summarise(runs))
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git": measured,
        "command": "python benchmarks/rl_vs_trl.py",
        "budget": {
            k: v
            for k, v in asdict(config).items()
            if k not in ("sft", "reward_model", "method", "seed")
        },
        "methods": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"[rl_vs_trl] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
