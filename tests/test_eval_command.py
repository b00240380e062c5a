"""`orca-jax eval` end to end: a saved tiny model, SmolLM2 on real BBH, re-scoring, bad input."""

import json
import os

import pytest

from eval_tiny_model import tiny_model
from orca_jax.cli import main
from orca_jax.model.hf_convert import save_hf_folder

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
OUTPUTS = ("predictions.jsonl", "summary.json", "summary.md", "summary.csv")


def _data_dir(tmp_path):
    os.makedirs(tmp_path / "data" / "bbh")
    os.makedirs(tmp_path / "data" / "gsm8k")
    os.makedirs(tmp_path / "data" / "mc")
    (tmp_path / "data" / "bbh" / "navigate.json").write_text(json.dumps({"examples": [
        {"input": "Take 1 step. Options:\n- Yes\n- No", "target": "No"}]}))
    (tmp_path / "data" / "gsm8k" / "test.jsonl").write_text(json.dumps(
        {"question": "Ann has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"}) + "\n")
    (tmp_path / "data" / "mc" / "science.jsonl").write_text(json.dumps(
        {"question": "Which is a gas?", "choices": ["ice", "steam", "rock"], "answer": 1}) + "\n")
    return str(tmp_path / "data")


def test_eval_command_on_a_saved_model_then_rescore(tmp_path, capsys):
    config, params, tokenizer = tiny_model()
    model_dir = str(tmp_path / "model")
    save_hf_folder(model_dir, config, params)
    tokenizer.save(model_dir)
    data, out = _data_dir(tmp_path), str(tmp_path / "out")
    assert main(["eval", "--model", model_dir, "--benchmarks", "bbh:navigate,gsm8k,mc", "--data_dir", data,
                 "--out", out, "--batch_size", "3", "--max_new_tokens", "6", "--variant", "step_by_step", "--system", "cautious"]) == 0
    printed = capsys.readouterr().out
    assert "| BIG-Bench Hard |" in printed and "| GSM8K |" in printed and "| Multiple choice |" in printed
    for name in OUTPUTS:
        assert os.path.getsize(os.path.join(out, name)) > 0
    records = [json.loads(line) for line in open(os.path.join(out, "predictions.jsonl"))]
    assert [(r["benchmark"], r["target"]) for r in records] == [("bbh", "No"), ("gsm8k", "5"), ("mc", "B")]
    assert "Let's think step by step." in records[0]["prompt"]
    assert records[0]["prompt"].startswith("<|im_start|>system\nYou are Orca, an AI language model created by Microsoft.")
    assert records[2]["num_choices"] == 3 and "correct_flexible" in records[1]
    summary = json.load(open(os.path.join(out, "summary.json")))

    # Someone else's outputs: only benchmark, task, prediction and target per line.
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text(json.dumps({"benchmark": "gsm8k", "task": "test", "prediction": "5 apples.\n#### 5", "target": "5"}) + "\n"
                      + json.dumps({"benchmark": "bbh", "task": "navigate", "prediction": "So the answer is No.", "target": "No"}) + "\n")
    assert main(["eval", "--predictions", str(theirs), "--out", str(tmp_path / "re")]) == 0
    rescored = json.load(open(tmp_path / "re" / "summary.json"))
    assert rescored["gsm8k"]["average"] == 100.0 and rescored["bbh"]["tasks"]["navigate"]["accuracy"] == 100.0
    assert main(["eval", "--predictions", os.path.join(out, "predictions.jsonl"), "--out", str(tmp_path / "again")]) == 0
    rescored = json.load(open(tmp_path / "again" / "summary.json"))
    assert rescored == {b: e for b, e in summary.items() if b not in ("protocol", "data")}
    assert summary["protocol"]["name"] == "official" and summary["protocol"]["system"] == "cautious"
    assert set(summary["data"]["files"]) == {"bbh/navigate.json", "gsm8k/test.jsonl", "mc/science.jsonl"}


@pytest.mark.parametrize("args, message", [
    (["--model", "m", "--data_dir", "{tmp}/nope"], "--data_dir {tmp}/nope: no such directory"),
    (["--model", "m", "--data_dir", "{data}", "--benchmarks", "bbh,mmlu"], "unknown benchmark 'mmlu'"),
    (["--model", "m", "--data_dir", "{data}", "--benchmarks", "agieval:lsat"], "unknown agieval task 'lsat'"),
    (["--model", "m", "--data_dir", "{data}", "--benchmarks", "bbh:snarks"], "unknown bbh task 'snarks' (known: navigate)"),
    (["--model", "m", "--data_dir", "{data}", "--benchmarks", "agieval:lsat-ar"], "agieval/lsat-ar.jsonl: missing"),
    (["--predictions", "{tmp}/bad.jsonl"], "bad.jsonl:2: field 'prediction': missing"),
    (["--data_dir", "{data}"], "--model is required"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    data = _data_dir(tmp_path)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"benchmark": "bbh", "task": "t", "prediction": "x", "target": "y"})
                                        + "\n" + json.dumps({"benchmark": "bbh", "task": "t", "target": "y"}) + "\n")
    fill = lambda s: s.format(tmp=tmp_path, data=data)
    assert main(["eval", "--out", str(tmp_path / "o")] + [fill(a) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert fill(message) in err and len(err.splitlines()) == 1


@pytest.mark.slow  # about 100 s of CPU: GGUF dequantization and two compilations of a 30-layer model
@pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data is absent")
def test_smollm2_on_every_bbh_task(smollm2_gguf, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["eval", "--model", smollm2_gguf, "--benchmarks", "bbh", "--data_dir", DATA, "--out", out,
                 "--limit", "2", "--batch_size", "27", "--max_new_tokens", "8"]) == 0
    printed = capsys.readouterr().out
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert len(summary["bbh"]["tasks"]) == 27 and all(t["n"] == 2 for t in summary["bbh"]["tasks"].values())
    assert f"**{summary['bbh']['average']:.2f}**" in printed
    records = [json.loads(line) for line in open(os.path.join(out, "predictions.jsonl"))]
    assert len(records) == 54 and sum(bool(r["prediction"].strip()) for r in records) >= 50
    assert records[0]["prompt"].startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n")
