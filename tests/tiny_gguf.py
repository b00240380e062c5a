"""Test helper: tiny random transformers models written as GGUF files the way llama.cpp writes them.

Used by tests/test_gguf_and_loading.py and tests/test_cli_model.py. Names, q/k row permutation
(llama.cpp's `LlamaModel.permute`) and metadata keys follow llama.cpp's convert_hf_to_gguf.py.
"""

import numpy as np
from tokenizers import pre_tokenizers

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # every byte, then the specials

_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def tiny_hf_model(model_type="llama", seed=0, **overrides):
    """A random transformers causal LM with a byte-level vocabulary of VOCAB_SIZE tokens."""
    import torch
    import transformers

    config_cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[model_type]
    kwargs = dict(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                  tie_word_embeddings=False, bos_token_id=256, eos_token_id=258, pad_token_id=259)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config_cls(**kwargs), dtype=torch.float32)
    # Larger than the default 0.02 init, so logits differ clearly between tokens.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1 or name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return model.eval()


def llama_cpp_permute(weights, num_heads):
    """llama.cpp's q/k row permutation (convert_hf_to_gguf.py, LlamaModel.permute)."""
    return (weights.reshape(num_heads, 2, weights.shape[0] // num_heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def gguf_tensor_name(hf_name):
    globals_ = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}
    if hf_name in globals_:
        return globals_[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{_LAYER_NAMES[rest]}"


def write_gguf(path, model, *, qtypes=None, arch=None, metadata_overrides=None, raw_tensors=None):
    """Write `model` as a GGUF file.

    qtypes: {hf_name: GGMLQuantizationType} to quantize with gguf.quants (default F32);
    raw_tensors: {gguf_name: (uint8 bytes, GGMLQuantizationType)} written as-is, replacing that tensor;
    metadata_overrides: {"feed_forward_length": n, ...} for `{arch}.` keys.
    """
    import gguf

    cfg = model.config
    arch = arch or cfg.model_type
    writer = gguf.GGUFWriter(str(path), arch)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    meta = {"context_length": cfg.max_position_embeddings, "embedding_length": cfg.hidden_size,
            "block_count": cfg.num_hidden_layers, "feed_forward_length": cfg.intermediate_size,
            "attention.head_count": cfg.num_attention_heads, "attention.head_count_kv": cfg.num_key_value_heads,
            "rope.dimension_count": head_dim, "vocab_size": cfg.vocab_size}
    meta.update(metadata_overrides or {})
    for key, value in meta.items():
        writer.add_uint32(f"{arch}.{key}", value)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    writer.add_float32(f"{arch}.rope.freq_base", cfg.rope_parameters["rope_theta"])

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(alphabet + SPECIAL_TOKENS)
    writer.add_token_types([1] * 256 + [3] * len(SPECIAL_TOKENS))
    writer.add_token_merges([])
    writer.add_bos_token_id(256)
    writer.add_eos_token_id(258)
    writer.add_pad_token_id(259)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    raw_tensors = dict(raw_tensors or {})
    for hf_name, tensor in model.state_dict().items():
        name = gguf_tensor_name(hf_name)
        if name in raw_tensors:
            data, qtype = raw_tensors.pop(name)
            writer.add_tensor(name, data, raw_dtype=qtype)
            continue
        weights = tensor.numpy().astype(np.float32)
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = cfg.num_attention_heads if "attn_q" in name else cfg.num_key_value_heads
            weights = llama_cpp_permute(weights, heads)
        qtype = (qtypes or {}).get(hf_name)
        if qtype is None:
            writer.add_tensor(name, weights)
        else:
            writer.add_tensor(name, gguf.quants.quantize(weights, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
