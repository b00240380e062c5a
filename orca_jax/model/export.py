"""Write a loaded model out as a Hugging Face folder or as this project's orbax model folder."""

from __future__ import annotations

import os

from orca_jax.errors import UserError
from orca_jax.model.loading import LoadedModel

FORMATS = ("hf", "orbax")


def export_model(model: LoadedModel, target, fmt: str = "hf") -> None:
    """`hf`: config.json + model.safetensors + tokenizer files (transformers loads it);
    `orbax`: model_config.json + tokenizer/ + params/ (see orca_jax.model.orbax_io)."""
    target = os.fspath(target)
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise UserError(f"{target}: already exists and is not an empty folder")
    if fmt == "orbax":
        from orca_jax.model.orbax_io import save_model

        save_model(target, model.config, model.params, model.tokenizer)
        return
    from orca_jax.model.hf_convert import save_hf_folder

    tok = model.tokenizer
    token_ids = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
    # generate() in transformers stops at every id listed here, end-of-turn tokens included.
    generation = {"bos_token_id": tok.bos_id, "eos_token_id": tok.stop_ids or tok.eos_id, "pad_token_id": tok.pad_id}
    save_hf_folder(target, model.config, model.params, extra_config=token_ids, generation_config=generation)
    tok.save(target)
