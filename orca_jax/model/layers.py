"""Decoder building blocks: RMSNorm, rotary embeddings, SwiGLU MLP, token embeddings.

Every parameter is fp32 and carries logical axis names (`nn.with_logical_partitioning`);
computation happens in the module's `dtype`. Parameter names follow Hugging Face's
(`embed_tokens`, `gate_proj`, ...) so conversion is a 1:1 mapping.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from orca_jax.model.config import DecoderConfig

DEFAULT_INIT = nn.initializers.normal(stddev=0.02)


def logical_param(module: nn.Module, name: str, shape: tuple, axes: tuple, init=DEFAULT_INIT):
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


class RMSNorm(nn.Module):
    eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = logical_param(self, "scale", (x.shape[-1],), ("norm",), nn.initializers.ones)
        # Normalise in fp32 as transformers does, then scale in the compute dtype.
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return x32.astype(self.dtype) * scale.astype(self.dtype)


def rope_inv_freq(config: DecoderConfig) -> np.ndarray:
    """Inverse frequencies [head_dim/2] in fp32, with HF's `linear` / `llama3` scaling."""
    dim = config.head_dim
    inv_freq = 1.0 / (np.float32(config.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    inv_freq = inv_freq.astype(np.float32)
    scaling = config.rope_scaling or {}
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "linear":
        inv_freq = inv_freq / np.float32(scaling["factor"])
    elif rope_type == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv_freq


def apply_rotary(x, positions, inv_freq):
    """Rotate-half rotary embedding (HF layout). x: [B, T, H, D]; positions: [B, T]."""
    freqs = positions.astype(jnp.float32)[:, :, None] * jnp.asarray(inv_freq)[None, None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""
    config: DecoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        names = ("embed", "mlp")
        gate = logical_param(self, "gate_proj", (cfg.hidden_size, cfg.intermediate_size), names)
        up = logical_param(self, "up_proj", (cfg.hidden_size, cfg.intermediate_size), names)
        down = logical_param(self, "down_proj", (cfg.intermediate_size, cfg.hidden_size), ("mlp", "embed"))
        h = nn.silu(x @ gate.astype(self.dtype)) * (x @ up.astype(self.dtype))
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        return h @ down.astype(self.dtype)


class Embed(nn.Module):
    vocab_size: int
    features: int
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.embedding = logical_param(self, "embedding", (self.vocab_size, self.features), ("vocab", "embed"))

    def __call__(self, tokens):
        return jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)
