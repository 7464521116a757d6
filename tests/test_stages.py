"""The book's stage list and the builder that trains stages side by side before the pages run."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlhf_lib.rlhf_run import KL_SWEEP
from rlhf_lib.stages import BOOK_STAGES, build_book_stages

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_needs_only_listed_stages():
    for name, (needs, build) in BOOK_STAGES.items():
        assert set(needs) <= set(BOOK_STAGES), name
        assert callable(build)


def test_the_over_optimisation_runs_are_the_pages_own():
    ppo = [name for name in BOOK_STAGES if name.startswith("PPO")]
    assert len(ppo) == len(KL_SWEEP)
    assert "KL_SWEEP" in (ROOT / "book/ppo/overoptimisation.md").read_text()


class Recorder:
    def __init__(self):
        self.events, self.lock, self.running, self.most = [], threading.Lock(), 0, 0

    def stage(self, name, fail=False):
        def build():
            with self.lock:
                self.events.append(("start", name))
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.05)
            with self.lock:
                self.running -= 1
                self.events.append(("end", name))
            if fail:
                raise RuntimeError(f"{name} failed")

        return build


def test_builder_respects_needs_and_the_number_of_workers():
    r = Recorder()
    stages = {"a": ((), r.stage("a")), "b": (("a",), r.stage("b")), "c": ((), r.stage("c")),
              "d": (("b", "c"), r.stage("d")), "e": ((), r.stage("e"))}  # fmt: skip
    seconds = build_book_stages(2, stages, ThreadPoolExecutor(2), log=lambda _: None)
    assert set(seconds) == set(stages)
    order = r.events.index
    for name, (needs, _) in stages.items():
        for need in needs:
            assert order(("end", need)) < order(("start", name))
    assert r.most == 2  # two at a time, never more


def test_builder_stops_on_a_failed_build_and_on_bad_lists():
    r = Recorder()
    stages = {"a": ((), r.stage("a", fail=True)), "b": (("a",), r.stage("b"))}
    with pytest.raises(RuntimeError, match="a failed"):
        build_book_stages(1, stages, ThreadPoolExecutor(1), log=lambda _: None)
    assert ("start", "b") not in r.events
    with pytest.raises(ValueError, match="not listed"):
        build_book_stages(1, {"a": (("z",), r.stage("a"))}, ThreadPoolExecutor(1))
    with pytest.raises(ValueError, match="cycle"):
        build_book_stages(1, {"a": (("b",), r.stage("a")), "b": (("a",), r.stage("b"))},
                          ThreadPoolExecutor(1), log=lambda _: None)  # fmt: skip
    with pytest.raises(ValueError, match="positive int"):
        build_book_stages(0)
