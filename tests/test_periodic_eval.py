"""Benchmark evaluation during training, configured from gin (`train.periodic_eval`)."""

import json
import os
import re
import subprocess
import sys

import pytest

import trainer_support as ts
from eval_tiny_model import bbh_dir, tiny_model, tiny_tokenizer
from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE
from orca_jax.errors import UserError
from orca_jax.evaluation.benchmarks import load_examples
from orca_jax.evaluation.periodic import PeriodicEval
from orca_jax.evaluation.runner import evaluate, summary_scalars
from orca_jax.model.config import get_preset
from orca_jax.model.loading import load_model
from orca_jax.model.orbax_io import restore_params
from orca_jax.train import curriculum

EVAL_SETTINGS = dict(batch_size=2, max_new_tokens=6)


def make_eval_fn(periodic: PeriodicEval, tmp_path):
    """The hook as train() builds it, for settings that fail before any parameters are needed."""
    return periodic.make_eval_fn(get_preset("tiny"), tiny_tokenizer(), str(tmp_path / "eval"))


def periodic_gin(tmp_path) -> str:
    """Gin lines for a 4-step run evaluated every 2 steps (a checkpoint at each) on 2 examples per task."""
    tokenizer_dir = str(tmp_path / "tokenizer")
    tiny_tokenizer().save(tokenizer_dir)
    return f"""
TRAIN_STEPS = 4
model_config.vocab_size = 512  # a row for each of the tiny tokenizer's ids
train.tokenizer_path = '{tokenizer_dir}'
train.periodic_eval = @PeriodicEval()
PeriodicEval.every_steps = 2
PeriodicEval.data_dir = '{bbh_dir(tmp_path / "benchmarks")}'
PeriodicEval.max_per_task = 2
PeriodicEval.system = 'cautious'
PeriodicEval.batch_size = {EVAL_SETTINGS["batch_size"]}
PeriodicEval.max_new_tokens = {EVAL_SETTINGS["max_new_tokens"]}
"""


def test_gin_configured_eval_scores_the_checkpoint_of_each_eval_step(tmp_path):
    ts.parse_tiny_gin(tmp_path, periodic_gin(tmp_path))
    run = tmp_path / "run"
    curriculum.train(model_dir=str(run))

    curve = [json.loads(line) for line in (run / "eval" / "curve.jsonl").read_text().splitlines()]
    assert [line["step"] for line in curve] == [2, 4]
    model = load_model(str(run))
    examples = load_examples(str(tmp_path / "benchmarks"), "bbh", limit=2)
    predictions = {}
    for line in curve:
        step = line.pop("step")
        # the same evaluation, rerun by hand on the parameters checkpointed at that step
        params = restore_params(str(run / "checkpoints" / str(step) / "params"), model.config)
        reference = tmp_path / "reference" / str(step)
        summary = evaluate(model.config, params, model.tokenizer, examples, out_dir=str(reference),
                           system=CAUTIOUS_SYSTEM_MESSAGE, progress=False, **EVAL_SETTINGS)
        assert line == summary_scalars(summary)
        assert set(line) == {"bbh/average", "bbh/navigate", "bbh/word_sorting"}
        written = run / "eval" / f"step_{step}"
        predictions[step] = (written / "predictions.jsonl").read_text()
        assert predictions[step] == (reference / "predictions.jsonl").read_text()
        assert json.loads((written / "summary.json").read_text()) == summary
    # the two steps' parameters answer differently, so matching them step for step means something
    assert predictions[2] != predictions[4]
    assert CAUTIOUS_SYSTEM_MESSAGE in json.loads(predictions[2].splitlines()[0])["prompt"]


def test_tasks_restrict_the_evaluation(tmp_path):
    config, params, tokenizer = tiny_model()
    periodic = PeriodicEval(every_steps=1, data_dir=bbh_dir(tmp_path), tasks=("word_sorting",), max_new_tokens=2)
    scalars = periodic.make_eval_fn(config, tokenizer, str(tmp_path / "eval"))(params, 1)
    assert set(scalars) == {"bbh/average", "bbh/word_sorting"}


@pytest.mark.parametrize("settings, named", [
    (dict(tasks=("navigate", "no_such_task")), "no_such_task"),
    (dict(every_steps=0), "every_steps"),
    (dict(benchmarks=("mc",)), "mc"),
])
def test_bad_settings_name_what_is_wrong(tmp_path, settings, named):
    with pytest.raises(UserError, match=named):
        make_eval_fn(PeriodicEval(**{"every_steps": 1, "data_dir": bbh_dir(tmp_path), **settings}), tmp_path)


def test_empty_or_missing_data_dir_is_named(tmp_path):
    os.makedirs(tmp_path / "no_tasks" / "bbh")
    os.makedirs(tmp_path / "empty")
    for name in ("no_tasks", "empty", "missing"):
        data_dir = str(tmp_path / name)
        with pytest.raises(UserError, match=re.escape(data_dir)):
            make_eval_fn(PeriodicEval(every_steps=1, data_dir=data_dir), tmp_path)


def test_eval_fn_and_periodic_eval_together_is_an_error(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    periodic = PeriodicEval(every_steps=1, data_dir=bbh_dir(tmp_path))
    with pytest.raises(UserError, match="not both"):
        curriculum.train(model_dir=str(tmp_path / "run"), periodic_eval=periodic, eval_fn=lambda params, step: {})


def test_periodic_eval_without_a_tokenizer_asks_for_one(tmp_path):
    ts.parse_tiny_gin(tmp_path)
    periodic = PeriodicEval(every_steps=1, data_dir=bbh_dir(tmp_path))
    with pytest.raises(UserError, match="train.tokenizer_path"):
        curriculum.train(model_dir=str(tmp_path / "run"), periodic_eval=periodic)


REGISTERED_SCRIPT = r"""
import sys
import gin
from orca_jax.train import gin_setup
assert "orca_jax.evaluation.periodic" not in sys.modules
gin_setup.parse(["runs/tiny.gin"], ["MODEL_DIR = '/tmp/m'", "MIXTURE_OR_TASK_NAME = 'toy'"] + sys.argv[1:])
print(gin.query_parameter("train.periodic_eval").scoped_configurable_fn())
"""


def test_base_gin_example_resolves_as_orca_jax_train_parses_it():
    """The commented example in gin/runs/base.gin, uncommented, in a process that imported
    nothing but what `orca-jax train` imports."""
    with open(os.path.join(ts.REPO, "gin", "runs", "base.gin")) as f:
        example = [line[len("#   "):] for line in f if line.startswith("#   ") and "eriodic" in line]
    assert len(example) == 5
    result = subprocess.run([sys.executable, "-c", REGISTERED_SCRIPT, *example], cwd=ts.REPO, env=ts.cli_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "every_steps=100" in result.stdout and "system='cautious'" in result.stdout
