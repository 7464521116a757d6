"""The K-wise loss (issue 15): with K = 2 it is TRL's pairwise Bradley-Terry loss, and for any K
it is the mean of the pairwise losses over all C(K,2) labelled pairs."""

import itertools
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from rlhf_lib.reward import bradley_terry_loss
from rlhf_lib.reward_kwise import KWiseCollator, all_pairs, kwise_loss


def trl_pairwise_loss(r_chosen, r_rejected, center=None):
    """TRL's own ``RewardTrainer.compute_loss`` on these rewards (its code, with a stand-in model
    that returns them as logits: chosen first, then rejected, as TRL's collator stacks them)."""
    from trl import RewardTrainer

    logits = torch.cat([r_chosen, r_rejected]).unsqueeze(-1)
    model = SimpleNamespace(training=False)
    identity = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x)
    fake = SimpleNamespace(model=model, args=SimpleNamespace(center_rewards_coefficient=center),
                           accelerator=identity, _metrics={"eval": defaultdict(list)},
                           _total_train_tokens=0)  # fmt: skip
    call = lambda **inputs: SimpleNamespace(logits=logits)  # noqa: E731
    return RewardTrainer.compute_loss(fake, call, {"attention_mask": torch.ones(2, 1)})


def test_k2_equals_trl_pairwise_loss():
    torch.manual_seed(0)
    r_chosen, r_rejected = torch.randn(16), torch.randn(16)
    rewards = torch.stack([r_chosen, r_rejected], dim=1)  # (G, 2): chosen is text 0
    prefer = torch.zeros(16, 2, 2, dtype=torch.bool)
    prefer[:, 0, 1] = True
    ours = kwise_loss(rewards, prefer)
    torch.testing.assert_close(ours, trl_pairwise_loss(r_chosen, r_rejected))
    torch.testing.assert_close(ours, bradley_terry_loss(r_chosen, r_rejected))


def test_k2_with_centring_equals_trl_pairwise_loss():
    """The whole training loss of KWiseRewardTrainer, centring term included, is TRL's at K = 2."""
    from rlhf_lib.reward_kwise import KWiseRewardTrainer

    torch.manual_seed(2)
    r_chosen, r_rejected = torch.randn(16) + 1.0, torch.randn(16)  # off-centre, so it matters
    rewards = torch.stack([r_chosen, r_rejected], dim=1)
    prefer = torch.zeros(16, 2, 2, dtype=torch.bool)
    prefer[:, 0, 1] = True
    logits = rewards.reshape(-1, 1)  # group-major, as KWiseCollator stacks the texts
    fake = SimpleNamespace(model=SimpleNamespace(training=False), label_smoothing=0.0,
                           args=SimpleNamespace(center_rewards_coefficient=0.01),
                           _metrics={"eval": defaultdict(list)})  # fmt: skip
    call = lambda **inputs: SimpleNamespace(logits=logits)  # noqa: E731
    inputs = {"input_ids": None, "attention_mask": None, "prefer": prefer}
    ours = KWiseRewardTrainer.compute_loss(fake, call, inputs)
    torch.testing.assert_close(ours, trl_pairwise_loss(r_chosen, r_rejected, center=0.01))


def test_k2_order_of_texts_does_not_matter():
    torch.manual_seed(1)
    rewards = torch.randn(8, 2)
    prefer = torch.zeros(8, 2, 2, dtype=torch.bool)
    prefer[:, 1, 0] = True  # text 1 preferred
    swapped = prefer.flip(1).flip(2)
    torch.testing.assert_close(kwise_loss(rewards, prefer), kwise_loss(rewards.flip(1), swapped))


@pytest.mark.parametrize("k", [3, 4, 6])
def test_kwise_is_mean_of_all_pairwise_losses(k):
    torch.manual_seed(k)
    g = 5
    rewards = torch.randn(g, k)
    prefer = torch.zeros(g, k, k, dtype=torch.bool)
    losses = []
    for group in range(g):
        for i, j in itertools.combinations(range(k), 2):
            win, lose = (i, j) if torch.rand(()) < 0.5 else (j, i)  # a random label
            prefer[group, win, lose] = True
            losses.append(
                bradley_terry_loss(rewards[group, win : win + 1], rewards[group, lose : lose + 1])
            )
    assert int(prefer.sum()) == g * k * (k - 1) // 2
    torch.testing.assert_close(kwise_loss(rewards, prefer), torch.stack(losses).mean())


def test_label_smoothing_mixes_both_directions():
    rewards = torch.tensor([[2.0, -1.0]])
    prefer = torch.tensor([[[False, True], [False, False]]])
    d = torch.tensor(3.0)
    expected = -(0.9 * F.logsigmoid(d) + 0.1 * F.logsigmoid(-d))
    torch.testing.assert_close(kwise_loss(rewards, prefer, label_smoothing=0.1), expected)


def test_kwise_loss_rejects_bad_shapes_and_no_pairs():
    with pytest.raises(ValueError, match="G, K"):
        kwise_loss(torch.zeros(3, 4), torch.zeros(3, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no labelled pair"):
        kwise_loss(torch.zeros(2, 3), torch.zeros(2, 3, 3, dtype=torch.bool))


def test_collator_keeps_each_group_together():
    batch = KWiseCollator(pad_token_id=0)(
        [{"completion_ids": [[5, 6], [7], [8, 9, 10]], "prefer": [[0, 1, 1], [0, 0, 1], [0, 0, 0]]},
         {"completion_ids": [[1], [2, 3], [4]], "prefer": [[0, 0, 0], [1, 0, 0], [1, 1, 0]]}]
    )  # fmt: skip
    assert batch["input_ids"].tolist()[:3] == [[5, 6, 0], [7, 0, 0], [8, 9, 10]]
    assert batch["attention_mask"].sum(1).tolist() == [2, 1, 3, 1, 2, 1]
    assert batch["prefer"].shape == (2, 3, 3)
    assert all_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_groups_from_pairs_rebuilds_each_prompts_preferences():
    from datasets import Dataset

    from rlhf_lib.reward_kwise import groups_from_pairs

    class Chars:  # a tokenizer stand-in: one id per character
        eos_token = "$"

        def __call__(self, texts):
            return {"input_ids": [[ord(c) for c in t] for t in texts]}

    # prompt 0: a > b, a > c, c > b (ranking a, c, b); prompt 1: e > d, f > d, f > e
    split = Dataset.from_dict({
        "prompt": ["p", "q", "p", "q", "p", "q"],
        "chosen": ["a", "e", "a", "f", "c", "f"],
        "rejected": ["b", "d", "c", "d", "b", "e"],
        "group": [0, 1, 0, 1, 0, 1],
    })  # fmt: skip
    groups = groups_from_pairs(split, Chars(), max_length=10)
    assert len(groups) == 2
    first = groups[0]
    assert first["completion_ids"] == [[ord("p"), ord("a"), ord("$")],
                                       [ord("p"), ord("b"), ord("$")],
                                       [ord("p"), ord("c"), ord("$")]]  # fmt: skip
    assert first["prefer"] == [[0, 1, 1], [0, 0, 0], [0, 1, 0]]  # a beats b, c; c beats b
    assert sum(map(sum, groups[1]["prefer"])) == 3  # every pair labelled once
    assert len(groups_from_pairs(split, Chars(), max_length=2)) == 0  # too long: dropped, as TRL
    without_group = groups_from_pairs(split.remove_columns("group"), Chars(), max_length=10)
    assert len(without_group) == 6 and without_group[0]["prefer"] == [[0, 1], [0, 0]]
