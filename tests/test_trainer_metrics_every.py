"""Metrics read back to the host every N steps: the run is the one that reads them every step
(params, TensorBoard scalars, summary, skipped steps), only the reads are fewer."""

import pytest

import trainer_support as ts
from orca_jax.train import curriculum, trainer

# Throughput depends on the clock, not on the run
TIMED = ("tokens_per_second", "mfu")


@pytest.fixture
def reads(monkeypatch):
    """The steps each HostMetrics.read brought back, read by read."""
    seen = []
    read = trainer.HostMetrics.read

    def spy(self):
        seen.append([step for step, _, _ in self._pending])
        return read(self)
    monkeypatch.setattr(trainer.HostMetrics, "read", spy)
    return seen


@pytest.fixture
def stop_checks(monkeypatch):
    """How often the loop asked whether to stop (across processes: an allgather each time)."""
    calls = []
    agreed = trainer.GracefulStop.agreed

    def spy(self):
        calls.append(1)
        return agreed(self)
    monkeypatch.setattr(trainer.GracefulStop, "agreed", spy)
    return calls


def run(tmp_path, name, every):
    summary = curriculum.train(model_dir=str(tmp_path / name), loader_fn=ts.poisoned_loader(5),
                               skip_nonfinite=True, metrics_every_steps=every)
    scalars = {k: v for k, v in ts.read_scalars(tmp_path / name / "tensorboard").items() if k not in TIMED}
    for timed in ("wall_seconds",):
        summary.pop(timed)
        for stage in summary["stages"]:
            stage.pop(timed)
    return summary, scalars


def test_reading_every_4_steps_gives_the_every_step_run(tmp_path, reads, stop_checks):
    # A NaN at step 5 (skipped) so that skipped-step counting goes through the batched read too.
    ts.parse_tiny_gin(tmp_path, "TRAIN_STEPS = 16\nCheckpointer.save_every_steps = 8\nMonitor.log_every = 8\n")
    every_step, every_step_scalars = run(tmp_path, "every_step", 1)
    assert reads == [[s] for s in range(1, 17)]
    reads.clear()
    stop_checks.clear()
    batched, batched_scalars = run(tmp_path, "batched", 4)
    # step 1: orbax saves a run's first step
    assert reads == [[1], [2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    # the stop signal is agreed on at those reads only (not at the stage's last step, which ends anyway)
    assert len(stop_checks) == len(reads) - 1

    assert batched == every_step  # params hash, final loss, tokens seen, skipped steps
    assert batched["stages"][0]["skipped_steps"] == 1
    assert batched_scalars == every_step_scalars
    assert [s for s, _ in batched_scalars["loss"]] == [8, 16] and "packing_efficiency" in batched_scalars
