"""Gin that does not ignore what the user set (issue 18 item 2): a command-line macro or binding
the run does not read is an error naming what it reads instead, and a mistyped name is one line
with the closest valid name."""

import pytest

from orca_jax.cli import main
from orca_jax.train import curriculum, gin_setup

STAGED = ["--gin_file=runs/tiny_two_stage.gin", "--gin.MODEL_DIR='/tmp/unused'",
          "--gin.STAGE_1_MIXTURE='a'", "--gin.STAGE_2_MIXTURE='b'"]
SINGLE = ["--gin_file=runs/tiny.gin", "--gin.MODEL_DIR='/tmp/unused'", "--gin.MIXTURE_OR_TASK_NAME='a'"]


def one_line_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("binding, uses", [
    ("--gin.TRAIN_STEPS=20", "set STAGE_1_STEPS / STAGE_2_STEPS instead"),
    ("--gin.train.train_steps=20", "set STAGE_1_STEPS / STAGE_2_STEPS instead"),
    ("--gin.EPOCHS=2", "set STAGE_1_EPOCHS / STAGE_2_EPOCHS instead"),
    ("--gin.MIXTURE_OR_TASK_NAME='x'", "set STAGE_1_MIXTURE / STAGE_2_MIXTURE instead"),
])
def test_single_run_setting_on_a_curriculum_names_the_stage_macros(capsys, binding, uses):
    err = one_line_error(capsys, ["train", *STAGED, binding])
    assert "curriculum (train.stages)" in err and uses in err, err


def test_stage_macros_are_what_the_curriculum_reads():
    gin_setup.parse(["runs/tiny_two_stage.gin"], [b[len("--gin."):] for b in STAGED[1:]] + ["STAGE_1_STEPS=20"])
    assert [stage.train_steps for stage in curriculum.RunConfig().stages] == [20, 100]


@pytest.mark.parametrize("argv, suggestion", [
    (["train", *SINGLE, "--gin.TRAIN_STEP=3"], "no binding of this run uses macro TRAIN_STEP; did you mean TRAIN_STEPS?"),
    (["train", *SINGLE, "--gin.trian.seed=3"], "No configurable matching 'trian'"),
    (["train", *SINGLE, "--gin.train.train_step=3"], "did you mean train_steps?"),
    (["train", *SINGLE, "--gin.Checkpointer.save_every=3"], "did you mean save_every_steps?"),
    (["train", *SINGLE, "--gin.train.seed=%SEDE"], "macro SEDE is used but never set: give --gin.SEDE=VALUE, or did you mean SEED?"),
    (["plan", *STAGED, "--devices=1", "--gin.train.model=@modle_config()"], "did you mean model_config?"),
    (["prepare", "--task=t", "--gin=register_trace_task.template='plain'"], "did you mean register_trace_tasks?"),
])
def test_mistyped_name_is_one_line_with_the_closest_valid_name(capsys, argv, suggestion):
    err = one_line_error(capsys, argv)
    assert suggestion in err and len(err) < 300, err
    if "trian" in err:
        assert err.endswith("did you mean train?"), err
