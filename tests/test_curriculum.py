"""Progressive learning: stage 2 starts from stage 1's final weights, and a run killed in
stage 2 resumes in stage 2 at the right step (done-means 3)."""

import json
import os

import gin

import trainer_support as ts
from orca_jax.train import curriculum
from orca_jax.train.curriculum import Stage


def stages():
    # Stage 2 warms up from lr 0 with fresh Adam moments: its first step leaves the weights
    # exactly as they came in, which lets the test see what stage 2 started from.
    return [Stage("assistant", "toy-1", train_steps=3),
            Stage("strong", "toy-2", train_steps=3, warmup_steps=2, carry_optimizer_state=False)]


def test_two_stages_hand_over_weights_and_resume_inside_stage_two(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    watch = ts.SigtermAt(-1)
    reference = curriculum.train(model_dir=str(tmp_path / "reference"), stages=stages(), eval_fn=watch,
                                 eval_every=1)
    stage_one, stage_two = reference["stages"]
    assert (stage_one["final_step"], stage_two["final_step"]) == (3, 6)
    sha_after = dict(watch.seen)
    assert sha_after[3] == stage_one["params_sha256"]
    assert sha_after[4] == stage_one["params_sha256"]  # stage 2's first step (lr 0) started there
    assert sha_after[5] != stage_one["params_sha256"]
    for k, name in enumerate(["assistant", "strong"]):
        on_disk = json.loads((tmp_path / "reference" / "stages" / f"{k}-{name}" / "summary.json").read_text())
        assert on_disk["params_sha256"] == reference["stages"][k]["params_sha256"]

    killed = ts.SigtermAt(5)
    assert curriculum.train(model_dir=str(tmp_path / "run"), stages=stages(), eval_fn=killed,
                            eval_every=1)["preempted"]
    resumed_watch = ts.SigtermAt(-1)
    resumed = curriculum.train(model_dir=str(tmp_path / "run"), stages=stages(), eval_fn=resumed_watch,
                               eval_every=1)
    assert [s for s, _ in resumed_watch.seen] == [6]  # stage 2, step 6: neither stage restarted
    assert resumed["params_sha256"] == reference["params_sha256"]
    assert [s["stage"] for s in resumed["stages"]] == ["assistant", "strong"]


def test_curriculum_gin_file_defines_the_stages(tmp_path):
    ts.parse_tiny_gin(tmp_path, "include 'runs/tiny_two_stage.gin'\nSTAGE_1_MIXTURE = 'toy-1'\n"
                                "STAGE_2_MIXTURE = 'toy-2'\n")
    configured = gin.query_parameter("train.stages")
    built = [ref.scoped_configurable_fn() for ref in configured]
    assert [(s.name, s.mixture_or_task_name) for s in built] == [("assistant", "toy-1"), ("strong", "toy-2")]
    assert built[1].carry_optimizer_state is False
    assert os.path.isfile(os.path.join(ts.REPO, "gin", "runs", "tiny_two_stage.gin"))


def test_epochs_run_the_loaders_steps_per_epoch_and_see_every_token(tmp_path):
    ts.parse_tiny_gin(tmp_path, "toy_loader.num_examples = 60\n")
    summary = curriculum.train(model_dir=str(tmp_path / "run"), train_steps=None, epochs=2)
    one_pass = ts.toy_loader("toy", seq_len=32, global_batch_size=8, seed=0, process_index=0, process_count=1,
                             num_examples=60, num_epochs=1)
    assert summary["final_step"] == 2 * sum(1 for _ in one_pass) > 0
    # two passes' worth of tokens: at most one batch per epoch more, since repeating data fills
    # the rows a single pass leaves empty in its last batch
    example_tokens = sum(len(ex["ids"]) for ex in ts.progression_examples(60, 0))
    assert 2 * example_tokens <= summary["tokens_seen"] < 2 * example_tokens + 2 * 8 * 32
