"""gin/t5x/stage.gin under t5x's own train.py: two curriculum stages chained through
INITIAL_CHECKPOINT_PATH (stage 2 starts from stage 1's parameters and step), and the result
converts back to an orca-jax model. Slow: two t5x runs (about 20 s of CPU each, plus start-up)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("t5x.train")

from orca_jax.synthetic.tokenizer import train_tokenizer  # noqa: E402
from orca_jax.t5x.checkpoints import load_t5x_model  # noqa: E402
from tests.test_t5x_trainer import _traces  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stage(tmp_path, name, mixture, steps, initial):
    command = [sys.executable, "-m", "t5x.train", "--gin_search_paths=gin/t5x", "--gin_file=stage.gin",
               f"--gin.MODEL_DIR='{tmp_path / name}'", f"--gin.INITIAL_CHECKPOINT_PATH={initial}",
               f"--gin.MIXTURE_OR_TASK_NAME='{mixture}'", f"--gin.TRAIN_STEPS={steps}",
               f"--gin.DATA_DIR='{tmp_path / 'data'}'", f"--gin.TOKENIZER_PATH='{tmp_path / 'tokenizer'}'",
               "--gin.TASK_FEATURE_LENGTHS={'targets': 128}", "--gin.BATCH_SIZE=4",
               "--gin.curriculum.model_config.vocab_size=320", "--gin.utils.SaveCheckpointConfig.period=4"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow
def test_two_stages_chain_through_initial_checkpoint_path(tmp_path):
    single, multi = _traces()
    (tmp_path / "data").mkdir()
    for name, records in (("sums", single), ("counts", multi)):
        (tmp_path / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "data" / "mixtures.json").write_text(json.dumps({"stage": {"traces_sums": 1, "traces_counts": 1}}))
    train_tokenizer([json.dumps(r) for r in single + multi], vocab_size=300).save(str(tmp_path / "tokenizer"))

    _stage(tmp_path, "stage_1", "t5x_stage", 4, "None")
    _stage(tmp_path, "stage_2", "t5x_traces_counts", 8, f"'{tmp_path / 'stage_1' / 'checkpoint_4'}'")

    # Stage 2 resumed at step 4 with stage 1's parameters, then trained on.
    assert sorted(os.listdir(tmp_path / "stage_2"))[:2] == ["checkpoint_4", "checkpoint_8"]
    end_of_1 = load_t5x_model(str(tmp_path / "stage_1" / "checkpoint_4")).params
    start_of_2 = load_t5x_model(str(tmp_path / "stage_2" / "checkpoint_4")).params
    end_of_2 = load_t5x_model(str(tmp_path / "stage_2")).params  # the latest step
    for a, b, c in zip(*(jax.tree_util.tree_leaves(p) for p in (end_of_1, start_of_2, end_of_2))):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(jax.tree_util.tree_leaves(end_of_1),
                                                         jax.tree_util.tree_leaves(end_of_2)))
