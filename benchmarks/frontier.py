"""The gold-vs-KL frontier: PPO, RLOO, GRPO and DPO at several KL coefficients, and best-of-n.

    python benchmarks/frontier.py [--out FILE.json]

Our miniature of the DPO paper's controlled-sentiment experiment (its Figure 2, left): every
setting of :data:`rlhf_lib.frontier.SWEEP` trains from the same SFT policy at chapter 5's budget,
with one KL coefficient changed, through :func:`rlhf_lib.beyond_ppo.train_method` (the function
chapter 6 runs), and is measured at its checkpoints on the held-out prompts (gold score, its
standard error, proxy score, KL to SFT). DPO trains twice per β: on the annotators' noisy labels
and on gold labels, as the paper labels its pairs with the classifier it evaluates with.
Best-of-n (n = 1…64) comes from the same SFT policy and reward model.

The SFT policy, reward model and pairs come from the stage cache (built first if missing, before
the clock starts); the sweep's own runs are not cached. One process, one seed per setting: the
spread the page reports is each checkpoint's standard error over its held-out prompts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from book_execution import machine  # noqa: E402  (cores, CPU model, memory, versions)
from page_weight import git_state  # noqa: E402  (the commit measured)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "results/frontier.json"))
    args = parser.parse_args()
    measured = git_state()  # the code checked out when the run starts is the code it measures

    from rlhf_lib import setup_notebook
    from rlhf_lib.best_of_n import BestOfNConfig, best_of_n_run
    from rlhf_lib.beyond_ppo import MethodRunConfig, flat_settings, train_method
    from rlhf_lib.frontier import SWEEP, family, method_config
    from rlhf_lib.preferences import preferences_path
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.sft import load_sft_model

    setup_notebook(seed=0, plotly=False)
    base = MethodRunConfig()
    policy, tokenizer = load_sft_model(base.sft)  # builds the stages before any clock starts
    reward_model, rm_tokenizer = load_reward_model(base.reward_model)
    preferences_path(base.reward_model.preferences)

    started = time.perf_counter()
    runs = []
    for setting in SWEEP:
        config = method_config(setting, base)  # its beta is ppo.kl_coef
        print(f"[frontier] {setting} ...", flush=True)
        wall = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            record = train_method(config, folder, reuse_chapter_5=False)  # trained and timed here
        final = record["checkpoints"][-1]
        runs.append({
            "setting": setting,
            "family": family(setting),
            "checkpoints": record["checkpoints"],
            "train_wall_seconds": record["train_wall_seconds"],
            "train_cpu_seconds": record["train_cpu_seconds"],
            "wall_seconds": time.perf_counter() - wall,  # training and checkpoints
            "example_samples": record["samples"][:3],
        })  # fmt: skip
        print(f"[frontier] {setting}: gold {record['checkpoints'][0]['gold']:.3f} -> "
              f"{final['gold']:.3f}, KL {final['kl']:.2f}, {runs[-1]['wall_seconds']:.0f} s",
              flush=True)  # fmt: skip
    bon = best_of_n_run(policy, tokenizer, reward_model, rm_tokenizer,
                        BestOfNConfig.matching(base))  # fmt: skip
    bon.pop("scores")  # 4096 raw scores: the curve is what the page draws
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git": measured,
        "command": "python benchmarks/frontier.py",
        "sweep_wall_seconds": time.perf_counter() - started,
        "budget": flat_settings(base),
        "runs": runs,
        "best_of_n": bon,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"[frontier] {len(runs)} runs and best-of-n in {report['sweep_wall_seconds']:.0f} s; "
          f"wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
