"""The small run files in gin/runs (tiny*.gin) parse, with the macros a user gives on the command line."""

import glob
import os

import gin
import pytest

import trainer_support as ts
from orca_jax.train import gin_setup

RUNS = sorted(glob.glob(os.path.join(ts.REPO, "gin", "runs", "tiny*.gin")))  # paper runs: issue 9 tests
# the data macros a user gives: one mixture, or one per stage of a curriculum
SINGLE = ["MODEL_DIR = '/tmp/m'", "MIXTURE_OR_TASK_NAME = 'toy'"]
STAGED = ["MODEL_DIR = '/tmp/m'", "STAGE_1_MIXTURE = 'a'", "STAGE_2_MIXTURE = 'b'"]


@pytest.mark.parametrize("path", RUNS, ids=os.path.basename)
def test_run_file_parses_and_configures_training(path):
    gin_setup.parse([path], STAGED if "stage" in os.path.basename(path) else SINGLE)
    assert gin.query_parameter("train.model_dir") is not None
    assert gin.query_parameter("%SEQUENCE_LENGTH") > 0 and gin.query_parameter("%BATCH_SIZE") > 0
