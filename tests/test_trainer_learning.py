"""A tiny model learns a small synthetic task through the whole trainer (done-means 5)."""

import math

import trainer_support as ts
from orca_jax.train import curriculum

STEPS = 120
THRESHOLD = 1.0  # nats per weighted token; a model that learned nothing sits near log(256) = 5.5


def test_tiny_model_loss_falls_below_threshold(tmp_path):
    ts.parse_tiny_gin(tmp_path, "learning_rate_schedule.peak_lr = 3e-3\nlearning_rate_schedule.warmup_steps = 10\n"
                                "Checkpointer.save_every_steps = 1000\n")
    losses = []
    summary = curriculum.train(model_dir=str(tmp_path / "run"), train_steps=STEPS,
                               eval_fn=lambda params, step: losses.append(step) or {}, eval_every=STEPS)
    assert losses == [STEPS]
    assert summary["final_loss"] < THRESHOLD, summary
    assert summary["stages"][0]["final_loss"] == summary["final_loss"]
    assert math.isfinite(summary["final_loss"])
