"""Per-token log-probabilities of a text under a model (teacher forcing, one forward pass)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig
from orca_jax.model.decoder import apply


def token_logprobs(config: DecoderConfig, params, token_ids: list[int], pad_to_multiple: int = 64) -> np.ndarray:
    """`out[i] = log p(token_ids[i+1] | token_ids[:i+1])`, shape [len(token_ids) - 1], fp32."""
    n = len(token_ids)
    if n > config.max_position_embeddings:
        raise UserError(f"text is {n} tokens, longer than the model's context of "
                        f"{config.max_position_embeddings} tokens")
    if n < 2:
        return np.zeros((0,), np.float32)
    # Padding to a multiple keeps the number of compiled shapes small; padding is segment 0.
    length = -(-n // pad_to_multiple) * pad_to_multiple
    tokens = np.zeros((1, length), np.int32)
    tokens[0, :n] = token_ids
    segment_ids = (np.arange(length) < n).astype(np.int32)[None]
    positions = np.arange(length, dtype=np.int32)[None] * segment_ids
    chosen, _, _ = next_token_scores(config, params, tokens, positions, segment_ids)
    return np.asarray(chosen)[0, : n - 1]


@functools.partial(jax.jit, static_argnames=("config", "k"))
def next_token_scores(config, params, tokens, positions, segment_ids, *, k: int = 0):
    """At each position t < T-1 of a teacher-forced pass: log p(tokens[t+1]) [B, T-1], and the
    model's top-k next-token ids and log-probs [B, T-1, k] (empty when k = 0)."""
    logits = apply(config, params, tokens, positions, segment_ids)[:, :-1]
    logprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    chosen = jnp.take_along_axis(logprobs, tokens[:, 1:, None], axis=-1)[..., 0]
    if k == 0:
        empty = jnp.zeros(chosen.shape + (0,))
        return chosen, empty.astype(jnp.int32), empty
    top_logprobs, top_ids = jax.lax.top_k(logprobs, k)
    return chosen, top_ids, top_logprobs
