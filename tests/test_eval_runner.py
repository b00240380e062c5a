"""Evaluation runs on a tiny random model: batching, output files, re-scoring."""

import csv
import json
import os
import subprocess
import sys

from eval_tiny_model import bbh_dir, tiny_model
from orca_jax.evaluation.benchmarks import load_examples
from orca_jax.evaluation.runner import evaluate, make_eval_fn, predict, rescore


def test_batched_generation_matches_one_at_a_time(tmp_path):
    config, params, tokenizer = tiny_model()
    examples = load_examples(bbh_dir(tmp_path), "bbh:navigate,bbh:word_sorting")
    one = predict(config, params, tokenizer, examples, batch_size=1, max_new_tokens=12, progress=False)
    batched = predict(config, params, tokenizer, examples, batch_size=3, max_new_tokens=12, progress=False)
    assert [r["prediction"] for r in batched] == [r["prediction"] for r in one]
    assert [r["id"] for r in batched] == [e.id for e in examples]  # benchmark order, not length order
    assert all(r["prediction"] for r in one)  # the random model did produce text


def test_evaluate_writes_consistent_outputs(tmp_path):
    config, params, tokenizer = tiny_model()
    out = tmp_path / "out"
    examples = load_examples(bbh_dir(tmp_path), "bbh:navigate,bbh:word_sorting", limit=2)
    summary = evaluate(config, params, tokenizer, examples, out_dir=str(out), system="You are Orca.",
                       batch_size=3, max_new_tokens=8, progress=False)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(r["task"], r["id"]) for r in records] == [("navigate", "navigate/0"), ("navigate", "navigate/1"),
                                                        ("word_sorting", "word_sorting/0"), ("word_sorting", "word_sorting/1")]
    for r in records:
        assert set(r) >= {"benchmark", "task", "id", "prompt", "prediction", "extracted", "target", "correct"}
        assert r["prompt"].startswith("<|im_start|>system\nYou are Orca.<|im_end|>\n<|im_start|>user\n")
        assert r["prompt"].endswith("<|im_start|>assistant\n")
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary) == {"bbh"} and set(summary["bbh"]["tasks"]) == {"navigate", "word_sorting"}
    for task, entry in summary["bbh"]["tasks"].items():
        rows = [r for r in records if r["task"] == task]
        assert entry["n"] == 2 and entry["accuracy"] == 100.0 * sum(r["correct"] for r in rows) / 2
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["task"], r["n"]) for r in rows] == [("navigate", "2"), ("word_sorting", "2"), ("average over 2 tasks", "4")]
    assert "| navigate | 2 |" in (out / "summary.md").read_text()
    # The same file re-scored without a model gives the same summary.
    assert rescore(str(out / "predictions.jsonl"), str(tmp_path / "rescored")) == summary
    # The trainer's hook: same predictions at a step, flat scalars for the metric writer.
    eval_fn = make_eval_fn(config, tokenizer, examples, str(tmp_path / "model_dir" / "eval"), system="You are Orca.",
                           batch_size=3, max_new_tokens=8, progress=False)
    scalars = eval_fn(params, 100)
    assert scalars == {"bbh/average": summary["bbh"]["average"], "bbh/navigate": summary["bbh"]["tasks"]["navigate"]["accuracy"],
                       "bbh/word_sorting": summary["bbh"]["tasks"]["word_sorting"]["accuracy"]}
    assert (tmp_path / "model_dir" / "eval" / "step_100" / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()


SHARDED_SCRIPT = r"""
import json, sys
import gin
sys.path.insert(0, sys.argv[1])
from eval_tiny_model import tiny_model
from orca_jax.evaluation.benchmarks import load_examples
from orca_jax.evaluation.runner import generate_texts, place_params, render_prompts
import jax

gin.parse_config("mesh_shape.data = 1\nmesh_shape.fsdp = 4\nmesh_shape.tensor = 2")
config, params, tokenizer = tiny_model()
prompts = render_prompts(tokenizer, load_examples(sys.argv[2], "bbh:navigate,bbh:word_sorting"), "", "zero_shot")
placed = place_params(config, params)
shardings = {str(x.sharding.spec) for x in jax.tree_util.tree_leaves(placed)}
kwargs = dict(batch_size=4, max_new_tokens=10, progress=False)
print(json.dumps({"devices": jax.device_count(), "shardings": sorted(shardings),
                  "sharded": generate_texts(config, placed, tokenizer, prompts, **kwargs),
                  "single": generate_texts(config, jax.device_put(params, jax.devices()[0]), tokenizer, prompts, **kwargs)}))
"""


def test_sharded_parameters_give_the_same_predictions(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, os.path.dirname(__file__), bbh_dir(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    assert any("fsdp" in s for s in out["shardings"]) and any("tensor" in s for s in out["shardings"])
    assert out["sharded"] == out["single"]
