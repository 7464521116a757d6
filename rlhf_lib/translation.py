"""A toy translation task for the encoder-decoder Transformer: number words -> digits.

Introduced in Chapter 1 (Transformers), page "Training a translator". The source is an English
number name ("three hundred and forty - two thousand five"), the target its digits ("342005").
It is a real translation problem in miniature: the output order follows the input order only
roughly, a word can produce two digits ("thirteen") or none ("and"), zeros appear that no word
spells, and the length of the output depends on words far away ("thousand"). Because the generator
knows which word produced each digit, we can check what the cross-attention learned.

Everything is generated from a seed, so the chapter needs no dataset download.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from rlhf_lib import checks
from rlhf_lib.transformer import Seq2SeqTransformer, TransformerConfig

SPECIALS = ["<pad>", "<bos>", "<eos>"]  # ids 0, 1, 2 in both vocabularies (TransformerConfig)
ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen \
fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SOURCE_WORDS = ONES + TENS[2:] + ["hundred", "thousand", "and", "-"]
SOURCE_VOCAB = SPECIALS + SOURCE_WORDS
TARGET_VOCAB = SPECIALS + list("0123456789")
MAX_VALUE = 999_999


def _below_thousand(n: int) -> list[tuple[str, list[int]]]:
    """Words for 1 <= n <= 999, each with the digit places (100, 10, 1) it determines."""
    words: list[tuple[str, list[int]]] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [(ONES[hundreds], [100]), ("hundred", [])]
        if rest:
            words.append(("and", []))
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append((TENS[tens], [10]))
        if ones:
            words += [("-", []), (ONES[ones], [1])]
    elif rest >= 10:
        words.append((ONES[rest], [10, 1]))  # "thirteen" writes two digits
    elif rest:
        words.append((ONES[rest], [1]))
    return words


def number_to_words(n: int) -> tuple[list[str], list[int | None]]:
    """``(words, alignment)`` for ``0 <= n <= 999999``, British style ("one hundred and five").

    ``alignment[t]`` is the index of the word that writes digit t of ``str(n)``, or None for a
    zero that no word spells (the 0 of "three hundred and five").
    """
    if not isinstance(n, int) or not 0 <= n <= MAX_VALUE:
        raise ValueError(f"n must be an int in [0, {MAX_VALUE}], got {n!r}.")
    if n == 0:
        return ["zero"], [0]
    thousands, rest = divmod(n, 1000)
    parts: list[tuple[str, list[int]]] = []
    if thousands:
        parts += [(w, [p * 1000 for p in places]) for w, places in _below_thousand(thousands)]
        parts.append(("thousand", []))
        if 0 < rest < 100:
            parts.append(("and", []))  # "two thousand and five"
    if rest:
        parts += _below_thousand(rest)
    words = [w for w, _ in parts]
    digits = str(n)
    place_of_digit = [10 ** (len(digits) - 1 - t) for t in range(len(digits))]
    alignment = []
    for place in place_of_digit:
        source = [i for i, (_, places) in enumerate(parts) if place in places]
        alignment.append(source[0] if source else None)
    return words, alignment


def tokenize_source(text: str) -> list[str]:
    """Split number words into source tokens; a hyphen is its own token ("forty - two")."""
    words = text.lower().replace("-", " - ").replace(",", " ").split()
    unknown = [w for w in words if w not in SOURCE_WORDS]
    if unknown:
        raise ValueError(
            f"unknown word(s) {unknown} in {text!r}. The model knows only English number words: "
            f"{' '.join(SOURCE_WORDS)}."
        )
    if not words:
        raise ValueError("the input is empty: type a number in words, e.g. 'forty-two'.")
    return words


def sample_number(rng: random.Random, min_digits: int = 1) -> int:
    """A number whose digit count is uniform in ``min_digits``..6, so short numbers are common."""
    n_digits = rng.randint(min_digits, 6)
    return rng.randint(0 if n_digits == 1 else 10 ** (n_digits - 1), 10**n_digits - 1)


def make_splits(n_train: int, n_test: int, seed: int) -> tuple[list[int], list[int]]:
    """Disjoint train and held-out lists of numbers (no held-out number is ever trained on).

    Held-out numbers have 3 to 6 digits: there are only 100 numbers below 100, and holding some of
    them out would remove words such as "seventeen" on their own from the training data.
    """
    if n_test > 100_000:
        raise ValueError(f"n_test={n_test} is too large: keep most numbers for training.")
    rng = random.Random(seed)
    test: set[int] = set()
    while len(test) < n_test:
        test.add(sample_number(rng, min_digits=3))
    train: list[int] = []
    while len(train) < n_train:
        n = sample_number(rng)
        if n not in test:
            train.append(n)
    return train, sorted(test, key=lambda n: (len(str(n)), n))


def encode_batch(numbers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(src [B, S], tgt [B, T])`` padded token ids; tgt is ``<bos> digits <eos>``."""
    src = [[SOURCE_VOCAB.index(w) for w in number_to_words(n)[0]] for n in numbers]
    tgt = [[1] + [TARGET_VOCAB.index(d) for d in str(n)] + [2] for n in numbers]
    return _pad(src), _pad(tgt)


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)  # 0 = <pad>
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def decode_target(ids) -> str:
    """Target ids -> digit string, stopping at ``<eos>`` and skipping specials."""
    out = []
    for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
        if i == 2:
            break
        if i > 2:
            out.append(TARGET_VOCAB[i])
    return "".join(out)


@dataclass
class TranslationConfig:
    """Everything that defines the trained translator (and the key of its cache stage).

    Data, then model, then training, as in TRL's configs.
    """

    # data
    n_train: int = 200_000  # a fifth of the 10⁶ numbers: a batch is (almost) always new data
    n_test: int = 1000  # held out: never seen in training, used for the exact-match score
    data_seed: int = 0
    # model: small enough for a minute of CPU, big enough for ≥ 95 % exact match
    model: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(
            src_vocab_size=len(SOURCE_VOCAB), tgt_vocab_size=len(TARGET_VOCAB)
        )
    )
    # training
    steps: int = 800  # ≥ 95 % held-out exact match in well under a minute on an idle 2-core CPU
    batch_size: int = 96  # per-step cost is mostly Python overhead, so wider batches are cheap
    lr: float = 3e-3  # high for a Transformer, fine for a tiny one with warm-up
    warmup_steps: int = 100  # Post-LN needs warm-up: early large updates destabilise it
    seed: int = 0

    def __post_init__(self):
        checks.instance_of(self, "model", TransformerConfig)
        checks.ints(self, "n_train", "n_test", "steps", "batch_size")
        checks.ints(self, "data_seed", "seed", "warmup_steps", minimum=0)
        checks.positive(self, "lr")
        if self.n_test > 100_000:
            raise checks.ConfigError(
                f"TranslationConfig.n_test={self.n_test} is too large: keep most numbers for "
                "training (at most 100000 held out)."
            )
        if self.batch_size > self.n_train:
            raise checks.ConfigError(
                f"TranslationConfig.batch_size={self.batch_size} is larger than n_train="
                f"{self.n_train}: a batch is drawn from the training numbers without repeats."
            )
        for name, vocab in (("src_vocab_size", SOURCE_VOCAB), ("tgt_vocab_size", TARGET_VOCAB)):
            if getattr(self.model, name) < len(vocab):
                raise checks.ConfigError(
                    f"TranslationConfig.model.{name}={getattr(self.model, name)} is smaller than "
                    f"the task's vocabulary ({len(vocab)} tokens): use {name}={len(vocab)}."
                )


def exact_match(model: Seq2SeqTransformer, numbers: list[int], batch_size: int = 500) -> float:
    """Fraction of ``numbers`` whose greedy translation equals their digits exactly."""
    model.eval()
    correct = 0
    for i in range(0, len(numbers), batch_size):
        chunk = numbers[i : i + batch_size]
        src, _ = encode_batch(chunk)
        out = model.greedy_decode(src, max_new_tokens=8)
        correct += sum(decode_target(row) == str(n) for row, n in zip(out, chunk, strict=True))
    return correct / len(numbers)


def train_translator(config: TranslationConfig, progress=None):
    """Train a :class:`Seq2SeqTransformer` on the task; returns ``(model, history)``.

    A plain loop, with numbered steps: sample a batch, teacher-force, cross-entropy, AdamW step.
    ``progress`` is a function like :func:`rlhf_lib.runtime.progress` (default: no bar).
    ``history`` holds the loss per step and the held-out exact match at the end.
    """
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    train, test = make_splits(config.n_train, config.n_test, config.data_seed)
    model = Seq2SeqTransformer(config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)

    def lr_factor(step):  # linear warm-up, then linear decay to 10 %
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return 1 - 0.9 * (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    steps = range(config.steps)
    bar = progress(steps, desc="training the translator") if progress else steps
    history: dict = {"loss": []}
    started = time.perf_counter()
    model.train()
    for step in bar:
        # 1. a batch of training numbers, as padded source and target ids
        src, tgt = encode_batch(rng.sample(train, config.batch_size))
        # 2. teacher forcing: the decoder reads <bos> d1 .. dn and must predict d1 .. dn <eos>
        logits = model(src, tgt[:, :-1])
        # 3. cross-entropy over the target vocabulary; padding positions do not count
        loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=0)
        # 4. gradient step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        history["loss"].append(loss.item())
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if progress:
        bar.set_postfix(loss=f"{sum(history['loss'][-50:]) / 50:.3f}")
        bar.close()
    history["train_seconds"] = time.perf_counter() - started
    history["test_exact_match"] = exact_match(model, test)
    model.eval()
    return model, history


def _config_dict(config: TranslationConfig) -> dict:
    return asdict(config)


def load_or_train_translator(config: TranslationConfig | None = None, progress=None):
    """The trained translator from the stage cache, training it first if needed.

    Returns ``(model, history)``. The stage folder holds ``model.pt`` (the state dict),
    ``config.json`` and ``history.json``, so later pages of Chapter 1 reuse the model.
    """
    from rlhf_lib.cache import cached_stage, loading_stage

    config = config or TranslationConfig()

    def build(folder: Path):
        model, history = train_translator(config, progress)
        torch.save(model.state_dict(), folder / "model.pt")
        (folder / "config.json").write_text(json.dumps(_config_dict(config), indent=2))
        (folder / "history.json").write_text(json.dumps(history))

    folder = cached_stage("ch1_translator", _config_dict(config), build)
    model = Seq2SeqTransformer(config.model)
    with loading_stage(folder):
        model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
        history = json.loads((folder / "history.json").read_text())
    return model.eval(), history


def translate(model: Seq2SeqTransformer, text: str) -> str:
    """Translate one number in words with greedy decoding: ``"forty-two"`` -> ``"42"``."""
    words = tokenize_source(text)
    src = torch.tensor([[SOURCE_VOCAB.index(w) for w in words]])
    model.eval()
    return decode_target(model.greedy_decode(src, max_new_tokens=8)[0])


def attention_for(model: Seq2SeqTransformer, text: str):
    """Translate ``text`` and return ``(maps, labels, prediction)`` for the attention explorer.

    The model runs once more, teacher-forced on its own greedy output, so every map covers the
    whole translation. ``labels`` is ``{kind: (query labels, key labels)}``; a decoder query is
    labelled ``"<bos>→3"`` when it reads ``<bos>`` and predicts ``3``.
    """
    words = tokenize_source(text)
    src = torch.tensor([[SOURCE_VOCAB.index(w) for w in words]])
    model.eval()
    out = model.greedy_decode(src, max_new_tokens=8)[0]
    out = out[out != 0]  # drop padding
    with torch.no_grad():
        model(src, out[None, :-1])
    read = [TARGET_VOCAB[i] for i in out[:-1].tolist()]
    predicted = [TARGET_VOCAB[i] for i in out[1:].tolist()]
    queries = [f"{r}→{p}" for r, p in zip(read, predicted, strict=True)]
    labels = {
        "encoder self-attention": (words, words),
        "decoder self-attention": (queries, read),
        "cross-attention": (queries, words),
    }
    return model.attention_maps(), labels, decode_target(out)


def aligned_attention_mass(model: Seq2SeqTransformer, numbers: list[int]):
    """Mean cross-attention weight each digit's query puts on the word that writes that digit.

    Returns a tensor ``[n_decoder_layers, n_heads]``: for every number, teacher-forced on its
    correct digits, and every digit that some word writes (see :func:`number_to_words`), the
    weight on that word, averaged. Chance level is about 1 / (number of words).
    """
    model.eval()
    src, tgt = encode_batch(numbers)
    with torch.no_grad():
        model(src, tgt[:, :-1])
    weights = torch.stack([layer.cross_attn.last_weights for layer in model.decoder])  # L,B,h,T,S
    total, count = torch.zeros(weights.shape[0], weights.shape[2]), 0
    for b, n in enumerate(numbers):
        for t, word in enumerate(number_to_words(n)[1]):
            if word is not None:
                total += weights[:, b, :, t, word]  # query t predicts digit t
                count += 1
    return total / count
