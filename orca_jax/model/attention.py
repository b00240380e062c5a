"""Segment-aware causal attention (GQA) with selectable kernels, and the attention layer.

A query may attend to a key only if both carry the same segment id and the key comes at or
before the query in the sequence (and, with a sliding window W, fewer than W slots before it).
Segment id 0 marks padding; padding keys are never attended by real tokens.

`config.attention_impl`:
  "xla"        reference einsum + dense mask; always available, used for every KV-cache step.
  "cudnn"      `jax.nn.dot_product_attention(implementation="cudnn")` given the dense
               segment+causal(+window) mask, so packing stays correct (GPU, bf16/fp16 only).
  "pallas_gpu" `jax.experimental.pallas.ops.gpu.attention.mha` with segment ids (Triton on GPU,
               interpret mode elsewhere). No sliding window: refuses sequences longer than it.
  "splash"     Pallas TPU splash attention with segment ids and a causal/local mask
               (interpret mode off TPU; sequence length must be a multiple of 128).

Parameters (fp32, logical axes): q_proj [embed, heads, head_dim], k_proj / v_proj
[embed, kv_heads, head_dim], o_proj [heads, head_dim, embed], optional q/k/v_proj_bias.
"""

from __future__ import annotations

import functools
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig
from orca_jax.model.layers import apply_rotary, logical_param, rope_inv_freq

# Large finite value (as in splash attention): a fully masked padding row stays finite, never NaN.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)


KERNEL_MODULES = {"pallas_gpu": "jax.experimental.pallas.ops.gpu.attention",
                  "splash": "jax.experimental.pallas.ops.tpu.splash_attention"}


def kernel_module(impl: str):
    """The Pallas kernel module for `impl`; these live under jax.experimental and may move."""
    try:
        return importlib.import_module(KERNEL_MODULES[impl])
    except ImportError as e:
        raise UserError(f"attention_impl {impl!r} is unavailable with jax {jax.__version__} ({e}); "
                        "use 'xla' or 'cudnn'") from None


def attention_mask(q_segment_ids, kv_segment_ids, q_index, kv_index, q_positions, kv_positions, sliding_window):
    """Boolean [B, T, S]: same non-zero segment, key slot not after the query slot, and (with a
    window) fewer than `sliding_window` positions back. The window uses positions, not slots, so
    right padding inside a KV cache does not shrink it."""
    mask = (q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]) & (kv_segment_ids[:, None, :] != 0)
    mask &= kv_index[None, None, :] <= q_index[None, :, None]
    if sliding_window is not None:
        mask &= q_positions[:, :, None] - kv_positions[:, None, :] < sliding_window
    return mask


def xla_attention(q, k, v, mask):
    """q [B,T,H,D], k/v [B,S,K,D], mask [B,T,S] -> [B,T,H,D]; softmax in fp32.

    The [.., T, S] scores are the largest arrays here (head_dim is far smaller than S), so
    work is moved off them: q is scaled before the product, and the softmax's division is
    applied to the [.., T, D] output instead of the probabilities (as flash attention does)."""
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    q = (q * jnp.asarray(1 / np.sqrt(d), q.dtype)).reshape(b, t, kv_heads, h // kv_heads, d)
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
    scores = jnp.where(mask[:, None, None], scores, MASK_VALUE)
    unnormalized = jnp.exp(scores - jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True)))
    total = jnp.sum(unnormalized, axis=-1).transpose(0, 3, 1, 2)[..., None]  # [B, T, K, G, 1]
    out = jnp.einsum("bkgts,bskd->btkgd", unnormalized.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return (out / total).astype(v.dtype).reshape(b, t, h, d)


def cudnn_attention(q, k, v, mask):
    if jax.default_backend() != "gpu":
        raise UserError("attention_impl 'cudnn' needs a GPU; use 'xla' (or 'pallas_gpu' in interpret mode)")
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise UserError(f"attention_impl 'cudnn' needs dtype bfloat16 or float16, got {q.dtype}")
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=1.0 / np.sqrt(q.shape[-1]),
                                        implementation="cudnn")


def pallas_gpu_attention(q, k, v, segment_ids, sliding_window):
    gpu_attention = kernel_module("pallas_gpu")
    t = q.shape[1]
    if sliding_window is not None and t > sliding_window:
        raise UserError(f"attention_impl 'pallas_gpu' has no sliding window; sequence length {t} exceeds "
                        f"sliding_window {sliding_window}: use 'xla' or 'cudnn'")
    groups = q.shape[2] // k.shape[2]
    k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
    block = min(128, t)
    blocks = gpu_attention.BlockSizes(block_q=block, block_k=block, block_q_dkv=block, block_kv_dkv=block,
                                      block_q_dq=block, block_kv_dq=block)
    return gpu_attention.mha(q, k, v, segment_ids.astype(jnp.int32), sm_scale=1.0 / float(np.sqrt(q.shape[-1])),
                             causal=True, block_sizes=blocks, interpret=jax.default_backend() != "gpu")


@functools.lru_cache(maxsize=32)
def _splash_kernel(seq_len: int, groups: int, sliding_window: int | None):
    splash = kernel_module("splash")
    if sliding_window is None:
        head_mask = splash.CausalMask((seq_len, seq_len))
    else:
        head_mask = splash.LocalMask((seq_len, seq_len), window_size=(sliding_window - 1, 0), offset=0)
    block = 128  # the kernel's minimum tile on the kv axis
    blocks = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                               block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    # One MQA kernel per kv head (vmapped) handles grouped-query attention without repeating k/v.
    # Built eagerly: the cached kernel holds mask arrays that must not be tracers of the first jit.
    with jax.ensure_compile_time_eval():
        return splash.make_splash_mqa_single_device(splash.MultiHeadMask([head_mask] * groups), block_sizes=blocks,
                                                    interpret=jax.default_backend() != "tpu")


def splash_attention(q, k, v, segment_ids, sliding_window):
    splash = kernel_module("splash")
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    if t % 128:
        raise UserError(f"attention_impl 'splash' needs a sequence length that is a multiple of 128; got {t}")
    kernel = _splash_kernel(t, h // kv_heads, sliding_window)
    q = (q / np.sqrt(d).astype(q.dtype)).reshape(b, t, kv_heads, h // kv_heads, d).transpose(0, 2, 3, 1, 4)
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, S, D]
    segment_ids = segment_ids.astype(jnp.int32)

    def one_row(q_row, k_row, v_row, seg_row):
        ids = splash.SegmentIds(q=seg_row, kv=seg_row)
        return jax.vmap(lambda qq, kk, vv: kernel(qq, kk, vv, segment_ids=ids))(q_row, k_row, v_row)

    out = jax.vmap(one_row)(q, k, v, segment_ids)  # [B, K, G, T, D]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


def segment_attention(q, k, v, segment_ids, positions, config: DecoderConfig):
    """Self-attention over one (possibly packed) sequence, with the configured kernel."""
    impl = config.attention_impl
    if impl == "pallas_gpu":
        return pallas_gpu_attention(q, k, v, segment_ids, config.sliding_window)
    if impl == "splash":
        return splash_attention(q, k, v, segment_ids, config.sliding_window)
    index = jnp.arange(q.shape[1])
    mask = attention_mask(segment_ids, segment_ids, index, index, positions, positions, config.sliding_window)
    return cudnn_attention(q, k, v, mask) if impl == "cudnn" else xla_attention(q, k, v, mask)


class Attention(nn.Module):
    """GQA self-attention with rotary embeddings and an optional KV cache.

    cache (per layer): {"k", "v": [B, L, kv_heads, head_dim]}; `cache_index` is the slot of the
    first new token; `cache_segment_ids` / `cache_positions` [B, L] describe every slot, new
    tokens included (written by the decoder).
    """
    config: DecoderConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, segment_ids, cache=None, cache_index=None, cache_segment_ids=None,
                 cache_positions=None):
        cfg = self.config
        e, h, kv, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

        def project(name, heads, axes):
            kernel = logical_param(self, name, (e, heads, d), ("embed", axes, "head_dim"))
            y = jnp.einsum("bte,ehd->bthd", x, kernel.astype(self.dtype))
            if cfg.attention_bias:
                y = y + logical_param(self, name + "_bias", (heads, d), (axes, "head_dim"),
                                      nn.initializers.zeros).astype(self.dtype)
            return nn.with_logical_constraint(y, ("batch", "length", axes, "head_dim"))

        q = project("q_proj", h, "heads")
        k = project("k_proj", kv, "kv_heads")
        v = project("v_proj", kv, "kv_heads")
        inv_freq = rope_inv_freq(cfg)
        q, k = apply_rotary(q, positions, inv_freq), apply_rotary(k, positions, inv_freq)

        if cache is None:
            out = segment_attention(q, k, v, segment_ids, positions, cfg)
            new_cache = None
        else:
            # Decoding steps are short; the reference path covers every kernel's semantics.
            k_all = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, cache_index, 0, 0))
            v_all = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, cache_index, 0, 0))
            q_index = cache_index + jnp.arange(q.shape[1])
            mask = attention_mask(segment_ids, cache_segment_ids, q_index, jnp.arange(k_all.shape[1]),
                                  positions, cache_positions, cfg.sliding_window)
            out = xla_attention(q, k_all.astype(self.dtype), v_all.astype(self.dtype), mask)
            new_cache = {"k": k_all, "v": v_all}
        out = nn.with_logical_constraint(out, ("batch", "length", "heads", "head_dim"))
        o_proj = logical_param(self, "o_proj", (h, d, e), ("heads", "head_dim", "embed"))
        return jnp.einsum("bthd,hde->bte", out, o_proj.astype(self.dtype)), new_cache
