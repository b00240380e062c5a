"""HF folder export reloads in transformers with the same logits; vocabulary resizing; clear errors
for bad folders."""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from orca_jax.errors import UserError  # noqa: E402
from orca_jax.model import decoder, hf_convert  # noqa: E402
from orca_jax.model.config import DecoderConfig, get_preset  # noqa: E402

TINY = get_preset("tiny").replace(vocab_size=61)
CONFIGS = {
    "llama_llama3_rope": TINY.replace(rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8}),
    "mistral_window": TINY.replace(sliding_window=5, architecture="mistral"),
    "qwen2_bias_tied": TINY.replace(attention_bias=True, tie_word_embeddings=True, architecture="qwen2"),
}

jit_apply = jax.jit(decoder.apply, static_argnums=0)


def _random_params(config, seed=0):
    params = decoder.init_params(config, jax.random.key(seed))
    # Non-trivial norms and biases, so a dropped or transposed tensor shows in the logits.
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _tokens():
    tokens = np.random.RandomState(0).randint(0, 61, (2, 12))
    return tokens, np.broadcast_to(np.arange(12), tokens.shape), np.ones_like(tokens)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_export_reloads_in_transformers_and_here(name, tmp_path):
    config = CONFIGS[name]
    params = _random_params(config)
    hf_convert.save_hf_folder(tmp_path, config, params, generation_config={"eos_token_id": 2},
                              extra_config={"eos_token_id": 2})
    tokens, positions, segments = _tokens()
    ours = np.asarray(jit_apply(config, params, tokens, positions, segments))

    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = model(torch.tensor(tokens)).logits.numpy()
    assert np.abs(theirs - ours).max() <= 1e-4
    assert json.loads((tmp_path / "generation_config.json").read_text())["eos_token_id"] == 2

    config_back, params_back = hf_convert.load_hf_folder(tmp_path)
    assert config_back == config
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(params_back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("tied", [False, True])
def test_resize_vocab_keeps_old_logits_and_starts_new_rows_at_the_mean(tied):
    config = TINY.replace(tie_word_embeddings=tied)
    params = _random_params(config)
    new_config, new_params = hf_convert.resize_vocab(config, params, 64, jax.random.key(5))
    assert new_config.vocab_size == 64 and new_params["embed_tokens"]["embedding"].shape == (64, config.hidden_size)
    tokens, positions, segments = _tokens()
    old = np.asarray(jit_apply(config, params, tokens, positions, segments))
    new = np.asarray(jit_apply(new_config, new_params, tokens, positions, segments))
    np.testing.assert_allclose(new[..., :61], old, atol=1e-5)
    embedding = np.asarray(params["embed_tokens"]["embedding"])
    added = np.asarray(new_params["embed_tokens"]["embedding"])[61:]
    np.testing.assert_allclose(added, np.broadcast_to(embedding.mean(0), added.shape), atol=0.05 * embedding.std())
    if not tied:
        assert new_params["lm_head"].shape == (config.hidden_size, 64)


@pytest.fixture
def saved(tmp_path):
    hf_convert.save_hf_folder(tmp_path, TINY, _random_params(TINY))
    return tmp_path


def _expect_error(path, *fragments):
    with pytest.raises(UserError) as err:
        hf_convert.load_hf_folder(path)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_missing_config(saved):
    (saved / "config.json").unlink()
    _expect_error(saved, str(saved / "config.json"), "missing")


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    _expect_error(saved, str(saved), "no model.safetensors")


def test_unknown_architecture(saved):
    hf = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**hf, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    _expect_error(saved, "config.json", "'gpt2' is not supported")


def test_shape_mismatch_names_file_and_tensor(saved):
    hf = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**hf, "intermediate_size": 100}))
    _expect_error(saved, str(saved / "model.safetensors"), "model.layers.0.mlp.gate_proj.weight", "[176, 64]",
                  "[100, 64]")


def test_missing_shard_and_missing_tensor(saved):
    index = {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}
    (saved / "model.safetensors.index.json").write_text(json.dumps(index))
    _expect_error(saved, "model-00001-of-00002.safetensors", "missing")
    (saved / "model.safetensors").rename(saved / "model-00001-of-00002.safetensors")
    from safetensors.numpy import load_file, save_file

    tensors = load_file(saved / "model-00001-of-00002.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, saved / "model-00001-of-00002.safetensors")
    _expect_error(saved, "model.safetensors.index.json", "missing tensor 'lm_head.weight'")


def test_from_hf_config_rejects_unsupported_options():
    base = TINY.to_hf_config()
    with pytest.raises(UserError, match="hidden_act"):
        DecoderConfig.from_hf_config({**base, "hidden_act": "gelu"})
    with pytest.raises(UserError, match="rope_scaling type 'dynamic'"):
        DecoderConfig.from_hf_config({**base, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}})


def test_bf16_checkpoint_loads_as_fp32(tmp_path):
    hf_config = transformers.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(hf_config).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    config, params = hf_convert.load_hf_folder(tmp_path)
    ours = hf_convert.params_to_hf(config, params)
    for name, tensor in model.state_dict().items():
        assert ours[name].dtype == np.float32
        np.testing.assert_array_equal(ours[name], tensor.float().numpy())
