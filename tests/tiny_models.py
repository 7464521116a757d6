"""Tiny GPT-2 models over a review tokenizer, shared by the tests (built in about a second)."""

from transformers import GPT2Config

from rlhf_lib.reviews import train_tokenizer

REVIEW_TEXTS = ["the film was good and the acting was great.", "the plot was not bad at all."] * 50


def review_tokenizer():
    """A 300-token BPE tokenizer trained on two short reviews, with the book's special tokens."""
    return train_tokenizer(REVIEW_TEXTS, vocab_size=300)


def tiny_gpt2_config(tokenizer, n_positions: int = 64, **extra) -> GPT2Config:
    """One layer, two heads, width 32, over ``tokenizer``'s vocabulary and special tokens."""
    return GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=32, n_layer=1,
                      n_head=2, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      **extra)  # fmt: skip
