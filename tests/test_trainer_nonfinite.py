"""A NaN loss stops the run and keeps the last good checkpoint, or is skipped if configured."""

import os

import numpy as np
import pytest

import trainer_support as ts
from orca_jax.train import curriculum
from orca_jax.train.trainer import NonFiniteLossError


def saved_steps(model_dir):
    return sorted(int(d) for d in os.listdir(model_dir / "checkpoints") if d.isdigit())


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    with pytest.raises(NonFiniteLossError, match="loss is nan .* at step 4; stopped, the last good checkpoint"):
        curriculum.train(model_dir=str(tmp_path / "run"), loader_fn=ts.poisoned_loader(4))
    assert saved_steps(tmp_path / "run")[-1] == 2  # nothing was saved at or after the bad step


def test_nan_found_by_a_later_read_still_names_its_step_and_blocks_later_checkpoints(tmp_path):
    # Metrics read at steps 1 and 3 (checkpoints), 4 (every 4) and 6 (checkpoint): the NaN of
    # step 5 is only seen at step 6's read, which must come before step 6's checkpoint is written.
    ts.parse_tiny_gin(tmp_path, "Checkpointer.save_every_steps = 3\nMonitor.log_every = 4\n"
                                "train.metrics_every_steps = 4\nTRAIN_STEPS = 8\n")
    with pytest.raises(NonFiniteLossError, match="loss is nan .* at step 5; stopped"):
        curriculum.train(model_dir=str(tmp_path / "run"), loader_fn=ts.poisoned_loader(5))
    assert saved_steps(tmp_path / "run") == [1, 3]


def test_nan_loss_is_skipped_when_configured(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    summary = curriculum.train(model_dir=str(tmp_path / "run"), loader_fn=ts.poisoned_loader(4),
                               skip_nonfinite=True)
    assert summary["final_step"] == 6 and summary["stages"][0]["skipped_steps"] == 1
    assert np.isfinite(summary["final_loss"])
