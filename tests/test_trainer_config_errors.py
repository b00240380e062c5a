"""Bad configuration fails before anything compiles, with one clear line (done-means 6)."""

import pytest

import trainer_support as ts
from orca_jax.cli import main
from orca_jax.model import decoder
from orca_jax.train import trainer


@pytest.fixture
def no_compiling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("reached model init / train-step compilation")
    monkeypatch.setattr(decoder, "init_params", refuse)
    monkeypatch.setattr(trainer, "ShardedStep", refuse)


@pytest.mark.parametrize("binding, expected", [
    ("train.not_a_parameter = 1", "not_a_parameter"),
    ("no_such_configurable.x = 1", "no_such_configurable"),
    ("train.seed = %UNBOUND_MACRO", "macro UNBOUND_MACRO is used but never set"),
    ("mesh_shape.data = 3", "needs 3 devices, but 1 are available"),
    ("mesh_shape.data = 0", "sizes must be positive"),
    ("train.num_microbatches = 3", "batch size 8 must be divisible"),
    ("train.metrics_every_steps = 0", "train.metrics_every_steps = 0: expected a positive number of steps"),
    ("MIXTURE_OR_TASK_NAME = 'missing'", "no prepared data for task 'missing'"),
    ("train.loader_fn = @data_loader\ndata_loader.cache_root = '/nonexistent/cache'", "/nonexistent/cache"),
])
def test_bad_config_is_one_clear_error_before_compiling(tmp_path, capsys, no_compiling, binding, expected):
    path = tmp_path / "run.gin"
    path.write_text(ts.TINY_GIN + binding + "\n")
    rc = main(["train", f"--gin_file={path}", f"--gin.MODEL_DIR='{tmp_path / 'model'}'"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and len(err) < 400, err  # not gin's dump of the whole config
    assert err.startswith("orca-jax train: error:") and expected in err, err


def test_t5x_style_bindings_on_the_command_line(tmp_path, capsys, no_compiling):
    path = tmp_path / "run.gin"
    path.write_text(ts.TINY_GIN)
    rc = main(["train", f"--gin_file={path}", f"--gin.MODEL_DIR='{tmp_path}'", "--gin.mesh_shape.tensor=2"])
    assert rc == 2
    assert "the fixed axes (2 devices) do not divide the 1 available devices" in capsys.readouterr().err


def test_batch_not_divisible_by_data_axes_of_a_real_mesh(tmp_path):
    path = tmp_path / "run.gin"
    path.write_text(ts.TINY_GIN + "BATCH_SIZE = 6\nmesh_shape.data = 4\n")
    proc = ts.run_cli(["train", f"--gin_file={path}", f"--gin.MODEL_DIR='{tmp_path / 'model'}'"], devices=4)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "orca-jax train: error: batch size 6 must be divisible by the data-parallel shards (4, mesh "
        "{'data': 4, 'fsdp': 1, 'tensor': 1}) times the microbatches (1)"]
    assert not (tmp_path / "model" / "checkpoints").exists()
