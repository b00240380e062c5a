"""This project's model folders: HF-style config + tokenizer + orbax parameter checkpoint.

An exported model folder (written by `save_model`, `orca-jax convert --format orbax`, and the
trainer's exports):

    DIR/model_config.json     DecoderConfig.to_hf_config() (transformers config.json layout)
    DIR/tokenizer/            Tokenizer.save(): tokenizer.json + tokenizer_config.json (with the
                              chat template a trainer's data was rendered with)
    DIR/vocabulary.json       the vocabulary stated: the tokenizer's size, the model's rows, the
                              padding rows between them (ids no text tokenizes to) and the special tokens' ids
    DIR/params/               the parameter pytree, orbax StandardCheckpointer (fp32)

A trainer MODEL_DIR, which `load_model_folder` also reads (latest finalized step):

    MODEL_DIR/model_config.json
    MODEL_DIR/tokenizer/
    MODEL_DIR/checkpoints/<step>/params     orbax CheckpointManager item "params" (StandardSave)
    MODEL_DIR/checkpoints/<step>/...        other items (optimizer state, progress) are ignored here
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from orca_jax.data.tokenizer import Tokenizer, load_tokenizer
from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig

CONFIG_FILE = "model_config.json"
VOCABULARY_FILE = "vocabulary.json"
TOKENIZER_DIR = "tokenizer"
PARAMS_DIR = "params"
CHECKPOINTS_DIR = "checkpoints"


def save_model(directory, config: DecoderConfig, params, tokenizer: Tokenizer) -> None:
    """Write an exported model folder (see module docstring); `directory` may exist but not `params/`."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))  # orbax needs absolute paths
    os.makedirs(directory, exist_ok=True)
    write_model_metadata(directory, config, tokenizer)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, PARAMS_DIR), params)
    checkpointer.wait_until_finished()


def write_model_metadata(directory, config: DecoderConfig, tokenizer: Tokenizer) -> None:
    """`model_config.json` and `tokenizer/`: what a trainer writes once into MODEL_DIR."""
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config.to_hf_config(), f, indent=2)
    tokenizer.save(os.path.join(directory, TOKENIZER_DIR))
    with open(os.path.join(directory, VOCABULARY_FILE), "w", encoding="utf-8") as f:
        json.dump(vocabulary_statement(config, tokenizer), f, indent=2, ensure_ascii=False)


def vocabulary_statement(config: DecoderConfig, tokenizer: Tokenizer) -> dict:
    """How the model's embedding rows map to the tokenizer: rows past the tokenizer's last id
    are padding (a vocabulary rounded up, or set larger than the tokenizer) that no text
    tokenizes to."""
    size = tokenizer.vocab_size
    return {
        "tokenizer_vocab_size": size,
        "model_vocab_size": config.vocab_size,
        "padding_rows": max(0, config.vocab_size - size),
        "padding_ids": [size, config.vocab_size - 1] if config.vocab_size > size else None,
        "special_tokens": {t.content: i for i, t in sorted(tokenizer.backend.get_added_tokens_decoder().items()) if t.special},
        "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id,
    }


def is_model_folder(directory) -> bool:
    return os.path.isfile(os.path.join(directory, CONFIG_FILE))


def load_model_folder(directory) -> tuple[DecoderConfig, dict, Tokenizer, str]:
    """(config, params, tokenizer, params_path) from an exported folder or a trainer MODEL_DIR."""
    directory = os.path.abspath(os.fspath(directory))
    config = read_model_config(directory)
    tokenizer = load_tokenizer(os.path.join(directory, TOKENIZER_DIR))
    params_path = _params_path(directory)
    return config, restore_params(params_path, config), tokenizer, params_path


def read_model_config(directory: str) -> DecoderConfig:
    """The DecoderConfig of `directory`/model_config.json."""
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise UserError(f"{directory}: no {CONFIG_FILE} (not a model folder of this project)")
    try:
        with open(config_path, encoding="utf-8") as f:
            return DecoderConfig.from_hf_config(json.load(f))
    except json.JSONDecodeError as e:
        raise UserError(f"{config_path}:{e.lineno}: invalid JSON: {e.msg}") from None


def _params_path(directory: str) -> str:
    exported = os.path.join(directory, PARAMS_DIR)
    if os.path.isdir(exported):
        return exported
    checkpoints = os.path.join(directory, CHECKPOINTS_DIR)
    if os.path.isdir(checkpoints):
        import orbax.checkpoint as ocp

        # finalized steps, as CheckpointManager.latest_step counts them, without opening a manager
        # (a read-only one logs two warnings)
        steps = ocp.path.step.checkpoint_steps(checkpoints)
        if steps:
            return os.path.join(checkpoints, str(max(steps)), PARAMS_DIR)
        raise UserError(f"{checkpoints}: no finished checkpoint step")
    raise UserError(f"{directory}: neither {PARAMS_DIR}/ nor {CHECKPOINTS_DIR}/<step>/{PARAMS_DIR}")


def restore_params(path: str, config: DecoderConfig) -> dict:
    """Restore a params checkpoint as fp32 arrays, checked against the shapes `config` implies.

    Through the item's handler, not a Checkpointer: a trainer checkpoint's `params` item has no
    step metadata file of its own (the step directory has it), which a Checkpointer warns about."""
    import orbax.checkpoint as ocp
    from etils import epath

    from orca_jax.model.decoder import init_params

    if not os.path.isdir(path):
        raise UserError(f"{path}: missing parameter checkpoint")
    expected = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
    handler = ocp.StandardCheckpointHandler()
    try:
        metadata = handler.metadata(epath.Path(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"{path}: not an orbax checkpoint: {e}") from None
    found = _tree_shapes(getattr(metadata, "item_metadata", metadata))
    wanted = {name: tuple(s.shape) for name, s in _flatten(expected).items()}
    for name, shape in wanted.items():
        if name not in found:
            raise UserError(f"{path}: missing parameter {name!r} expected by {CONFIG_FILE}")
        if tuple(found[name]) != shape:
            raise UserError(f"{path}: parameter {name!r} has shape {list(found[name])}, "
                            f"expected {list(shape)} from {CONFIG_FILE}")
    device = jax.devices()[0]
    target = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, np.float32, sharding=jax.sharding.SingleDeviceSharding(device)),
        expected)
    return handler.restore(epath.Path(path), args=ocp.args.StandardRestore(target))


def _name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _flatten(tree) -> dict:
    return {_name(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _tree_shapes(metadata_tree) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(metadata_tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {_name(k): tuple(v.shape) for k, v in leaves}
