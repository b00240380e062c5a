"""KV-cache decoding equals full recomputation: cached logits, batched greedy generation with uneven
prompts, eos handling, sampling and log-probs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orca_jax import decoding
from orca_jax.errors import UserError
from orca_jax.model import decoder
from orca_jax.model.config import get_preset

VOCAB = 61
# A window shorter than prompt + generation checks that cached decoding respects it too.
CONFIGS = {
    "llama": get_preset("tiny").replace(vocab_size=VOCAB),
    "mistral_window": get_preset("tiny").replace(vocab_size=VOCAB, sliding_window=6, architecture="mistral"),
    "qwen2_tied": get_preset("tiny").replace(vocab_size=VOCAB, attention_bias=True, tie_word_embeddings=True,
                                             architecture="qwen2"),
}
PROMPTS = [[3, 4, 5], [7, 8, 9, 10, 11, 12, 13, 14, 15], [6]]

jit_apply = jax.jit(decoder.apply, static_argnums=0)


def _params(config, seed=0):
    params = decoder.init_params(config, jax.random.key(seed))
    # Larger weights give peaked next-token distributions, so greedy choices are far from ties.
    return jax.tree_util.tree_map(lambda x: x * 4 if x.ndim > 1 else x + 0.1, params)


def _full_logits(config, params, seq, width=32):
    """Full forward without a cache; right-padded to a fixed width so it compiles once."""
    n = len(seq)
    tokens, positions, segments = (np.zeros((1, width), np.int32) for _ in range(3))
    tokens[0, :n], positions[0, :n], segments[0, :n] = seq, np.arange(n), 1
    return np.asarray(jit_apply(config, params, tokens, positions, segments))[0, :n]


def _greedy_by_recomputation(config, params, prompt, steps):
    seq = list(prompt)
    for _ in range(steps):
        seq.append(int(np.argmax(_full_logits(config, params, seq)[-1])))
    return seq[len(prompt):]


@pytest.mark.parametrize("name", ["llama", "mistral_window"])  # qwen2_tied: via the log-prob test
def test_greedy_generate_equals_recomputation(name):
    config = CONFIGS[name]
    params = _params(config)
    got = decoding.generate(config, params, PROMPTS, 10, pad_to_multiple=8)
    assert got == [_greedy_by_recomputation(config, params, p, 10) for p in PROMPTS]


@pytest.mark.parametrize("padding", ["left", "right"])
def test_cached_logits_equal_full_forward(padding):
    """Prefill a padded batch, then decode two tokens one at a time; every logit row matches."""
    config = CONFIGS["mistral_window"]
    params = _params(config, seed=1)
    prompts, width = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10]], 8
    continuation = [[11, 12], [13, 14]]
    tokens, positions, segments = (np.zeros((2, width), np.int32) for _ in range(3))
    for row, p in enumerate(prompts):
        cols = slice(width - len(p), width) if padding == "left" else slice(0, len(p))
        tokens[row, cols], positions[row, cols], segments[row, cols] = p, np.arange(len(p)), 1
    cache = decoder.init_cache(config, 2, width + 2)
    prefill, cache = jit_apply(config, params, tokens, positions, segments, cache)
    steps = []
    for i in range(2):
        step_tokens = np.array([[c[i]] for c in continuation])
        step_positions = np.array([[len(p) + i] for p in prompts])
        logits, cache = jit_apply(config, params, step_tokens, step_positions, np.ones((2, 1), np.int32), cache)
        steps.append(np.asarray(logits)[:, 0])
    for row, p in enumerate(prompts):
        full = _full_logits(config, params, p + continuation[row])
        cols = slice(width - len(p), width) if padding == "left" else slice(0, len(p))
        np.testing.assert_allclose(np.asarray(prefill)[row, cols], full[:len(p)], atol=1e-5, rtol=0)
        for i in range(2):
            np.testing.assert_allclose(steps[i][row], full[len(p) + i], atol=1e-5, rtol=0)


def test_eos_stops_each_row_and_is_included():
    config = CONFIGS["llama"]
    params = _params(config)
    greedy = decoding.generate(config, params, PROMPTS, 10, pad_to_multiple=8)
    eos = greedy[1][2]
    got = decoding.generate(config, params, PROMPTS, 10, eos_ids=[eos], pad_to_multiple=8)
    for full, row in zip(greedy, got):
        cut = full.index(eos) + 1 if eos in full else len(full)
        assert row == full[:cut]


def test_logprobs_are_the_models_log_softmax():
    config = CONFIGS["qwen2_tied"]
    params = _params(config)
    ids, logprobs = decoding.generate(config, params, PROMPTS[:2], 5, pad_to_multiple=8, return_logprobs=True)
    for prompt, row_ids, row_lp in zip(PROMPTS, ids, logprobs):
        full = _full_logits(config, params, prompt + row_ids)
        expected = jax.nn.log_softmax(full, axis=-1)[np.arange(len(prompt) - 1, len(prompt) + 4), row_ids]
        np.testing.assert_allclose(row_lp, expected, atol=1e-4)


def test_sampling_is_seeded_and_tiny_top_p_is_greedy():
    config = CONFIGS["llama"]
    params = _params(config)
    key = jax.random.key(7)
    a = decoding.generate(config, params, PROMPTS, 8, temperature=1.5, rng=key, pad_to_multiple=8)
    b = decoding.generate(config, params, PROMPTS, 8, temperature=1.5, rng=key, pad_to_multiple=8)
    c = decoding.generate(config, params, PROMPTS, 8, temperature=1.5, rng=jax.random.key(8), pad_to_multiple=8)
    assert a == b and a != c
    greedy = decoding.generate(config, params, PROMPTS, 8, pad_to_multiple=8)
    assert decoding.generate(config, params, PROMPTS, 8, temperature=1.5, top_p=1e-6, rng=key,
                             pad_to_multiple=8) == greedy


def test_sampling_follows_the_model_distribution():
    """First sampled tokens over many identical rows match softmax(logits / T) (chi-square-free check)."""
    config = CONFIGS["llama"].replace(vocab_size=8)
    params = decoder.init_params(config, jax.random.key(3))
    prompt, temperature, rows = [1, 2, 3], 0.7, 2000
    out = decoding.generate(config, params, [prompt] * rows, 1, temperature=temperature, rng=jax.random.key(0),
                            pad_to_multiple=4)
    counts = np.bincount([o[0] for o in out], minlength=8) / rows
    expected = np.asarray(jax.nn.softmax(_full_logits(config, params, prompt)[-1] / temperature))
    assert np.abs(counts - expected).max() < 0.04


def test_bad_requests_are_user_errors():
    config = CONFIGS["llama"].replace(max_position_embeddings=16)
    params = _params(config)
    with pytest.raises(UserError, match="at least one token"):
        decoding.generate(config, params, [[1], []], 4)
    with pytest.raises(UserError, match="exceeds the model's context of 16"):
        decoding.generate(config, params, [list(range(1, 14))], 4)
