"""Hugging Face checkpoints <-> decoder params.

API:
    params_from_hf(config, tensors: Mapping[str, np.ndarray]) -> params
    params_to_hf(config, params) -> dict[str, np.ndarray]        # HF names, fp32
    load_hf_folder(path) -> (DecoderConfig, params)   # config.json + model.safetensors or sharded + index
    save_hf_folder(path, config, params, *, generation_config=None, extra_config=None) -> None
    resize_vocab(config, params, new_vocab_size, rng) -> (DecoderConfig, params)

HF stores Linear weights as [out, in]; our kernels are [in, ...] with heads split out. Tensors
that carry no parameters (e.g. `rotary_emb.inv_freq`) and a tied `lm_head.weight` are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig


def _hf_layout(config: DecoderConfig) -> dict[str, tuple[tuple, tuple[int, ...], callable, callable]]:
    """HF name -> (our param path, HF shape, hf->ours, ours->hf)."""
    e, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    h, kv, d = config.num_heads, config.num_kv_heads, config.head_dim
    same = (lambda x: x, lambda x: x)
    transpose = (lambda x: x.T, lambda x: x.T)

    def heads_in(n):  # [n*d, e] <-> [e, n, d]
        return (lambda x: x.T.reshape(e, n, d), lambda x: x.reshape(e, n * d).T)

    def bias(n):
        return (lambda x: x.reshape(n, d), lambda x: x.reshape(n * d))

    out_proj = (lambda x: x.T.reshape(h, d, e), lambda x: x.reshape(h * d, e).T)
    layout = {"model.embed_tokens.weight": (("embed_tokens", "embedding"), (v, e), *same),
              "model.norm.weight": (("norm", "scale"), (e,), *same)}
    if not config.tie_word_embeddings:
        layout["lm_head.weight"] = (("lm_head",), (v, e), *transpose)
    for i in range(config.num_layers):
        pre, ours = f"model.layers.{i}.", f"layers_{i}"
        layout[pre + "input_layernorm.weight"] = ((ours, "input_layernorm", "scale"), (e,), *same)
        layout[pre + "post_attention_layernorm.weight"] = ((ours, "post_attention_layernorm", "scale"), (e,), *same)
        for name, n in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            layout[pre + f"self_attn.{name}.weight"] = ((ours, "self_attn", name), (n * d, e), *heads_in(n))
            if config.attention_bias:
                layout[pre + f"self_attn.{name}.bias"] = ((ours, "self_attn", name + "_bias"), (n * d,), *bias(n))
        layout[pre + "self_attn.o_proj.weight"] = ((ours, "self_attn", "o_proj"), (e, h * d), *out_proj)
        layout[pre + "mlp.gate_proj.weight"] = ((ours, "mlp", "gate_proj"), (f, e), *transpose)
        layout[pre + "mlp.up_proj.weight"] = ((ours, "mlp", "up_proj"), (f, e), *transpose)
        layout[pre + "mlp.down_proj.weight"] = ((ours, "mlp", "down_proj"), (e, f), *transpose)
    return layout


def _set(tree: dict, path: tuple, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _get(tree, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def params_from_hf(config: DecoderConfig, tensors: Mapping[str, np.ndarray], *,
                   source: Mapping[str, str] | None = None) -> dict:
    """`source` maps tensor name -> file it came from, for error messages."""
    params: dict = {}
    for name, (path, shape, to_ours, _) in _hf_layout(config).items():
        where = (source or {}).get(name, "checkpoint")
        if name not in tensors:
            raise UserError(f"{where}: missing tensor {name!r}")
        array = np.asarray(tensors[name], dtype=np.float32)
        if array.shape != shape:
            raise UserError(f"{where}: tensor {name!r} has shape {list(array.shape)}, expected {list(shape)} "
                            "from config.json")
        _set(params, path, jnp.asarray(to_ours(array)))
    return params


def params_to_hf(config: DecoderConfig, params) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(from_ours(np.asarray(_get(params, path), dtype=np.float32)))
            for name, (path, _, _, from_ours) in _hf_layout(config).items()}


def _read_safetensors(path: str, names=None) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    out = {}
    # The "flax" framework reads bf16 as well; values are converted to fp32 numpy right away.
    with safe_open(path, framework="flax") as f:
        for name in f.keys():
            if names is None or name in names:
                out[name] = np.asarray(f.get_tensor(name), dtype=np.float32)
    return out


def load_hf_folder(path) -> tuple[DecoderConfig, dict]:
    path = os.fspath(path)
    config_path = os.path.join(path, "config.json")
    if not os.path.isdir(path):
        raise UserError(f"{path}: not a directory (expected a Hugging Face model folder)")
    if not os.path.exists(config_path):
        raise UserError(f"{config_path}: missing (a Hugging Face model folder needs config.json)")
    try:
        with open(config_path, encoding="utf-8") as fh:
            hf_config = json.load(fh)
    except json.JSONDecodeError as e:
        raise UserError(f"{config_path}: invalid JSON: {e}") from None
    config = DecoderConfig.from_hf_config(hf_config)

    index_path = os.path.join(path, "model.safetensors.index.json")
    single_path = os.path.join(path, "model.safetensors")
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as fh:
            weight_map = json.load(fh)["weight_map"]
        files = sorted(set(weight_map.values()))
    elif os.path.exists(single_path):
        files = ["model.safetensors"]
    else:
        raise UserError(f"{path}: no model.safetensors or model.safetensors.index.json "
                        "(only safetensors checkpoints are supported)")
    tensors, source = {}, {}
    for file in files:
        file_path = os.path.join(path, file)
        if not os.path.exists(file_path):
            raise UserError(f"{file_path}: missing (listed in model.safetensors.index.json)")
        for name, array in _read_safetensors(file_path).items():
            tensors[name] = array
            source[name] = file_path
    missing_where = index_path if os.path.exists(index_path) else single_path
    for name in _hf_layout(config):
        source.setdefault(name, missing_where)
    return config, params_from_hf(config, tensors, source=source)


def save_hf_folder(path, config: DecoderConfig, params, *, generation_config: dict | None = None,
                   extra_config: dict | None = None) -> None:
    """Write config.json (+ `extra_config`, e.g. token ids), model.safetensors and, when given,
    generation_config.json. Tokenizer files are written by the tokenizer module."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as fh:
        json.dump({**config.to_hf_config(), **(extra_config or {})}, fh, indent=2)
    weights = os.path.join(path, "model.safetensors")
    save_file(params_to_hf(config, params), weights, metadata={"format": "pt"})
    # safetensors >= 0.8 writes through a temporary file created 0600 and renames it into place
    # (safetensors/safetensors#782): give the file the mode open() gives config.json beside it
    os.chmod(weights, 0o666 & ~_umask())
    if generation_config is not None:
        with open(os.path.join(path, "generation_config.json"), "w", encoding="utf-8") as fh:
            json.dump(generation_config, fh, indent=2)


def _umask() -> int:
    """The process's umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def resize_vocab(config: DecoderConfig, params, new_vocab_size: int, rng) -> tuple[DecoderConfig, dict]:
    """Grow (or shrink) the embedding and untied head; new rows ~ N(mean of old rows, small noise),
    so new tokens start as an average token rather than a random direction."""
    old = config.vocab_size
    if new_vocab_size <= 0:
        raise UserError(f"new vocabulary size must be positive, got {new_vocab_size}")
    emb_rng, head_rng = jax.random.split(rng)

    def grow(matrix, axis, key):
        if new_vocab_size <= old:
            return jax.lax.slice_in_dim(matrix, 0, new_vocab_size, axis=axis)
        mean = jnp.mean(matrix, axis=axis, keepdims=True)
        shape = list(matrix.shape)
        shape[axis] = new_vocab_size - old
        std = jnp.std(matrix) * 0.01
        new_rows = mean + std * jax.random.normal(key, shape, matrix.dtype)
        return jnp.concatenate([matrix, new_rows], axis=axis)

    params = jax.tree_util.tree_map(lambda x: x, params)  # shallow copy of the dict tree
    params["embed_tokens"] = {"embedding": grow(params["embed_tokens"]["embedding"], 0, emb_rng)}
    if not config.tie_word_embeddings:
        params["lm_head"] = grow(params["lm_head"], 1, head_rng)
    return config.replace(vocab_size=new_vocab_size), params
