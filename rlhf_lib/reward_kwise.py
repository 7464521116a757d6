"""K-wise comparisons for the reward model (InstructGPT, issue 15).

InstructGPT showed labelers K completions of one prompt and trained on all C(K,2) comparisons of
that prompt together, as one batch element: K forward passes give K(K-1)/2 comparisons, and the
pairs of one prompt are never scattered over epochs (which, the paper reports, over-fits).

Here a training row is a *group*: the token ids of K texts (prompt + completion + eos) of one
prompt, and a K x K matrix ``prefer`` with ``prefer[i][j] = 1`` when the annotator preferred text
i over text j (each unordered pair labelled once). The loss is the mean, over every labelled pair
of the batch, of the Bradley-Terry loss ``-log sigmoid(r_i - r_j)``; with K = 2 and one pair per
group it is exactly TRL's pairwise loss (``tests/test_reward_model_kwise.py`` checks both).

:class:`KWiseRewardTrainer` is TRL's ``RewardTrainer`` with that loss and a collator that keeps
a group's K texts together; everything else (optimiser, schedule, logging) is TRL's.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from trl import RewardTrainer


def kwise_loss(rewards: torch.Tensor, prefer: torch.Tensor, label_smoothing: float = 0.0):
    """Mean Bradley-Terry loss over all labelled pairs of every group.

    ``rewards``: ``(G, K)``, the reward of each of K texts of G prompts. ``prefer``: ``(G, K, K)``,
    true (or 1) at ``[g, i, j]`` when text i was preferred over text j. With ``label_smoothing``
    ε the target is ``1 - ε`` instead of 1: ``-(1-ε) log σ(d) - ε log σ(-d)``.
    """
    if rewards.dim() != 2 or prefer.shape != (*rewards.shape, rewards.shape[1]):
        raise ValueError(
            f"kwise_loss: rewards must be (G, K) and prefer (G, K, K); got {tuple(rewards.shape)} "
            f"and {tuple(prefer.shape)}."
        )
    g, i, j = torch.nonzero(prefer.bool(), as_tuple=True)
    if g.numel() == 0:
        raise ValueError("kwise_loss: no labelled pair in prefer.")
    d = rewards[g, i] - rewards[g, j]
    loss = -F.logsigmoid(d)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-d)
    return loss.mean()


def centring_penalty(rewards: torch.Tensor, prefer: torch.Tensor) -> torch.Tensor:
    """TRL's reward-centring term, ``mean((r_chosen + r_rejected)^2)``, over every labelled pair
    of every group (Eisenstein et al.): it keeps rewards near 0 without changing which text wins.
    With K = 2 it is exactly what TRL's ``RewardTrainer`` adds."""
    g, i, j = torch.nonzero(prefer.bool(), as_tuple=True)
    return torch.mean((rewards[g, i] + rewards[g, j]) ** 2)


def group_rows(tokenizer, prompt: str, completions: list[str], wins: dict, max_length: int):
    """One training row: ``completion_ids`` (K id lists) and ``prefer`` (K x K 0/1), or ``None``
    if a text is longer than ``max_length`` tokens (TRL would drop such a pair too).

    ``wins[(i, j)]`` is True when the annotator preferred completion i over completion j.
    """
    eos = tokenizer.eos_token
    texts = [prompt + c + ("" if c.endswith(eos) else eos) for c in completions]
    ids = tokenizer(texts)["input_ids"]
    if max(map(len, ids)) > max_length:
        return None
    k = len(completions)
    prefer = [[0] * k for _ in range(k)]
    for (i, j), i_wins in wins.items():
        prefer[i][j], prefer[j][i] = int(i_wins), int(not i_wins)
    return {"completion_ids": ids, "prefer": prefer}


def groups_from_pairs(split, tokenizer, max_length: int):
    """A preference split's pairs put back together as one training row a prompt.

    Pairs with the same ``group`` value (see :mod:`rlhf_lib.preferences`) form one group; a split
    without that column is one group a pair (K = 2, chosen first). Groups with a text over
    ``max_length`` tokens are dropped, as TRL drops such pairs, and so are the rare groups where
    the policy wrote the same text twice (a batch needs the same K in every group). Returns a
    ``datasets.Dataset`` with columns ``completion_ids`` and ``prefer``.
    """
    from datasets import Dataset

    groups = split["group"] if "group" in split.column_names else range(len(split))
    texts: dict = {}  # group -> (prompt, [completion, ...], {(i, j): i preferred})
    for g, prompt, chosen, rejected in zip(groups, split["prompt"], split["chosen"],
                                           split["rejected"], strict=True):  # fmt: skip
        _, completions, wins = texts.setdefault(g, (prompt, [], {}))
        for c in (chosen, rejected):
            if c not in completions:
                completions.append(c)
        wins[(completions.index(chosen), completions.index(rejected))] = True
    k = max(len(completions) for _, completions, _ in texts.values())
    rows = [group_rows(tokenizer, prompt, completions, wins, max_length)
            for prompt, completions, wins in texts.values() if len(completions) == k]  # fmt: skip
    return Dataset.from_list([r for r in rows if r is not None])


def all_pairs(k: int) -> list[tuple[int, int]]:
    """The C(k, 2) unordered pairs of k completions, as index tuples ``(i, j)``, ``i < j``."""
    return list(itertools.combinations(range(k), 2))


class KWiseCollator:
    """Pads the K texts of every group (group-major: group 0's K texts, then group 1's, ...)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        seqs = [torch.tensor(ids) for ex in examples for ids in ex["completion_ids"]]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_token_id)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            input_ids[row, : len(s)] = s
            mask[row, : len(s)] = 1
        prefer = torch.tensor([ex["prefer"] for ex in examples], dtype=torch.bool)
        return {"input_ids": input_ids, "attention_mask": mask, "prefer": prefer}


class KWiseRewardTrainer(RewardTrainer):
    """TRL's ``RewardTrainer`` trained on groups of K completions with :func:`kwise_loss`.

    ``train_dataset`` has columns ``completion_ids`` and ``prefer`` (see :func:`group_rows`);
    ``per_device_train_batch_size`` counts groups, so a step forwards ``batch_size * K`` texts.
    """

    def __init__(self, *args, label_smoothing: float = 0.0, **kwargs):
        self.label_smoothing = label_smoothing
        tokenizer = kwargs["processing_class"]
        kwargs.setdefault("data_collator", KWiseCollator(tokenizer.pad_token_id))
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "completion_ids" in dataset.column_names:
            return dataset  # already grouped and tokenised
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["completion_ids", "prefer"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        prefer = inputs["prefer"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        use_cache=False)  # fmt: skip
        rewards = outputs.logits.squeeze(-1).view(prefer.shape[0], prefer.shape[1])
        loss = kwise_loss(rewards, prefer, self.label_smoothing)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * centring_penalty(rewards, prefer)
        mode = "train" if self.model.training else "eval"
        with torch.no_grad():
            g, i, j = torch.nonzero(prefer, as_tuple=True)
            d = rewards[g, i] - rewards[g, j]
            self._metrics[mode]["accuracy"].append((d > 0).float().mean().item())
            self._metrics[mode]["margin"].append(d.mean().item())
        return (loss, outputs) if return_outputs else loss
