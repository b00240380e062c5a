"""A NaN loss stops the run and keeps the last good checkpoint, or is skipped if configured."""

import os

import numpy as np
import pytest

import trainer_support as ts
from orca_jax.train import curriculum
from orca_jax.train.trainer import NonFiniteLossError


class PoisonedLoader:
    """The toy loader, with NaN loss weights in the batch of step `at` (1-based)."""

    def __init__(self, inner, at):
        self.inner, self.at, self.count = inner, at, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = dict(next(self.inner))
        self.count += 1
        if self.count == self.at:
            batch["loss_weights"] = np.full_like(batch["loss_weights"], np.nan)
        return batch

    def state(self):
        return {"inner": self.inner.state(), "count": self.count}

    def restore(self, state):
        self.inner.restore(state["inner"])
        self.count = state["count"]


def poisoned(name, **kwargs):
    return PoisonedLoader(ts.toy_loader(name, **kwargs), at=4)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    with pytest.raises(NonFiniteLossError, match="loss is nan .* at step 4; stopped, the last good checkpoint"):
        curriculum.train(model_dir=str(tmp_path / "run"), loader_fn=poisoned)
    saved = sorted(int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit())
    assert saved[-1] == 2  # nothing was saved at or after the bad step


def test_nan_loss_is_skipped_when_configured(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    summary = curriculum.train(model_dir=str(tmp_path / "run"), loader_fn=poisoned, skip_nonfinite=True)
    assert summary["final_step"] == 6 and summary["stages"][0]["skipped_steps"] == 1
    assert np.isfinite(summary["final_loss"])
