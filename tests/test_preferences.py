"""The preference-dataset builder (chapter 4): labels follow the annotators, splits exist."""

import numpy as np
import pytest
from datasets import load_from_disk

from rlhf_lib.annotators import Annotator
from rlhf_lib.base_model import BaseModelConfig, make_model
from rlhf_lib.preferences import PreferenceConfig, build_preferences, for_training, label_pairs
from rlhf_lib.reviews import generate_reviews, train_tokenizer

GOOD = " was great. I would recommend it."
BAD = " was awful. I would not recommend it."


def test_labels_follow_gold_for_a_careful_annotator():
    prompts = ["I saw this film on Sunday. The plot"] * 50
    out = label_pairs(prompts, [GOOD] * 25 + [BAD] * 25, [BAD] * 25 + [GOOD] * 25,
                      [Annotator("careful", 0.01)], np.random.default_rng(0))  # fmt: skip
    assert out["chosen"] == [GOOD] * 50 and out["rejected"] == [BAD] * 50
    assert all(out["gold_agrees"]) and all(out["second_agrees"])
    assert min(out["p_chosen"]) > 0.99


def test_a_coin_flipping_annotator_picks_either():
    prompts = ["The plot"] * 400
    out = label_pairs(prompts, [GOOD] * 400, [BAD] * 400, [Annotator("coin", 1e6)],
                      np.random.default_rng(0))  # fmt: skip
    share = np.mean([c == GOOD for c in out["chosen"]])
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / 400)
    with pytest.raises(ValueError, match="same length"):
        label_pairs(prompts, [GOOD], [BAD], [Annotator("a", 1.0)], np.random.default_rng(0))


def test_build_writes_three_splits(tmp_path):
    tiny = BaseModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=300)
    tokenizer = train_tokenizer([r.text for r in generate_reviews(300, seed=0)], tiny.vocab_size)
    policy = (make_model(tiny, tokenizer).eval(), tokenizer)
    config = PreferenceConfig(n_train=6, n_eval=4, n_shifted=4, max_new_tokens=6)
    build_preferences(tmp_path, config, policy=policy, shifted_policy=policy)
    pairs = load_from_disk(str(tmp_path / "pairs"))
    # k = 4 completions a training prompt: all C(4, 2) = 6 pairs of each of the 6 prompts
    assert {k: len(v) for k, v in pairs.items()} == {"train": 36, "eval": 4, "shifted": 4}
    assert for_training(pairs["train"]).column_names == ["prompt", "chosen", "rejected"]
    train = pairs["train"]
    assert train["group"][:6] == list(range(6))  # pair-major: one pair of every prompt first
    for g in range(6):
        rows = [r for r in train if r["group"] == g]
        assert len(rows) == 6 and len({r["prompt"] for r in rows}) == 1
        texts = {t for r in rows for t in (r["chosen"], r["rejected"])}
        assert len(texts) <= 4  # the same four completions, compared pair by pair
    assert pairs["eval"]["group"] == list(range(4))  # one pair a prompt
    assert set(pairs["eval"].column_names) >= {"gold_chosen", "gold_rejected", "annotator"}
