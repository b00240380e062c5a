"""The quickstart at its reduced (CI) size, run as the CLI runs it: every output is
there and consistent with the others (accuracies re-scored from the predictions,
caches erased as configured and prompted as the evaluation prompts, checkpoints loadable, a
real PNG)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from log_lines import loud_lines

from orca_jax.data.traces import read_traces
from orca_jax.evaluation.runner import rescore
from orca_jax.pipelines.quickstart import PRESETS
from orca_jax.pipelines.synthetic_experiment import ERASED
from orca_jax.synthetic.families import FAMILIES

CI = PRESETS["ci"]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("quickstart"))
    proc = subprocess.run([sys.executable, "-m", "orca_jax.cli", "quickstart", "--out", out, "--preset", "ci"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| average |" in proc.stdout or "**average**" in proc.stdout
    for stream in ("stdout", "stderr"):
        with open(f"{out}.{stream}", "w") as f:
            f.write(getattr(proc, stream))
    return out


def test_terminal_table_names_its_split(out_dir):
    stdout = open(out_dir + ".stdout").read()
    assert f"Accuracy (%) on the in_distribution split ({CI.eval_per_family} new instances per family" in stdout


def test_quickstart_logs_no_warning_or_error(out_dir):
    """On a CPU, no TensorFlow CUDA probing and no orbax warnings on its checkpoint loads."""
    stderr = open(out_dir + ".stderr").read()
    assert loud_lines(stderr) == [], stderr[-3000:]


def test_traces_and_caches(out_dir):
    weights = dict(CI.family_weights)
    sizes = {"assistant_orca1": CI.assistant_per_family, "strong_orca2": CI.strong_per_family,
             "answers_only": CI.assistant_per_family + CI.strong_per_family}
    for stem in sizes:
        traces = list(read_traces(os.path.join(out_dir, "traces", f"{stem}.jsonl")))
        per_family = {name: sum(t.task == name for t in traces) for name in FAMILIES}
        assert per_family == {name: sizes[stem] * weights.get(name, 1) for name in FAMILIES}
        meta = json.load(open(os.path.join(out_dir, "cache", f"traces_{stem}", "metadata.json")))
        assert meta["num_examples"] + meta["skipped"] == len(traces)
        assert meta["erasing_policy"] == ("cautious" if stem in ERASED else None)


def test_runs_have_checkpoints_logs_and_stage_summaries(out_dir):
    for name, n_stages in (("student", 2), ("shallow", 1)):
        run = os.path.join(out_dir, "runs", name)
        assert os.listdir(os.path.join(run, "checkpoints"))
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(run, "tensorboard")))
        assert len(os.listdir(os.path.join(run, "stages"))) == n_stages
        summary = json.load(open(os.path.join(run, "summary.json")))
        assert summary["final_step"] == sum(CI.stage_steps)


@pytest.mark.parametrize("split, suffix", [("held_out", ""), ("in_distribution", "_in_distribution")])
def test_results_agree_with_predictions(out_dir, split, suffix):
    results = json.load(open(os.path.join(out_dir, "results.json")))
    columns = results[f"{split}_accuracy"]
    assert len(columns) == 2
    for (column, accuracies), name in zip(columns.items(), ("shallow", "student")):
        predictions = os.path.join(out_dir, "eval", name + suffix, "predictions.jsonl")
        assert sum(1 for _ in open(predictions)) == CI.eval_per_family * len(FAMILIES)
        rescored = rescore(predictions)["bbh"]
        assert set(accuracies) == set(FAMILIES) | {"average"}
        for task in FAMILIES:
            assert accuracies[task] == pytest.approx(rescored["tasks"][task]["accuracy"])
        assert accuracies["average"] == pytest.approx(np.mean([accuracies[t] for t in FAMILIES]))
    if split == "in_distribution":
        shallow, student = columns.values()
        assert results["student_beats_shallow"] == (student["average"] > shallow["average"])
        assert results["gain_in_distribution"] == pytest.approx({t: student[t] - shallow[t] for t in student})
    markdown = open(os.path.join(out_dir, "results.md")).read()
    assert all(column in markdown for column in columns) and all(task in markdown for task in FAMILIES)
    assert results["seconds"]["total"] > 0


def _user_turn(prompt: str) -> str:
    """The user message of a rendered ChatML prompt."""
    return prompt.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]


def test_evaluation_prompts_are_not_in_any_trace(out_dir):
    """In-distribution instances are drawn at the training levels, so they could repeat a
    training question; the quickstart leaves those out."""
    trained = {}
    for stem in ("assistant_orca1", "strong_orca2", "answers_only"):
        for trace in read_traces(os.path.join(out_dir, "traces", f"{stem}.jsonl")):
            trained.setdefault(trace.task, set()).add(trace.turns[0]["content"])
    for split, suffix in (("in_distribution", "_in_distribution"), ("held_out", "")):
        for line in open(os.path.join(out_dir, "eval", "student" + suffix, "predictions.jsonl")):
            record = json.loads(line)
            assert _user_turn(record["prompt"]) not in trained[record["task"]]


def test_erased_training_prompts_are_the_evaluation_prompts(out_dir):
    """Orca 2 trains under the erased (cautious) system message and evaluates under it: the
    prompt tokens of every erased training example equal what the evaluation sent, tokenized
    the evaluation's way, with the question swapped in."""
    from orca_jax.data.cache import ExampleCache
    from orca_jax.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(os.path.join(out_dir, "tokenizer"))
    sent = json.loads(next(open(os.path.join(out_dir, "eval", "student", "predictions.jsonl"))))["prompt"]
    sent_question = _user_turn(sent)
    for stem in ERASED:
        evaluation_prompts = {tuple(tokenizer.encode(sent.replace(sent_question, trace.turns[0]["content"]),
                                                     add_bos=False))
                              for trace in read_traces(os.path.join(out_dir, "traces", f"{stem}.jsonl"))}
        cache = ExampleCache(os.path.join(out_dir, "cache", f"traces_{stem}"))  # without traces too long to fit
        assert len(cache) > 0
        for i in range(len(cache)):
            example = cache.example(i)
            prompt = example["ids"][:int(np.argmax(example["loss_weights"] > 0))]
            assert tuple(prompt.tolist()) in evaluation_prompts


def test_step_diagnostics_follow_from_the_predictions(out_dir):
    from orca_jax.synthetic.step_diagnostics import diagnose, read_references

    results = json.load(open(os.path.join(out_dir, "results.json")))
    assert sorted(results["families"]["serial"] + results["families"]["control"]) == sorted(FAMILIES)
    for split, suffix, data in (("in_distribution", "_in_distribution", "data_in_distribution"),
                                ("held_out", "", "data")):
        for name in ("student", "shallow"):
            diagnostics = results["step_diagnostics"][split][name]
            assert set(diagnostics) == set(FAMILIES)
            records = [json.loads(line) for line in open(os.path.join(out_dir, "eval", name + suffix, "predictions.jsonl"))]
            for task, summary in diagnostics.items():
                references = read_references(os.path.join(out_dir, "eval", data), task)
                rows = [r for r in records if r["task"] == task]
                kinds = [diagnose(r["prediction"], references[int(r["id"].split("/")[1])])["kind"] for r in rows]
                assert summary["n"] == len(rows) == CI.eval_per_family
                assert len(summary["step_accuracy"]) == max(len(r) for r in references)
                assert summary["all_steps_right"] == pytest.approx(100.0 * kinds.count(None) / len(rows))
                for kind, share in summary["first_error"].items():
                    assert share == pytest.approx(100.0 * kinds.count(kind) / len(rows))


def test_accuracy_curves_during_training(out_dir):
    results = json.load(open(os.path.join(out_dir, "results.json")))
    total = sum(CI.stage_steps)
    expected_steps = list(range(CI.eval_every_steps, total + 1, CI.eval_every_steps))
    for name in ("student", "shallow"):
        curve = results["eval_curves"][name]
        assert [point["step"] for point in curve] == expected_steps
        assert curve == [json.loads(line) for line in open(os.path.join(out_dir, "runs", name, "eval", "curve.jsonl"))]
        for point in curve:
            assert set(point) == {"step", "bbh/average"} | {f"bbh/{task}" for task in FAMILIES}
            predictions = os.path.join(out_dir, "runs", name, "eval", f"step_{point['step']}", "predictions.jsonl")
            assert sum(1 for _ in open(predictions)) == CI.curve_per_family * len(FAMILIES)
            assert point["bbh/average"] == pytest.approx(rescore(predictions)["bbh"]["average"])


def test_training_curves_png(out_dir):
    import matplotlib.image

    image = matplotlib.image.imread(os.path.join(out_dir, "training_curves.png"))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    assert image.std() > 0  # something was drawn
