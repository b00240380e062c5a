"""Decoder hyper-parameters, HF `config.json` translation, and named presets.

API:
    DecoderConfig(vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, ...)
    DecoderConfig.from_hf_config(hf: dict) -> DecoderConfig   # UserError on unsupported models
    DecoderConfig.to_hf_config() -> dict                       # loadable by transformers (v4 and v5 keys)
    DecoderConfig.replace(**kw) -> DecoderConfig
    PRESETS: dict[str, DecoderConfig]; get_preset(name) -> DecoderConfig

`rope_scaling` keeps the HF dict form without `rope_theta` (e.g. {"rope_type": "llama3",
"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
"original_max_position_embeddings": 8192}); supported types: default, linear, llama3.
`attention_impl`: "xla" | "cudnn" | "pallas_gpu" | "splash" (see attention.py).
`remat_policy`: "none" | "full" | any name in `jax.checkpoint_policies` (e.g. "dots_saveable").
"""

from __future__ import annotations

import dataclasses

from orca_jax.errors import UserError

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
ATTENTION_IMPLS = ("xla", "cudnn", "pallas_gpu", "splash")
ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    sliding_window: int | None = None
    max_position_embeddings: int = 2048
    dtype: str = "float32"
    attention_impl: str = "xla"
    remat_policy: str = "none"
    architecture: str = "llama"

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise UserError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.architecture not in ARCHITECTURES:
            raise UserError(f"unknown architecture {self.architecture!r}; expected one of {sorted(ARCHITECTURES)}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise UserError(f"unknown attention_impl {self.attention_impl!r}; expected one of {ATTENTION_IMPLS}")
        rope_type = (self.rope_scaling or {}).get("rope_type", "default")
        if rope_type not in ROPE_TYPES:
            raise UserError(f"unsupported rope_scaling type {rope_type!r}; supported: {ROPE_TYPES}")

    def __hash__(self):  # hashable despite the rope_scaling dict, so configs can be static jit args
        fields = dataclasses.astuple(self)
        return hash(tuple(tuple(sorted(f.items())) if isinstance(f, dict) else f for f in fields))

    def replace(self, **kw) -> "DecoderConfig":
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_hf_config(cls, hf: dict) -> "DecoderConfig":
        """Translate a transformers `config.json` dict (v4 or v5 layout)."""
        model_type = hf.get("model_type")
        if model_type not in ARCHITECTURES:
            raise UserError(
                f"config.json: model_type {model_type!r} is not supported; expected one of {sorted(ARCHITECTURES)}")
        archs = hf.get("architectures") or [ARCHITECTURES[model_type]]
        if archs[0] != ARCHITECTURES[model_type]:
            raise UserError(f"config.json: architectures {archs} not supported; expected {ARCHITECTURES[model_type]!r}")
        if hf.get("hidden_act", "silu") != "silu":
            raise UserError(f"config.json: hidden_act {hf['hidden_act']!r} not supported; expected 'silu'")
        if hf.get("mlp_bias"):
            raise UserError("config.json: mlp_bias=true is not supported")
        # transformers v5 nests theta and scaling in `rope_parameters`; v4 keeps them top-level.
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        theta = float(rope.pop("rope_theta", hf.get("rope_theta", 10000.0)))
        if "type" in rope:  # older HF spelling
            rope["rope_type"] = rope.pop("type")
        if rope.get("rope_type", "default") == "default":
            rope = {}
        sliding = hf.get("sliding_window")
        if model_type == "qwen2":
            # Qwen2 only applies its window when use_sliding_window, and then only above max_window_layers.
            if hf.get("use_sliding_window"):
                if hf.get("max_window_layers", 0) > 0:
                    raise UserError("config.json: Qwen2 with sliding window on only some layers is not supported")
            else:
                sliding = None
        elif model_type == "llama":
            sliding = None
        num_heads = hf["num_attention_heads"]
        try:
            return cls(
                vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                intermediate_size=hf["intermediate_size"], num_layers=hf["num_hidden_layers"],
                num_heads=num_heads, num_kv_heads=hf.get("num_key_value_heads") or num_heads,
                head_dim=hf.get("head_dim") or hf["hidden_size"] // num_heads,
                rope_theta=theta, rope_scaling=rope or None,
                rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
                tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
                attention_bias=bool(hf.get("attention_bias", model_type == "qwen2")),
                sliding_window=sliding, max_position_embeddings=hf.get("max_position_embeddings", 2048),
                architecture=model_type)
        except KeyError as e:
            raise UserError(f"config.json: missing field {e.args[0]!r}") from None

    def to_hf_config(self) -> dict:
        """A `config.json` dict for transformers; fp32 weights."""
        rope_parameters = {"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta}
        hf = {
            "architectures": [ARCHITECTURES[self.architecture]],
            "model_type": self.architecture,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_parameters": rope_parameters,
            # v4 readers look for these top-level keys.
            "rope_theta": self.rope_theta,
            "rope_scaling": dict(self.rope_scaling) if self.rope_scaling else None,
            "torch_dtype": "float32",
        }
        if self.architecture == "llama":
            hf["attention_bias"] = self.attention_bias
            hf["mlp_bias"] = False
        elif self.attention_bias != (self.architecture == "qwen2"):
            raise UserError(f"{self.architecture} cannot express attention_bias={self.attention_bias} in HF format")
        if self.architecture == "mistral":
            hf["sliding_window"] = self.sliding_window
        if self.architecture == "qwen2":
            hf["use_sliding_window"] = self.sliding_window is not None
            hf["sliding_window"] = self.sliding_window
            hf["max_window_layers"] = 0
        elif self.sliding_window is not None and self.architecture != "mistral":
            raise UserError("sliding_window needs architecture 'mistral' or 'qwen2' for HF export")
        return hf


PRESETS: dict[str, DecoderConfig] = {
    # For tests and the CPU quickstart.
    "tiny": DecoderConfig(vocab_size=512, hidden_size=64, intermediate_size=176, num_layers=2,
                          num_heads=4, num_kv_heads=2),
    "smollm2-135m": DecoderConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                                  num_heads=9, num_kv_heads=3, rope_theta=100000.0, rms_norm_eps=1e-5,
                                  tie_word_embeddings=True, max_position_embeddings=8192),
    "tinyllama-1.1b": DecoderConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_layers=22,
                                    num_heads=32, num_kv_heads=4, rms_norm_eps=1e-5),
    "llama-13b": DecoderConfig(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_layers=40,
                               num_heads=40, num_kv_heads=40, rms_norm_eps=1e-6),
    "llama2-7b": DecoderConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_layers=32,
                               num_heads=32, num_kv_heads=32, max_position_embeddings=4096),
    "llama2-13b": DecoderConfig(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_layers=40,
                                num_heads=40, num_kv_heads=40, max_position_embeddings=4096),
    "mistral-7b": DecoderConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_layers=32,
                                num_heads=32, num_kv_heads=8, sliding_window=4096,
                                max_position_embeddings=32768, architecture="mistral"),
    "qwen2-0.5b": DecoderConfig(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24,
                                num_heads=14, num_kv_heads=2, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                tie_word_embeddings=True, attention_bias=True, max_position_embeddings=32768,
                                architecture="qwen2"),
}


def get_preset(name: str) -> DecoderConfig:
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
