"""Every cached stage the book's pages load, and a builder that trains them before the pages run.

    python -m rlhf_lib.stages [--workers 2] [--list]

``make book`` runs this before Jupyter Book executes the pages. A stage build uses one torch
thread (:func:`rlhf_lib.cache.reproducible_build`), so on a 2-core machine two independent stages
can train side by side: the translator while the base model pretrains, and the PPO, GRPO, RLOO
and DPO runs once the reward model exists. The weights do not depend on which process builds
them, so the pages then load exactly what they would have trained themselves.

Nothing here is needed to read the book: a page whose stage is missing (a reader on Colab, a
config this list lacks) trains it on first use, as before.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from functools import partial
from multiprocessing import get_context

from rlhf_lib.rlhf_run import KL_SWEEP


def _translator():
    from rlhf_lib.translation import TranslationConfig, load_or_train_translator

    load_or_train_translator(TranslationConfig())


def _smollm2():
    from rlhf_lib import smollm2

    if smollm2.is_available():  # the page says how to install it otherwise
        smollm2.smollm2_path()


def _base():
    from rlhf_lib.base_model import base_model_path

    base_model_path()


def _sft():
    from rlhf_lib.sft import sft_model_path

    sft_model_path()


def _preferences():
    from rlhf_lib.preferences import preferences_path

    preferences_path()


def _reward_model():
    from rlhf_lib.reward_model import reward_model_path

    reward_model_path()


def _ppo(kl_scale: float):
    from rlhf_lib.rlhf_run import RLHFRunConfig, run_path

    default = RLHFRunConfig()
    run_path(replace(default, ppo=replace(default.ppo, kl_coef=kl_scale * default.ppo.kl_coef)))


def _method(method: str, dpo_labels: str = "annotators"):
    from rlhf_lib.beyond_ppo import MethodRunConfig, method_run_path

    method_run_path(replace(MethodRunConfig(), method=method, dpo_labels=dpo_labels))


# name -> (the stages it needs, how to build it). The builder starts stages in this order as soon
# as what they need exists, so the longest chain (base model -> ... -> reward model) comes first.
BOOK_STAGES = {
    "base model (ch. 2)": ((), _base),
    "translator (ch. 1)": ((), _translator),
    "SFT model (ch. 3)": (("base model (ch. 2)",), _sft),
    "preference pairs (ch. 4)": (("SFT model (ch. 3)",), _preferences),
    "reward model (ch. 4)": (("preference pairs (ch. 4)",), _reward_model),
    **{
        f"PPO, {scale:g} x default KL coefficient (ch. 5)": (
            ("reward model (ch. 4)",),
            partial(_ppo, scale),
        )
        for scale in sorted(KL_SWEEP, key=lambda s: s != 1.0)  # the default run first: ch. 5, 6
    },
    # chapter 6's record of chapter 5's default run (its checkpoints, read from that run)
    "Chapter 6's PPO record (ch. 6)": (
        ("PPO, 1 x default KL coefficient (ch. 5)",),
        partial(_method, "ppo"),
    ),
    "GRPO, TRL (ch. 6)": (("reward model (ch. 4)",), partial(_method, "grpo")),
    "RLOO, TRL (ch. 6)": (("reward model (ch. 4)",), partial(_method, "rloo")),
    "DPO, TRL (ch. 6)": (("reward model (ch. 4)",), partial(_method, "dpo")),
    "DPO on gold labels, TRL (ch. 6)": (("reward model (ch. 4)",), partial(_method, "dpo", "gold")),
    "SmolLM2 conversion (ch. 2)": ((), _smollm2),  # needs nothing: fills a worker that would wait
}


def _timed(build) -> float:
    """Run one stage's build (in a worker process); returns its wall seconds."""
    started = time.perf_counter()
    build()
    return time.perf_counter() - started


def build_book_stages(workers: int = 2, stages: dict | None = None, pool=None, log=print) -> dict:
    """Build every stage of ``stages`` (default :data:`BOOK_STAGES`) that the cache lacks,
    ``workers`` at a time, each as soon as the stages it needs exist.

    ``pool`` defaults to ``workers`` fresh processes. Returns each stage's wall seconds (a few
    seconds for one the cache already holds). A failed build raises its own error.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}.")
    waiting = dict(BOOK_STAGES if stages is None else stages)
    unknown = {n for needs, _ in waiting.values() for n in needs} - set(waiting)
    if unknown:
        raise ValueError(f"Stages need stages that are not listed: {sorted(unknown)}.")
    # spawn, not fork: each worker starts its own torch, untouched by this process's threads
    pool = pool or ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    done, running = {}, {}
    with pool:
        while waiting or running:
            for name, (needs, build) in list(waiting.items()):
                if len(running) < workers and all(n in done for n in needs):
                    del waiting[name]
                    running[pool.submit(_timed, build)] = name
                    log(f"[stages] started {name}")
            if not running:
                raise ValueError(f"Stages wait on each other in a cycle: {sorted(waiting)}.")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                done[name] = future.result()
                log(f"[stages] {name}: {done[name]:.1f} s")
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="stages built at once (default 2)")
    parser.add_argument("--list", action="store_true", help="list the stages and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (needs, _) in BOOK_STAGES.items():
            print(f"{name}" + (f"  (needs: {', '.join(needs)})" if needs else ""))
        return 0
    started = time.perf_counter()
    build_book_stages(args.workers)
    print(f"[stages] all {len(BOOK_STAGES)} stages ready in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
