"""SmolLM2-135M-Instruct (GGUF, Q4_1): our loader and decoder against transformers loading the same file."""

import os

import numpy as np
import pytest

from orca_jax import decoding
from orca_jax.model.decoder import apply
from orca_jax.model.hf_convert import params_to_hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # transformers needs it to load GGUF files

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Think step by step and justify your steps."},
    {"role": "user", "content": "Tom has 3 apples and buys 5 more. He gives 2 to Anna. How many apples does Tom "
                                "have now? Explain your reasoning in detail before giving the final answer."},
]


@pytest.fixture(scope="module")
def reference(smollm2_gguf):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf), dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="module")
def chat_ids(smollm2_model):
    tok = smollm2_model.tokenizer
    ids = tok.encode(tok.apply_chat_template(MESSAGES, add_generation_prompt=True))
    assert len(ids) >= 64
    return ids[:64]


def test_dequantized_tensors_equal_transformers(smollm2_model, reference):
    # Back through M's HF layout: checks dequantization, renaming and the q/k un-permutation at once.
    tensors = params_to_hf(smollm2_model.config, smollm2_model.params)
    state = {k: v for k, v in reference.state_dict().items() if k != "lm_head.weight"}  # tied to the embedding
    assert sorted(tensors) == sorted(state)
    for name, value in state.items():
        np.testing.assert_array_equal(tensors[name], value.numpy(), err_msg=name)


def test_config_from_metadata(smollm2_model, reference):
    ref = reference.config
    cfg = smollm2_model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_layers) == (
        ref.vocab_size, ref.hidden_size, ref.intermediate_size, ref.num_hidden_layers)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.tie_word_embeddings) == (
        ref.num_attention_heads, ref.num_key_value_heads, ref.head_dim, ref.tie_word_embeddings)
    assert cfg.rope_theta == ref.rope_parameters["rope_theta"]


def test_logits_match_transformers(smollm2_model, reference, chat_ids):
    tokens = np.array([chat_ids], np.int32)
    logits = np.asarray(apply(smollm2_model.config, smollm2_model.params, tokens, np.arange(64)[None], np.ones_like(tokens)))
    with torch.no_grad():
        ref_logits = reference(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    assert np.abs(logits - ref_logits).max() <= 1e-3


def test_greedy_generation_matches_transformers(smollm2_model, reference, chat_ids):
    eos = smollm2_model.tokenizer.eos_id
    ours_ids = decoding.generate(smollm2_model.config, smollm2_model.params, [chat_ids], 32, temperature=0.0, eos_ids=[eos])[0]
    with torch.no_grad():
        out = reference.generate(torch.tensor([chat_ids]), max_new_tokens=32, do_sample=False, eos_token_id=eos,
                                 pad_token_id=smollm2_model.tokenizer.pad_id)
    ref_ids = out[0, len(chat_ids):].tolist()
    assert len(ours_ids) >= 8  # a real continuation, not an immediate stop
    assert ours_ids == ref_ids
