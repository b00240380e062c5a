"""Checkpoints both ways: a t5x checkpoint of the adapted decoder (written by t5x's own checkpoint
manager) converted with `orca-jax convert` gives t5x's logits in orca-jax, and an orca-jax model
converted with `--format t5x` gives orca-jax's logits once t5x's own restore reads it (1e-5)."""

import numpy as np
import pytest

pytest.importorskip("t5x.checkpoints")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from t5x import adafactor, checkpoints, partitioning, utils  # noqa: E402

from orca_jax.cli import main  # noqa: E402
from orca_jax.model import decoder  # noqa: E402
from orca_jax.model.config import get_preset  # noqa: E402
from orca_jax.model.loading import load_model  # noqa: E402
from orca_jax.model.orbax_io import save_model  # noqa: E402
from orca_jax.synthetic.tokenizer import train_tokenizer  # noqa: E402
from orca_jax.t5x.model import decoder_only_model, logical_axis_rules, logical_factor_rules  # noqa: E402

CONFIG = get_preset("tiny").replace(vocab_size=320)
TOKENS = np.array([[5, 17, 42, 9, 100, 3, 77, 8, 250, 11, 64, 2]], np.int32)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tokenizer"))
    train_tokenizer(["Add two and three. Two plus three is five."] * 4, vocab_size=300).save(folder)
    return folder


def _t5x(model_dir, tokenizer_dir):
    model = decoder_only_model(config=CONFIG, tokenizer_path=tokenizer_dir, model_dir=model_dir,
                               optimizer_def=adafactor.Adafactor(logical_factor_rules=logical_factor_rules()))
    partitioner = partitioning.PjitPartitioner(num_partitions=1, logical_axis_rules=logical_axis_rules())
    shapes = {"decoder_input_tokens": TOKENS.shape, "decoder_target_tokens": TOKENS.shape}
    initializer = utils.TrainStateInitializer(model.optimizer_def, model.get_initial_variables, shapes, partitioner,
                                              input_types={k: jnp.int32 for k in shapes})
    return model, partitioner, initializer


def _t5x_logits(model, params):
    """t5x's logits for TOKENS (its slot j+1 reads token j: compare with orca-jax's slot j)."""
    batch = {"decoder_target_tokens": TOKENS, "decoder_input_tokens": np.pad(TOKENS[:, :-1], ((0, 0), (1, 0)))}
    return np.asarray(model._compute_logits(params, batch))[:, 1:]


def _orca_logits(loaded):
    positions = np.arange(TOKENS.shape[1])[None]
    return np.asarray(decoder.apply(loaded.config, loaded.params, TOKENS, positions, np.ones_like(TOKENS)))[:, :-1]


def test_t5x_checkpoint_to_orca_jax(tmp_path, tokenizer_dir):
    model_dir = str(tmp_path / "t5x_run")
    model, partitioner, initializer = _t5x(model_dir, tokenizer_dir)
    state = initializer.from_scratch(jax.random.key(3))  # t5x's own initialisation
    manager = checkpoints.OrbaxCheckpointManagerInterface(model_dir, state, partitioner)  # as t5x's train saves
    manager.save(state)
    manager.wait_until_finished()
    manager.close()

    assert main(["convert", "--from", model_dir, "--to", str(tmp_path / "orca"), "--format", "orbax"]) == 0
    converted = load_model(str(tmp_path / "orca"))
    np.testing.assert_allclose(_orca_logits(converted), _t5x_logits(model, state.params), atol=1e-5)


def test_orca_jax_model_to_t5x_checkpoint(tmp_path, tokenizer_dir):
    from orca_jax.data.tokenizer import load_tokenizer

    params = decoder.init_params(CONFIG, jax.random.key(4))
    save_model(tmp_path / "orca", CONFIG, params, load_tokenizer(tokenizer_dir))
    out = str(tmp_path / "t5x")
    assert main(["convert", "--from", str(tmp_path / "orca"), "--to", out, "--format", "t5x"]) == 0

    model, partitioner, initializer = _t5x(None, tokenizer_dir)
    path = f"{out}/checkpoint_0"  # restored as t5x's train restores INITIAL_CHECKPOINT_PATH
    restored, manager = utils.create_checkpoint_manager_and_restore(
        initializer, partitioner, utils.RestoreCheckpointConfig(path=path, mode="specific", dtype="float32"), path,
        None, model_dir=str(tmp_path / "next_stage"), use_orbax=True)
    manager.close()
    assert int(restored.step) == 0
    np.testing.assert_allclose(_t5x_logits(model, restored.params), _orca_logits(load_model(str(tmp_path / "orca"))),
                               atol=1e-5)
    # ... and back: the t5x folder converts to the same parameters.
    assert main(["convert", "--from", out, "--to", str(tmp_path / "back"), "--format", "orbax"]) == 0
    for a, b in zip(jax.tree_util.tree_leaves(load_model(str(tmp_path / "back")).params),
                    jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)
