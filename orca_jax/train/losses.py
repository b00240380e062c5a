"""Training losses as weighted *sums*: cross-entropy, z-loss and logit distillation.

Every function returns a sum over tokens weighted by the batch's loss weights; the
trainer adds sums over microbatches and devices and divides once by the total weight,
so gradient accumulation and data parallelism change nothing but rounding.

Distillation divergences (teacher P, student Q, both at temperature tau):
  forward KL  KL(P || Q)
  reverse KL  KL(Q || P)
  jsd         beta * KL(P || M) + (1 - beta) * KL(Q || M),  M = beta P + (1 - beta) Q
(generalized JSD as in Agarwal et al., GKD). Sums are multiplied by tau^2 (Hinton et
al.) so the gradient scale does not shrink with the temperature.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

KD_KINDS = ("forward_kl", "reverse_kl", "jsd")
MISSING_MASS = ("renormalize", "tail")


def sum_over_chunks(fn: Callable[[jax.Array, dict], dict], hidden: jax.Array, per_token: dict,
                    chunk_size: int) -> dict:
    """sum over length chunks of fn(hidden[:, chunk], {k: v[:, chunk]}), fn returning a dict of sums.

    For losses whose logits would be the largest tensor of the step: fn projects one chunk's
    hidden states [B, C, E] to logits [B, C, V] and reduces them, and the backward pass
    recomputes each chunk's logits (jax.checkpoint) instead of keeping them, so only one
    chunk's logits exist at a time. The length is zero-padded to a multiple of the chunk;
    padding carries loss weight 0 in `per_token`, so it adds nothing.
    """
    pad = -hidden.shape[1] % chunk_size

    def chunks(x):  # [B, T, ...] -> [T / C, B, C, ...]
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        return jnp.moveaxis(x.reshape((x.shape[0], -1, chunk_size) + x.shape[2:]), 1, 0)

    chunk_fn = jax.checkpoint(fn, prevent_cse=False)  # inside scan, CSE cannot undo the remat
    xs = (chunks(hidden), {k: chunks(v) for k, v in per_token.items()})
    zero = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype),
                                  jax.eval_shape(chunk_fn, *jax.tree_util.tree_map(lambda a: a[0], xs)))

    def body(total, x):
        return jax.tree_util.tree_map(jnp.add, total, chunk_fn(*x)), None
    return jax.lax.scan(body, zero, xs)[0]


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """-log softmax(logits_t)[targets_t] = logsumexp(logits_t) - logits_t[targets_t] per position;
    logits [..., V], targets [...]. (Not via log_softmax, whose [..., V] result and its gradient
    cost two more passes over the largest array of a small model's step.)"""
    logits = logits.astype(jnp.float32)
    target_logits = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - target_logits


def z_loss_sum(logits: jax.Array, weights: jax.Array) -> jax.Array:
    """sum_t w_t * logsumexp(logits_t)^2 (PaLM's z-loss; the trainer scales it)."""
    lse = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.square(lse) * weights)


def _kl(logp: jax.Array, logq: jax.Array) -> jax.Array:
    """KL(p || q) over the last axis from log-probabilities; 0 * log 0 counts as 0."""
    p = jnp.exp(logp)
    # inner wheres keep -inf out of both branches, so gradients stay finite too
    support = p > 0
    term = p * (jnp.where(support, logp, 0.0) - jnp.where(support, logq, 0.0))
    return jnp.sum(jnp.where(support, term, 0.0), axis=-1)


def divergence(teacher_logp: jax.Array, student_logp: jax.Array, kind: str, beta: float = 0.5) -> jax.Array:
    """Per-position divergence between two distributions given as log-probs [..., K]."""
    if kind == "forward_kl":
        return _kl(teacher_logp, student_logp)
    if kind == "reverse_kl":
        return _kl(student_logp, teacher_logp)
    if kind == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"jsd beta must lie strictly between 0 and 1, got {beta}")
        return _jsd(teacher_logp, student_logp, beta)
    raise ValueError(f"unknown distillation loss {kind!r}; expected one of {KD_KINDS}")


def _jsd(teacher_logp: jax.Array, student_logp: jax.Array, beta: float) -> jax.Array:
    # log M = log(beta P + (1 - beta) Q), computed in log space for stability
    log_m = jnp.logaddexp(teacher_logp + jnp.log(beta), student_logp + jnp.log1p(-beta))
    return beta * _kl(teacher_logp, log_m) + (1.0 - beta) * _kl(student_logp, log_m)


def kd_dense_sum(student_logits: jax.Array, teacher_logits: jax.Array, weights: jax.Array, *,
                 kind: str, temperature: float = 1.0, beta: float = 0.5) -> jax.Array:
    """Distillation against full teacher logits (online teacher with the same vocabulary)."""
    s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / temperature, axis=-1)
    return temperature ** 2 * jnp.sum(divergence(t, s, kind, beta) * weights)


def kd_topk_sum(student_logits: jax.Array, topk_ids: jax.Array, topk_logprobs: jax.Array,
                weights: jax.Array, *, kind: str, temperature: float = 1.0, beta: float = 0.5,
                missing_mass: str = "renormalize") -> jax.Array:
    """Distillation against stored teacher top-k (ids [..., k], log-probs [..., k] at tau 1).

    missing_mass="renormalize": both distributions restricted to the k ids and renormalized.
    missing_mass="tail": a (k+1)-th bucket holds everything outside the k ids, for the
    teacher 1 - sum(top-k probs) and for the student its exact mass outside the ids;
    temperature is applied to the k+1 bucket log-probs. With k = vocabulary size both
    modes equal the dense loss.
    """
    logits = student_logits.astype(jnp.float32) / temperature
    ids = topk_ids.astype(jnp.int32)
    t_logp = jax.lax.stop_gradient(topk_logprobs).astype(jnp.float32)
    if missing_mass == "renormalize":
        s = jnp.take_along_axis(logits, ids, axis=-1)
        t = t_logp / temperature
    elif missing_mass == "tail":
        lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        in_topk = jnp.zeros(logits.shape, bool)
        in_topk = jnp.put_along_axis(in_topk, ids, True, axis=-1, inplace=False)
        s_tail = jax.nn.logsumexp(jnp.where(in_topk, -jnp.inf, logits), axis=-1, keepdims=True)
        s = jnp.concatenate([jnp.take_along_axis(logits, ids, axis=-1), s_tail], axis=-1) - lse
        # Teacher tail mass 1 - sum p_i. A remainder within the fp32 rounding of a k-term
        # sum is noise, not mass: it is zeroed, else a temperature > 1 would inflate it.
        tail_mass = 1.0 - jnp.sum(jnp.exp(t_logp), axis=-1, keepdims=True)
        noise = ids.shape[-1] * jnp.finfo(jnp.float32).eps
        tail = jnp.where(tail_mass > noise, jnp.log(jnp.maximum(tail_mass, noise)), -jnp.inf)
        t = jnp.concatenate([t_logp, tail], axis=-1) / temperature
    else:
        raise ValueError(f"unknown missing-mass handling {missing_mass!r}; expected one of {MISSING_MASS}")
    s = jax.nn.log_softmax(s, axis=-1)
    t = jax.nn.log_softmax(t, axis=-1)
    return temperature ** 2 * jnp.sum(divergence(t, s, kind, beta) * weights)
