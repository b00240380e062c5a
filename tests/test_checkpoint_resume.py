"""A preempted or killed run resumes to exactly the parameters of an uninterrupted run
(done-means 2): params, optimizer state and data-loader state all come back."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import trainer_support as ts
from orca_jax.train import curriculum


def test_sigterm_saves_and_resume_matches_uninterrupted_run(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    reference = curriculum.train(model_dir=str(tmp_path / "reference"))
    assert reference["final_step"] == 6

    hook = ts.SigtermAt(3)
    first = curriculum.train(model_dir=str(tmp_path / "resumed"), eval_fn=hook, eval_every=1)
    assert first == {"preempted": True, "final_step": 3}
    # saved on SIGTERM although the periodic interval (2) did not fall on step 3
    assert os.path.isdir(tmp_path / "resumed" / "checkpoints" / "3")

    hook_after = ts.SigtermAt(-1)
    resumed = curriculum.train(model_dir=str(tmp_path / "resumed"), eval_fn=hook_after, eval_every=1)
    assert [s for s, _ in hook_after.seen] == [4, 5, 6]  # continued, did not restart
    assert resumed["params_sha256"] == reference["params_sha256"]
    assert resumed["stages"][0]["tokens_seen"] == reference["stages"][0]["tokens_seen"]
    on_disk = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert on_disk["params_sha256"] == reference["params_sha256"]
    # and the comparison has teeth: a different seed gives different parameters
    other = curriculum.train(model_dir=str(tmp_path / "other"), seed=1)
    assert other["params_sha256"] != reference["params_sha256"]


def _train_args(model_dir, steps):
    return ["train", f"--gin_file={model_dir}.gin", f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}",
            "--gin.Checkpointer.save_every_steps=1"]


@pytest.mark.slow
def test_sigkill_at_random_step_then_restart_matches_uninterrupted_run(tmp_path):
    steps = 12
    for name in ("reference", "killed"):
        (tmp_path / f"{name}.gin").write_text(ts.TINY_GIN)
    done = ts.run_cli(_train_args(tmp_path / "reference", steps))
    assert done.returncode == 0, done.stderr[-3000:]
    reference = json.loads((tmp_path / "reference" / "summary.json").read_text())

    kill_after = random.Random().randint(2, steps - 2)
    code = ts.cli_code(_train_args(tmp_path / "killed", steps))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ts.REPO, env=ts.cli_env(1),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if checkpoints.is_dir() and any(d.isdigit() and int(d) >= kill_after for d in os.listdir(checkpoints)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()

    restarted = ts.run_cli(_train_args(tmp_path / "killed", steps))
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["final_step"] == steps
    assert summary["params_sha256"] == reference["params_sha256"], f"killed after step {kill_after}"
