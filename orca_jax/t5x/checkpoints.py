"""t5x checkpoints <-> orca-jax models (`orca-jax convert --from T5X_DIR`, `--format t5x`).

A t5x checkpoint holds a train state whose params["decoder"] is an orca-jax parameter tree
(model.py), plus optimizer state. The model's shape and tokenizer are not in it, so they sit
next to it, as in an orca-jax model folder:

    T5X_DIR/model_config.json, tokenizer/   written by `decoder_only_model(model_dir=...)` (gin/t5x)
                                             and by `--format t5x`
    T5X_DIR/checkpoint_<step>/              t5x's: orbax `state/` (t5x's default) or legacy `checkpoint`

Reading takes the parameters of the latest step (or of the `checkpoint_<step>` folder named),
in either format, without rebuilding the optimizer that wrote them. Writing saves a t5x train
state at step 0 with a fresh Adafactor state (gin/t5x's optimizer) through t5x's own checkpoint
manager, so `INITIAL_CHECKPOINT_PATH = 'T5X_DIR/checkpoint_0'` starts t5x training from it.
"""

from __future__ import annotations

import os
import re

import flax
import jax
import numpy as np

from orca_jax.errors import UserError
from orca_jax.model.loading import LoadedModel
# t5x.model registers gin configurables: imported on use, so that reading a checkpoint works
# after `train` has locked gin in the same process
from orca_jax.t5x import PARAMS_ROOT, import_t5x

_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")


def _steps(directory: str) -> dict[int, str]:
    if not os.path.isdir(directory):
        return {}
    return {int(m.group(1)): os.path.join(directory, name) for name in os.listdir(directory)
            if (m := _STEP_DIR.match(name)) and os.path.isdir(os.path.join(directory, name))}


def is_t5x_dir(path: str) -> bool:
    """A t5x MODEL_DIR (checkpoint_<step>/ inside) or one checkpoint_<step>/ folder."""
    return bool(_steps(path)) or bool(_STEP_DIR.match(os.path.basename(os.path.normpath(path))))


def _checkpoint_dir(path: str) -> tuple[str, str]:
    """(checkpoint_<step> folder, the folder holding model_config.json) for a MODEL_DIR or step folder."""
    path = os.path.abspath(path)
    if _STEP_DIR.match(os.path.basename(path)):
        return path, os.path.dirname(path)
    steps = _steps(path)
    if not steps:
        raise UserError(f"{path}: no checkpoint_<step>/ folder (not a t5x MODEL_DIR)")
    return steps[max(steps)], path


def _read_state(checkpoint_dir: str) -> dict:
    if os.path.isfile(os.path.join(checkpoint_dir, "checkpoint")):  # legacy t5x format (msgpack + tensorstore)
        return import_t5x("t5x.checkpoints").load_t5x_checkpoint(checkpoint_dir, restore_dtype=np.float32)
    if os.path.isdir(os.path.join(checkpoint_dir, "state")):  # t5x's orbax format
        import orbax.checkpoint as ocp

        return ocp.PyTreeCheckpointer().restore(os.path.join(checkpoint_dir, "state"))
    raise UserError(f"{checkpoint_dir}: neither a t5x orbax checkpoint (state/) nor a legacy one (checkpoint)")


def load_t5x_model(path: str) -> LoadedModel:
    """config, fp32 params and tokenizer of a t5x checkpoint of the adapted decoder."""
    from orca_jax.model.decoder import init_params
    from orca_jax.data.tokenizer import load_tokenizer
    from orca_jax.model.orbax_io import CONFIG_FILE, TOKENIZER_DIR, read_model_config

    checkpoint_dir, model_dir = _checkpoint_dir(path)
    if not os.path.isfile(os.path.join(model_dir, CONFIG_FILE)):
        raise UserError(f"{model_dir}: no {CONFIG_FILE} next to the t5x checkpoints (gin/t5x's decoder_only_model "
                        f"writes it with model_dir = %MODEL_DIR; or copy it and {TOKENIZER_DIR}/ from the model the "
                        "run started from)")
    config = read_model_config(model_dir)
    state = _read_state(checkpoint_dir)
    params = state.get("target", {}).get(PARAMS_ROOT)
    if params is None:
        raise UserError(f"{checkpoint_dir}: no target/{PARAMS_ROOT} parameters (not a checkpoint of "
                        "orca_jax.t5x.model.T5XDecoder)")
    expected = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
    found = {jax.tree_util.keystr(k): np.asarray(v, np.float32) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    for key, spec in jax.tree_util.tree_leaves_with_path(expected):
        name = jax.tree_util.keystr(key)
        if name not in found or found[name].shape != spec.shape:
            got = "missing" if name not in found else f"shape {list(found[name].shape)}"
            raise UserError(f"{checkpoint_dir}: parameter {PARAMS_ROOT}{name} is {got}; {CONFIG_FILE} "
                            f"expects shape {list(spec.shape)}")
    params = jax.tree_util.tree_map_with_path(lambda k, _: found[jax.tree_util.keystr(k)], expected)
    return LoadedModel(config, params, load_tokenizer(os.path.join(model_dir, TOKENIZER_DIR)), "t5x", checkpoint_dir)


def save_t5x_checkpoint(model: LoadedModel, directory: str) -> str:
    """Write `directory`/checkpoint_0 (a t5x train state: the params, a fresh Adafactor state) and
    the model's config and tokenizer; returns the checkpoint folder."""
    import jax.numpy as jnp

    from orca_jax.model.orbax_io import write_model_metadata
    from orca_jax.t5x.model import logical_axis_rules, logical_factor_rules, t5x_model

    adafactor, checkpoints = import_t5x("t5x.adafactor"), import_t5x("t5x.checkpoints")
    partitioning, utils = import_t5x("t5x.partitioning"), import_t5x("t5x.utils")
    directory = os.path.abspath(directory)
    if os.path.isdir(directory) and os.listdir(directory):
        raise UserError(f"{directory}: exists and is not empty")
    t5x = t5x_model(model.config, model.tokenizer, adafactor.Adafactor(logical_factor_rules=logical_factor_rules()))
    partitioner = partitioning.PjitPartitioner(num_partitions=1, logical_axis_rules=logical_axis_rules())
    shapes = {"decoder_input_tokens": (1, 1), "decoder_target_tokens": (1, 1)}
    initializer = utils.TrainStateInitializer(t5x.optimizer_def, t5x.get_initial_variables, shapes, partitioner,
                                              input_types={k: jnp.int32 for k in shapes})
    fresh = initializer.from_scratch(jax.random.key(0))  # the optimizer state's structure and shardings
    shardings = jax.tree_util.tree_map(lambda x: x.sharding, flax.core.unfreeze(fresh.params)[PARAMS_ROOT])
    params = jax.tree_util.tree_map(lambda x, s: jax.device_put(np.asarray(x, np.float32), s),
                                    flax.core.unfreeze(model.params), shardings)
    state = fresh.replace_params(flax.core.freeze({PARAMS_ROOT: params}))
    os.makedirs(directory, exist_ok=True)
    write_model_metadata(directory, model.config, model.tokenizer)
    manager = checkpoints.OrbaxCheckpointManagerInterface(directory, state, partitioner)
    manager.save(state)
    manager.wait_until_finished()
    manager.close()
    return _checkpoint_dir(directory)[0]
