"""One way to build a run (issue 15 item 6): `train` and `plan` build their run from the same
gin through `run_build`, so the plan's memory and FLOPs describe the state and step `train`
runs; the FLOP count is the one MFU uses; a binding the run needs is one line in both."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import trainer_support as ts
from orca_jax import planning
from orca_jax.cli import main
from orca_jax.train import curriculum, run_build
from orca_jax.train.monitor import train_flops_per_token

GIB = 1024 ** 3
# what the tiny run is given beyond TINY_GIN, so that a plan that re-read the bindings its own
# way (dropping microbatches, the loss or the stages) would build another run
EXTRA = """
train.num_microbatches = 2
LossConfig.z_loss = 1e-4
train.stages = [@first/Stage(), @second/Stage()]
first/Stage.name = 'first'
first/Stage.mixture_or_task_name = 'toy'
first/Stage.train_steps = 3
second/Stage.name = 'second'
second/Stage.mixture_or_task_name = 'toy'
second/Stage.epochs = 2.0
"""


class Built(Exception):
    """Stops `train` once its layout is built: nothing here needs it to train."""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the layout train builds, the layout plan builds, the plan) for one gin configuration."""
    tmp_path = tmp_path_factory.mktemp("run")
    layouts = []
    real_build = run_build.Layout.build

    def recording_build(config, model=None):
        layouts.append(real_build(config, model))
        return layouts[-1]

    def stop(config):
        raise Built

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_build.Layout, "build", recording_build)
        patch.setattr(run_build, "stage_data", stop)
        ts.parse_tiny_gin(tmp_path, EXTRA)
        with pytest.raises(Built):
            curriculum.train()
        plan = planning.make_plan()
    train_layout, plan_layout = layouts
    return train_layout, plan_layout, plan


def test_plan_builds_the_run_train_builds(built):
    train_layout, plan_layout, plan = built
    assert train_layout.config == plan_layout.config
    config = train_layout.config
    assert (config.num_microbatches, config.loss.z_loss) == (2, 1e-4)
    assert [(s.name, s.train_steps, s.epochs) for s in config.stages] == [("first", 3, None), ("second", None, 2.0)]
    assert plan_layout.model == train_layout.model == config.model
    assert dict(plan_layout.mesh.shape) == dict(train_layout.mesh.shape) == plan.mesh
    assert plan_layout.batch_keys() == train_layout.batch_keys()
    (train_abstract, train_shardings), (plan_abstract, plan_shardings) = train_layout.state, plan_layout.state
    assert jax.tree_util.tree_structure(train_abstract) == jax.tree_util.tree_structure(plan_abstract)
    assert jax.tree_util.tree_leaves(train_abstract) == jax.tree_util.tree_leaves(plan_abstract)
    assert jax.tree_util.tree_leaves(train_shardings) == jax.tree_util.tree_leaves(plan_shardings)
    assert [(s.name, s.mixture) for s in plan.stages] == [("first", "toy"), ("second", "toy")]
    assert plan.stages[0].steps == 3 and plan.num_microbatches == 2


def test_plan_memory_is_the_state_train_holds(built):
    train_layout, _, plan = built
    abstract, _ = train_layout.state
    # one device holds all of it
    nbytes = lambda tree: sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree))
    assert plan.devices == 1
    assert plan.params_gib * GIB == nbytes(abstract.params)
    assert plan.optimizer_gib * GIB == nbytes(abstract.opt_state)


def test_plan_flops_are_the_count_mfu_uses(built):
    train_layout, _, plan = built
    config = train_layout.config
    tokens = config.batch_size * config.sequence_length
    assert plan.model_flops_per_step == train_layout.flops_per_token() * tokens
    assert train_layout.flops_per_token() == train_flops_per_token(config.model, config.sequence_length)
    # 6ND counts every weight matrix once: the input embedding is a gather, not a matmul, so it
    # counts only as the tied head; the head counts when separate (norm scales are not matrices)
    abstract, _ = train_layout.state
    matrices = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(abstract.params) if x.ndim >= 2)
    embedding = 0 if config.model.tie_word_embeddings else config.model.vocab_size * config.model.hidden_size
    assert plan.six_nd_flops_per_step == 6 * (matrices - embedding) * tokens


def test_a_required_binding_left_out_is_the_same_line_in_train_and_plan(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")  # plan sets its device flags for this process only
    path = tmp_path / "run.gin"
    path.write_text("include 'models/tiny.gin'\ntrain.model_dir = %MODEL_DIR\ntrain.model = @model_config()\n"
                    "train.mixture_or_task_name = 'toy'\ntrain.train_steps = 1\ntrain.batch_size = 8\n")
    errors = {}
    for command in ("train", "plan"):
        argv = [command, f"--gin_file={path}", f"--gin.MODEL_DIR='{tmp_path / 'model'}'"]
        assert main(argv + (["--devices=1"] if command == "plan" else [])) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        errors[command] = err.split(": error: ", 1)[1]
    assert errors["train"] == errors["plan"]
    assert errors["train"] == "gin config: Required bindings for `train` not provided in config: ['sequence_length']"
