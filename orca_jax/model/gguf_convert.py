"""GGUF files -> a Hugging Face config dict, HF-named fp32 tensors, and the tokenizer.

llama.cpp stores LLaMA-family weights under its own names, quantized, with the rows of the q/k
projections permuted for its rotary layout. This module reads them with the `gguf` package,
dequantizes with `gguf.quants.dequantize`, renames to transformers' names and undoes the q/k
permutation exactly as transformers' GGUF loader does, so the result feeds the same
`params_from_hf` as a safetensors checkpoint.

    gguf_model = read_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    gguf_model.config      # {"model_type": "llama", "hidden_size": 576, ...}
    gguf_model.tensors     # {"model.layers.0.self_attn.q_proj.weight": np.ndarray[576, 576], ...}
    gguf_model.tokenizer   # orca_jax.data.tokenizer.Tokenizer
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from orca_jax.data.tokenizer import Tokenizer, tokenizer_from_gguf_fields
from orca_jax.errors import UserError

# general.architecture -> HF model_type. llama.cpp writes Mistral files as "llama".
_ARCHITECTURES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}
# Architectures whose llama.cpp converter permutes the q/k rows (LlamaModel.permute).
_PERMUTED_QK = {"llama", "mistral"}

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_LAYER_PATTERN = re.compile(r"^blk\.(\d+)\.(.+)$")


@dataclasses.dataclass
class GGUFModel:
    config: dict  # transformers config.json layout
    tensors: dict[str, np.ndarray]  # HF names, fp32, transformers' [out, in] layout
    tokenizer: Tokenizer


def read_gguf(path) -> GGUFModel:
    """Read a LLaMA / Mistral / Qwen2 GGUF file; UserError for anything it cannot represent exactly."""
    from gguf import GGUFReader

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: not a readable GGUF file: {e}") from e
    fields = {name: field.contents() for name, field in reader.fields.items()}
    config = gguf_hf_config(path, fields, [t.name for t in reader.tensors])
    tensors = {}
    for tensor in reader.tensors:
        hf_name = hf_tensor_name(path, tensor.name)
        weights = _dequantize(path, tensor)
        if config["model_type"] in _PERMUTED_QK and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config["num_attention_heads"] if "q_proj" in hf_name else config["num_key_value_heads"]
            weights = unpermute_rotary_rows(weights, heads)
        tensors[hf_name] = weights
    return GGUFModel(config=config, tensors=tensors, tokenizer=tokenizer_from_gguf_fields(path, fields))


def gguf_hf_config(path: str, fields: dict, tensor_names: list[str]) -> dict:
    """The transformers config dict that GGUF metadata describes."""
    arch = fields.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise UserError(
            f"{path}: GGUF architecture {arch!r} is not supported; expected one of {sorted(_ARCHITECTURES)}"
        )
    if "rope_freqs.weight" in tensor_names:
        # llama3-style rope scaling is stored as a frequency tensor, not as config values.
        raise UserError(f"{path}: GGUF rope frequency tensor (llama3 rope scaling) is not supported")

    def key(name, default=None, required=True):
        value = fields.get(f"{arch}.{name}", default)
        if value is None and required:
            raise UserError(f"{path}: GGUF metadata lacks {arch}.{name}")
        return value

    hidden, heads = key("embedding_length"), key("attention.head_count")
    tokens = fields.get("tokenizer.ggml.tokens")
    config = {
        "model_type": _ARCHITECTURES[arch],
        "hidden_size": hidden,
        "intermediate_size": key("feed_forward_length"),
        "num_hidden_layers": key("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": key("attention.head_count_kv", heads),
        "head_dim": key("attention.key_length", hidden // heads),
        "max_position_embeddings": key("context_length"),
        "rms_norm_eps": key("attention.layer_norm_rms_epsilon"),
        "rope_theta": key("rope.freq_base", 10000.0),
        "vocab_size": key("vocab_size", len(tokens) if tokens else None),
        # llama.cpp writes the output projection only when it is not the embedding matrix.
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "hidden_act": "silu",
        "bos_token_id": fields.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": fields.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": fields.get("tokenizer.ggml.padding_token_id"),
    }
    scaling = key("rope.scaling.type", required=False)
    if scaling not in (None, "none"):
        if scaling != "linear":
            raise UserError(f"{path}: GGUF rope scaling type {scaling!r} is not supported (only 'linear')")
        config["rope_scaling"] = {"rope_type": "linear", "factor": float(key("rope.scaling.factor"))}
    window = key("attention.sliding_window", required=False)
    if window:
        config["sliding_window"] = window
        if arch == "qwen2":
            config["use_sliding_window"] = True
    if arch == "qwen2":
        config["attention_bias"] = True
    return config


def hf_tensor_name(path: str, gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _LAYER_PATTERN.match(gguf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    raise UserError(f"{path}: GGUF tensor {gguf_name!r} has no Hugging Face LLaMA-family equivalent")


def _dequantize(path: str, tensor) -> np.ndarray:
    from gguf import GGMLQuantizationType, quants

    qtype = GGMLQuantizationType(tensor.tensor_type)
    if qtype.name.startswith("I") and not qtype.name.startswith("IQ"):  # I8..I64: integers, not weights
        raise UserError(f"{path}: tensor {tensor.name!r} has integer type {qtype.name}, expected float weights")
    try:
        weights = quants.dequantize(tensor.data, qtype)
    except NotImplementedError:
        raise UserError(
            f"{path}: tensor {tensor.name!r} uses quantization {qtype.name}, which the gguf package cannot dequantize"
        ) from None
    # GGUF lists dimensions fastest-first; numpy's order is the reverse (transformers' [out, in]).
    shape = tuple(int(d) for d in reversed(tensor.shape))
    return np.ascontiguousarray(weights.reshape(shape), dtype=np.float32)


def unpermute_rotary_rows(weights: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved rotary pairs -> HF's rotate-half halves)."""
    half = weights.shape[0] // num_heads // 2
    w = weights.reshape(num_heads, half, 2, *weights.shape[1:])
    return w.swapaxes(2, 1).reshape(weights.shape)
