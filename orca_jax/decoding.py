"""Batched generation with the KV cache: greedy, temperature and nucleus (top-p) sampling.

API:
    generate(config, params, prompts, max_new_tokens, *, temperature=0.0, top_p=1.0, eos_ids=(),
             rng=None, pad_to_multiple=64, return_logprobs=False)
        -> list[list[int]]  (generated ids per prompt; the eos is included if hit, nothing after)
        -> (ids, logprobs) with return_logprobs: logprobs[i][j] = log p(ids[i][j] | prefix) under
           the model's own distribution (temperature 1, no top-p), as OpenAI-style `logprobs` report.

Prompts are left-padded to a multiple of `pad_to_multiple` (padding has segment id 0 and is never
attended); the whole prefill + decode loop is one jitted function (a `lax.while_loop` that stops
when every row has produced an eos), compiled once per (batch, padded prompt length, padded
new-token budget, greedy or sampling).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig
from orca_jax.model.decoder import apply, init_cache


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def sample_next(logits, rng, temperature, top_p, greedy: bool):
    """Next tokens from [B, V] logits: argmax when `greedy`, else nucleus sampling at `temperature`
    (scalars, or [B, 1] per row)."""
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep the smallest prefix of tokens whose mass reaches top_p (the top token always stays).
    keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits >= threshold, logits, -jnp.inf)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("config", "cache_length", "budget", "greedy"))
def _generate_padded(config, params, tokens, positions, segment_ids, lengths, max_new_tokens, eos_ids,
                     temperature, top_p, rng, *, cache_length: int, budget: int, greedy: bool):
    batch = tokens.shape[0]
    logits, cache = apply(config, params, tokens, positions, segment_ids, init_cache(config, batch, cache_length),
                          last_logits_only=True)

    def cond(state):
        step, _, _, done, _, _, _ = state
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(state):
        step, cache, last_logits, done, out, out_logprobs, rng = state
        rng, step_rng = jax.random.split(rng)
        token = sample_next(last_logits, step_rng, temperature, top_p, greedy)
        logprob = jnp.take_along_axis(jax.nn.log_softmax(last_logits, axis=-1), token[:, None], axis=-1)[:, 0]
        out = out.at[:, step].set(token)
        out_logprobs = out_logprobs.at[:, step].set(logprob)
        done = done | jnp.any(token[:, None] == eos_ids[None, :], axis=-1)
        ones = jnp.ones((batch, 1), jnp.int32)
        logits, cache = apply(config, params, token[:, None], (lengths + step)[:, None], ones, cache)
        return step + 1, cache, logits[:, -1], done, out, out_logprobs, rng

    state = (jnp.zeros((), jnp.int32), cache, logits[:, -1], jnp.zeros((batch,), bool),
             jnp.zeros((batch, budget), jnp.int32), jnp.zeros((batch, budget), jnp.float32), rng)
    step, _, _, _, out, out_logprobs, _ = jax.lax.while_loop(cond, body, state)
    return out, out_logprobs, step


def generate(config: DecoderConfig, params, prompts: list[list[int]], max_new_tokens: int, *,
             temperature: float = 0.0, top_p: float = 1.0, eos_ids: Sequence[int] = (), rng=None,
             pad_to_multiple: int = 64, return_logprobs: bool = False):
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("generate: every prompt needs at least one token")
    if max_new_tokens <= 0:
        raise UserError(f"generate: max_new_tokens must be positive, got {max_new_tokens}")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > config.max_position_embeddings:
        raise UserError(f"generate: prompt of {longest} tokens + {max_new_tokens} new tokens exceeds the model's "
                        f"context of {config.max_position_embeddings} tokens")
    if temperature < 0 or not 0 < top_p <= 1:
        raise UserError(f"generate: need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    prompt_len = _round_up(longest, pad_to_multiple)
    budget = _round_up(max_new_tokens, pad_to_multiple)
    batch = len(prompts)
    tokens = np.zeros((batch, prompt_len), np.int32)
    positions = np.zeros((batch, prompt_len), np.int32)
    segment_ids = np.zeros((batch, prompt_len), np.int32)
    for row, prompt in enumerate(prompts):  # left padding: every row's last prompt token is in the last slot
        n = len(prompt)
        tokens[row, prompt_len - n:] = prompt
        positions[row, prompt_len - n:] = np.arange(n)
        segment_ids[row, prompt_len - n:] = 1
    lengths = np.array([len(p) for p in prompts], np.int32)
    eos = np.array(list(eos_ids) or [-1], np.int32)
    rng = jax.random.key(0) if rng is None else rng
    out, out_logprobs, steps = _generate_padded(
        config, params, tokens, positions, segment_ids, lengths, np.int32(max_new_tokens), eos,
        np.float32(max(temperature, 1e-6)), np.float32(top_p), rng,
        cache_length=prompt_len + budget, budget=budget, greedy=temperature == 0)
    out, out_logprobs, steps = np.asarray(out), np.asarray(out_logprobs), int(steps)
    eos_set = set(int(e) for e in eos_ids)
    results, logprobs = [], []
    for row in range(batch):
        ids = out[row, :steps].tolist()
        end = next((i + 1 for i, t in enumerate(ids) if t in eos_set), len(ids))
        results.append(ids[:end])
        logprobs.append(out_logprobs[row, :end].tolist())
    return (results, logprobs) if return_logprobs else results
