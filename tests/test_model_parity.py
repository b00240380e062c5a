"""Logits of the Flax decoder equal transformers (PyTorch, fp32) on HF folders saved by transformers."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from orca_jax.model import decoder, hf_convert  # noqa: E402

SMALL = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8}

CASES = {
    "llama2_mha": lambda: transformers.LlamaConfig(**SMALL, num_key_value_heads=4),
    "llama_gqa_theta": lambda: transformers.LlamaConfig(
        **SMALL, num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1234.0}),
    # SmolLM2-style: tied embeddings.
    "llama3_scaling_tied": lambda: transformers.LlamaConfig(
        **SMALL, num_key_value_heads=2, rope_parameters=LLAMA3_ROPE, tie_word_embeddings=True),
    "mistral_sliding_window": lambda: transformers.MistralConfig(**SMALL, num_key_value_heads=1, sliding_window=5),
    "qwen2_bias": lambda: transformers.Qwen2Config(**SMALL, num_key_value_heads=2, tie_word_embeddings=False),
}

jit_apply = jax.jit(decoder.apply, static_argnums=0)


def _random_hf_model(hf_config):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager").eval()
    # HF init leaves norms at 1 and biases at 0; randomise every tensor so each conversion matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.5) + (1.0 if "norm" in name else 0.0))
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case, tmp_path):
    model = _random_hf_model(CASES[case]())
    # A small shard size forces model.safetensors.index.json + several files.
    model.save_pretrained(tmp_path, max_shard_size="20KB" if case == "llama2_mha" else "1GB")
    if case == "llama2_mha":
        assert (tmp_path / "model.safetensors.index.json").exists()

    config, params = hf_convert.load_hf_folder(tmp_path)
    tokens = np.random.RandomState(1).randint(0, 97, (2, 14))
    with torch.no_grad():
        expected = model(torch.tensor(tokens)).logits.numpy()
    positions = np.broadcast_to(np.arange(14), tokens.shape)
    logits = np.asarray(jit_apply(config, params, tokens, positions, np.ones_like(tokens)))
    assert np.abs(logits - expected).max() <= 1e-4
    if case == "mistral_sliding_window":
        assert config.sliding_window == 5  # the window actually bites: 14 tokens > 5
    if case == "llama3_scaling_tied":
        assert config.rope_scaling["rope_type"] == "llama3" and "lm_head" not in params


def test_bf16_compute_tracks_fp32_transformers(tmp_path):
    """Params stay fp32 and logits come back fp32; bf16 compute stays within bf16 rounding of HF fp32."""
    model = _random_hf_model(CASES["llama_gqa_theta"]())
    model.save_pretrained(tmp_path)
    config, params = hf_convert.load_hf_folder(tmp_path)
    tokens = np.random.RandomState(2).randint(0, 97, (2, 14))
    with torch.no_grad():
        expected = model(torch.tensor(tokens)).logits.numpy()
    positions = np.broadcast_to(np.arange(14), tokens.shape)
    logits = jit_apply(config.replace(dtype="bfloat16"), params, tokens, positions, np.ones_like(tokens))
    assert logits.dtype == np.float32
    assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(params))
    error = np.abs(np.asarray(logits) - expected).max() / np.abs(expected).max()
    assert 1e-4 < error < 0.05  # visibly bf16, yet the same function
