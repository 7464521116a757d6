"""The language of the miniature RLHF world: short movie reviews, and their tokenizer.

Introduced in chapter 2, "Causal transformers" (page "A base model of our own"). Real RLHF starts
from a model pretrained on the web; ours starts from a model pretrained on this generator's output.
The generator is small enough to read, yet its sentiment is *compositional*, so a language model
has something to learn beyond word counts:

- negation flips and weakens a word: "not good" is mildly negative, "not bad" mildly positive;
- intensifiers strengthen it ("very", "really", "extremely"), hedges soften it ("somewhat",
  "slightly", "kind of");
- contrast: in "X, but Y" the clause after "but" weighs more;
- the closing sentence ("I would recommend it.") agrees with the opinions before it, so predicting
  it needs the whole review, not the last few words.

Every review carries the sentiment its grammar intended (``sentiment`` in [-1, 1]) as metadata.
Later chapters hide a gold preference behind VADER (Hutto & Gilbert, 2014) scores of the *text*;
the reviews use words VADER knows, and the chapter reports how well the two agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# check_tokenizer_matches lives with the other checks; pages and tests import it from here too.
from rlhf_lib import checks
from rlhf_lib.checks import check_tokenizer_matches
from rlhf_lib.runtime import local_folder

# Aspects carry no sentiment of their own (VADER scores "humour" or "villain", so they are out).
ASPECTS = [
    "acting", "plot", "script", "soundtrack", "ending", "dialogue", "cast", "pacing",
    "camera work", "story", "music", "direction", "lead actor", "first half", "final scene",
]  # fmt: skip
# word -> strength; the sign is the polarity. Strong words count 1.0, mild ones 0.6.
POSITIVE = {
    "good": 0.6, "nice": 0.6, "fun": 0.6, "clever": 0.6, "funny": 0.6, "strong": 0.6,
    "great": 1.0, "wonderful": 1.0, "brilliant": 1.0, "beautiful": 1.0, "excellent": 1.0,
    "charming": 1.0, "superb": 1.0, "delightful": 1.0,
}  # fmt: skip
NEGATIVE = {
    "bad": -1.0, "boring": -0.6, "awful": -1.0, "dull": -0.6, "weak": -0.6, "terrible": -1.0,
    "stupid": -1.0, "poor": -0.6, "annoying": -0.6, "messy": -0.6, "painful": -1.0,
    "horrible": -1.0, "lazy": -0.6, "disappointing": -1.0,
}  # fmt: skip
INTENSIFIERS = ["very", "really", "extremely", "truly", "incredibly", "so"]
HEDGES = ["somewhat", "slightly", "kind of", "a little"]
INTENSIFY, HEDGE, NEGATE = 1.3, 0.5, -0.6  # how each modifier scales a word's sentiment
CONTRAST_WEIGHTS = (0.3, 0.7)  # "X, but Y": Y counts more than X
VERBS = {"loved": 1.0, "enjoyed": 0.8, "liked": 0.6, "disliked": -0.6, "hated": -1.0}
OPENINGS = [
    "I watched this movie last night.", "I saw this film on Sunday.",
    "We watched this movie at home.", "I went to see this film yesterday.",
    "This is a review of the new film.", "I finally watched this movie.",
    "My sister picked this film.", "I rented this movie last week.",
]  # fmt: skip
CLOSINGS = {  # chosen by the sign and size of the sentiment so far
    "strong_positive": ["I would recommend it.", "Overall, a great film.", "Overall, I loved it."],
    "positive": ["Overall, a good film.", "I would watch it again.", "Overall, it was nice."],
    "negative": ["Overall, a weak film.", "I would not watch it again.", "Overall, it was dull."],
    "strong_negative": [
        "I would not recommend it.", "Overall, a bad film.", "Overall, it was a waste of time.",
    ],
}  # fmt: skip


@dataclass
class Review:
    """One generated review: its text, the sentiment its grammar intended, and its opening."""

    text: str
    sentiment: float  # intended sentiment in [-1, 1], composed from the clauses
    label: str  # "positive" if sentiment > 0 else "negative"
    prompt: str  # the opening up to the first opinion's subject: what later chapters continue

    def to_dict(self) -> dict:
        return {"text": self.text, "sentiment": self.sentiment, "label": self.label,
                "prompt": self.prompt}  # fmt: skip


def _adjective(rng: random.Random, positive: bool) -> tuple[str, float]:
    words = POSITIVE if positive else NEGATIVE
    word = rng.choice(list(words))
    return word, words[word]


def _predicate(rng: random.Random, positive: bool) -> tuple[str, float]:
    """``"was not very good"`` and its sentiment. ``positive`` is the polarity of the *meaning*:
    a negated negative word ("not bad") is one way to say something positive."""
    negated = rng.random() < 0.2
    word, value = _adjective(rng, positive != negated)  # "not" flips: pick the opposite word
    words = ["was"]
    if negated:
        words.append(rng.choice(["not", "not", "never"]))
        value *= NEGATE
    r = rng.random()
    if r < 0.25:
        words.append(rng.choice(INTENSIFIERS))
        value *= INTENSIFY
    elif r < 0.4:
        words.append(rng.choice(HEDGES))
        value *= HEDGE
    words.append(word)
    return " ".join(words), max(-1.0, min(1.0, value))


def _opinion(rng: random.Random, attitude: float) -> tuple[str, str, float]:
    """One opinion sentence: (text, subject, sentiment). ``attitude`` in [-1, 1] biases it."""

    def pick_positive() -> bool:
        return rng.random() < (1 + attitude) / 2

    kind = rng.random()
    if kind < 0.2:  # "I loved the music."
        positive = pick_positive()
        verb = rng.choice([v for v, s in VERBS.items() if (s > 0) == positive])
        return f"I {verb} the {rng.choice(ASPECTS)}.", "I", VERBS[verb]
    aspect = rng.choice(ASPECTS)
    subject = f"The {aspect}"
    text, value = _predicate(rng, pick_positive())
    if kind < 0.45:  # contrast: "The plot was good, but the ending was very dull."
        other = rng.choice([a for a in ASPECTS if a != aspect])
        if rng.random() < 0.8:  # "but" joins opposite opinions, and the second one weighs more
            text2, value2 = _predicate(rng, value < 0)
            w1, w2, joint = *CONTRAST_WEIGHTS, "but"
        else:  # "and" joins agreeing ones, equally
            text2, value2 = _predicate(rng, value > 0)
            w1, w2, joint = 0.5, 0.5, "and"
        sentence = f"{subject} {text}, {joint} the {other} {text2}."
        return sentence, subject, w1 * value + w2 * value2
    return f"{subject} {text}.", subject, value


def _closing(rng: random.Random, sentiment: float) -> str:
    if sentiment >= 0.45:
        key = "strong_positive"
    elif sentiment > 0:
        key = "positive"
    elif sentiment > -0.45:
        key = "negative"
    else:
        key = "strong_negative"
    return rng.choice(CLOSINGS[key])


def generate_review(rng: random.Random) -> Review:
    """One review from ``rng`` (a ``random.Random``): [opening] 1-3 opinions [closing]."""
    attitude = rng.uniform(-1, 1)  # the reviewer's mood: most opinions lean its way
    sentences, values = [], []
    if rng.random() < 0.7:
        sentences.append(rng.choice(OPENINGS))
    prompt_prefix = " ".join(sentences)
    n_opinions = rng.choice([1, 2, 2, 3] if not sentences else [1, 2, 2])  # fits 64 tokens
    subject = ""
    for i in range(n_opinions):
        text, subj, value = _opinion(rng, attitude)
        if i == 0:
            subject = subj
        sentences.append(text)
        values.append(value)
    sentiment = sum(values) / len(values)
    if rng.random() < 0.8:  # the closing agrees with the opinions: it needs the whole review
        sentences.append(_closing(rng, sentiment))
        sentiment = 0.75 * sentiment + 0.25 * (1.0 if sentiment > 0 else -1.0)
    sentiment = round(max(-1.0, min(1.0, sentiment)), 4)
    prompt = f"{prompt_prefix} {subject}".strip()
    label = "positive" if sentiment > 0 else "negative"
    return Review(" ".join(sentences), sentiment, label, prompt)


def generate_reviews(n: int, seed: int = 0) -> list[Review]:
    """``n`` reviews, the same ones for the same ``seed`` (each review has its own sub-seed, so
    the first 100 reviews of ``generate_reviews(1000)`` are ``generate_reviews(100)``)."""
    if not checks.is_int(n) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}.")
    return [generate_review(random.Random(f"{seed}-{i}")) for i in range(n)]


def vader_compound(texts: list[str]) -> list[float]:
    """VADER's compound score in [-1, 1] for each text (the gold annotator's raw signal)."""
    texts = checks.require_texts(texts, "vader_compound")
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise ImportError(
            "VADER is not installed: pip install vadersentiment (it is in requirements.txt)."
        ) from None
    analyzer = SentimentIntensityAnalyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    Byte-level BPE (GPT-2's scheme) starts from the 256 bytes, so any text can be encoded, then
    merges the most frequent pairs until ``vocab_size``. Encoding a text prepends ``<|bos|>``
    (like LLaMA's tokenizer), so a prompt is ready to generate from; ``<|eos|>`` ends a review and
    ``<|pad|>`` fills batches.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = checks.require_texts(texts, "train_tokenizer", allow_empty=False)
    if not checks.is_int(vocab_size):
        raise TypeError(f"vocab_size must be an int, got {vocab_size!r}.")
    if vocab_size < 256 + 3:
        raise ValueError(
            f"vocab_size must be at least 259 (256 bytes + 3 specials), got {vocab_size}."
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left"
    )


def load_model_and_tokenizer(path, model_class, device=None):
    """``(model, tokenizer)`` saved together in ``path`` (a cached stage), checked to belong
    together, the model in eval mode. ``model_class`` is e.g. ``AutoModelForCausalLM``."""
    from transformers import AutoTokenizer

    path = local_folder(path, "model folder")  # a missing folder fails now, not after hub retries
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The model folder {str(path)!r} holds no config.json: it is not a folder saved by "
            "save_pretrained(). Pass the folder a stage function returned, e.g. sft_model_path()."
        )
    model = model_class.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    check_tokenizer_matches(model, tokenizer)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
