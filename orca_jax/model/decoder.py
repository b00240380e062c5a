"""The LLaMA-family decoder (flax linen): training forward, prefill and cached decoding.

API:
    Decoder(config).apply({"params": params}, tokens, positions, segment_ids, cache=None)
        tokens, positions, segment_ids: int [B, T]; segment id 0 = padding.
        -> logits [B, T, vocab] float32; with `cache`: (logits, new_cache)
        last_logits_only=True: logits of the last slot only, [B, 1, vocab] (generation prefill)
        return_hidden=True: the final (normed) hidden states [B, T, embed] instead of logits;
            project(x, output_head(config, params), dtype) turns any slice of them into its logits
    init_params(config, rng) -> params        # fp32 pytree (unboxed), the dict under "params"
    param_logical_axes(config) -> pytree of jax.sharding.PartitionSpec with logical names
    init_cache(config, batch_size, max_length) -> cache
    apply(config, params, tokens, positions, segment_ids, cache=None, last_logits_only=False)  # shorthand

Parameter tree (names mirror Hugging Face for 1:1 conversion):
    embed_tokens/embedding [vocab, embed]
    layers_{i}/input_layernorm/scale, post_attention_layernorm/scale [embed]  (logical "norm")
    layers_{i}/self_attn/{q,k,v}_proj [embed, (kv_)heads, head_dim], {q,k,v}_proj_bias, o_proj
    layers_{i}/mlp/{gate,up}_proj [embed, mlp], down_proj [mlp, embed]
    norm/scale [embed];  lm_head [embed, vocab] (absent when embeddings are tied)
Norm scales are named `scale` and biases end in `_bias` (weight-decay masks rely on this).

Cache: {"index": int32 scalar (next slot), "segment_ids", "positions": [B, L], "layers": [{"k", "v"}...]}.
A call with a cache writes its T tokens at slots [index, index+T) for every row; slots whose
segment id is 0 (left/right padding, unwritten slots) are never attended.
Layers stay unrolled (no scan) so names map 1:1 to HF; `remat_policy` wraps each layer.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from orca_jax.errors import UserError
from orca_jax.model.attention import Attention
from orca_jax.model.config import DecoderConfig
from orca_jax.model.layers import MLP, Embed, RMSNorm, logical_param


class DecoderLayer(nn.Module):
    config: DecoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, segment_ids, cache=None, cache_index=None, cache_segment_ids=None,
                 cache_positions=None):
        cfg = self.config
        h = RMSNorm(cfg.rms_norm_eps, self.dtype, name="input_layernorm")(x)
        h, new_cache = Attention(cfg, self.dtype, name="self_attn")(
            h, positions, segment_ids, cache, cache_index, cache_segment_ids, cache_positions)
        x = x + h
        h = RMSNorm(cfg.rms_norm_eps, self.dtype, name="post_attention_layernorm")(x)
        x = x + MLP(cfg, self.dtype, name="mlp")(h)
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), new_cache


def _layer_class(policy_name: str):
    if policy_name == "none":
        return DecoderLayer
    if policy_name == "full":
        return nn.remat(DecoderLayer)
    policy = getattr(jax.checkpoint_policies, policy_name, None)
    if policy is None or not callable(policy):
        raise UserError(f"unknown remat_policy {policy_name!r}; expected 'none', 'full' or a name in "
                        "jax.checkpoint_policies (e.g. 'dots_saveable')")
    return nn.remat(DecoderLayer, policy=policy)


class Decoder(nn.Module):
    config: DecoderConfig

    @nn.compact
    def __call__(self, tokens, positions, segment_ids, cache=None, last_logits_only: bool = False,
                 return_hidden: bool = False):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        embed = Embed(cfg.vocab_size, cfg.hidden_size, dtype, name="embed_tokens")
        x = nn.with_logical_constraint(embed(tokens), ("batch", "length", "embed"))
        layer_cls = _layer_class(cfg.remat_policy)
        cache_index = cache_segment_ids = cache_positions = None
        if cache is not None:
            if return_hidden:
                raise ValueError("return_hidden is for the training forward, without a cache")
            cache_index = cache["index"]
            cache_segment_ids, cache_positions = (
                jax.lax.dynamic_update_slice(cache[key], new.astype(jnp.int32), (0, cache_index))
                for key, new in (("segment_ids", segment_ids), ("positions", positions)))
        new_layers = []
        for i in range(cfg.num_layers):
            layer_cache = None if cache is None else cache["layers"][i]
            x, new_layer_cache = layer_cls(cfg, dtype, name=f"layers_{i}")(
                x, positions, segment_ids, layer_cache, cache_index, cache_segment_ids, cache_positions)
            new_layers.append(new_layer_cache)
        x = RMSNorm(cfg.rms_norm_eps, dtype, name="norm")(x)
        if return_hidden:  # the loss projects them chunk by chunk (output_head, project)
            return x
        if last_logits_only:  # prefill for generation needs only the next-token logits
            x = x[:, -1:]
        if cfg.tie_word_embeddings:
            head = embed.embedding.T
        else:
            head = logical_param(self, "lm_head", (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"))
        logits = project(x, head, dtype)
        if cache is None:
            return logits
        new_cache = {"index": cache_index + tokens.shape[1], "segment_ids": cache_segment_ids,
                     "positions": cache_positions, "layers": new_layers}
        return logits, new_cache


def output_head(config: DecoderConfig, params) -> jax.Array:
    """The output projection [embed, vocab] in `params`: lm_head, or the tied embedding transposed."""
    return params["embed_tokens"]["embedding"].T if config.tie_word_embeddings else params["lm_head"]


def project(x: jax.Array, head: jax.Array, dtype) -> jax.Array:
    """Final hidden states [B, T, embed] -> fp32 logits [B, T, vocab]: in `dtype`, accumulated in fp32."""
    logits = jnp.einsum("bte,ev->btv", x, head.astype(dtype), preferred_element_type=jnp.float32)
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


def _dummy_inputs():
    ones = jnp.ones((1, 1), jnp.int32)
    return ones, jnp.zeros((1, 1), jnp.int32), ones


def init_params(config: DecoderConfig, rng) -> dict:
    """Random fp32 parameters (normal(0.02) matrices, unit norm scales, zero biases)."""
    # Parameters do not depend on the attention kernel; the reference path accepts init's
    # 1-token input, which kernels with block-size constraints (splash) reject.
    variables = jax.jit(Decoder(config.replace(attention_impl="xla")).init)(rng, *_dummy_inputs())
    return nn.unbox(variables["params"])


def param_logical_axes(config: DecoderConfig):
    """PartitionSpecs of logical axis names, same tree structure as `init_params`."""
    abstract = jax.eval_shape(Decoder(config).init, jax.random.key(0), *_dummy_inputs())
    return nn.get_partition_spec(abstract)["params"]


def init_cache(config: DecoderConfig, batch_size: int, max_length: int) -> dict:
    dtype = jnp.dtype(config.dtype)
    shape = (batch_size, max_length, config.num_kv_heads, config.head_dim)
    return {
        "index": jnp.zeros((), jnp.int32),
        "segment_ids": jnp.zeros((batch_size, max_length), jnp.int32),
        "positions": jnp.zeros((batch_size, max_length), jnp.int32),
        "layers": [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.num_layers)],
    }


def apply(config: DecoderConfig, params, tokens, positions, segment_ids, cache=None, last_logits_only=False):
    return Decoder(config).apply({"params": params}, tokens, positions, segment_ids, cache, last_logits_only)
