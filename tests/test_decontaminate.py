"""`orca-jax decontaminate`: benchmark questions planted in traces (verbatim, and with case,
spacing and punctuation changed) are found, 12 shared words are not 13, clean traces report
nothing, and --write_filtered keeps exactly the clean traces."""

import json
import os

from orca_jax.cli import main
from orca_jax.data.traces import Trace, read_traces, write_traces

NAVIGATE = ("If you follow these instructions, do you return to the starting point? Always face forward. "
            "Take 1 step backward. Take 9 steps left. Take 2 steps backward.\nOptions:\n- Yes\n- No")
SHORT_BBH = "Is the following sentence plausible? Joao Moutinho caught the screen pass."  # 10 words
TINY_BBH = "not ( True ) and ( True ) is"  # 5 words after punctuation goes: too short to check
GSM8K = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
         "muffins for her friends every day with four.")
LSAT_PASSAGE = ("A street entertainer juggles seven balls of different colours, one after another, "
                "in an order that follows several rules stated below.")
LSAT_QUESTION = "Which one of the following could be the order in which the balls are juggled?"


def _data_dir(root) -> str:
    os.makedirs(root / "bbh")
    os.makedirs(root / "agieval")
    os.makedirs(root / "gsm8k")
    (root / "bbh" / "navigate.json").write_text(json.dumps({"examples": [{"input": NAVIGATE, "target": "No"}]}))
    (root / "bbh" / "sports_understanding.json").write_text(json.dumps({"examples": [{"input": SHORT_BBH, "target": "no"}]}))
    (root / "bbh" / "boolean_expressions.json").write_text(json.dumps({"examples": [{"input": TINY_BBH, "target": "False"}]}))
    (root / "agieval" / "lsat-ar.jsonl").write_text(json.dumps(
        {"passage": LSAT_PASSAGE, "question": LSAT_QUESTION, "options": ["(A)red", "(B)blue"], "label": "A"}) + "\n")
    (root / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": GSM8K, "answer": "#### 18"}) + "\n")
    return str(root)


def _trace(key: str, user: str, answer: str = "Here is my answer.") -> Trace:
    return Trace(id=key, turns=[{"role": "user", "content": user}, {"role": "assistant", "content": answer}])


def _run(tmp_path, traces_dir, *extra) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["decontaminate", "--traces", str(traces_dir), "--benchmarks", "bbh,agieval:lsat-ar,gsm8k",
                 "--data_dir", _data_dir(tmp_path / "data"), "--out", str(report), *extra])
    return code, json.loads(report.read_text())


def test_planted_overlaps_are_found_and_filtered(tmp_path, capsys):
    traces = tmp_path / "traces"
    os.makedirs(traces)
    reformatted = GSM8K.upper().replace(" ", "\n  ").replace("'", "").replace(".", " .")  # case, spacing, punctuation
    twelve_words = " ".join(LSAT_QUESTION.split()[:12])
    write_traces(str(traces / "a.jsonl"), [
        _trace("pasted", "Please solve this. " + NAVIGATE + " Think first."),
        _trace("clean-1", "What is the capital of France?", "Paris."),
        _trace("in-answer", "Tell me a story.", "Once upon a time: " + reformatted),
        _trace("twelve", twelve_words + " (a different ending here)"),
        _trace("short", "Judge this: " + SHORT_BBH.lower()),
        _trace("tiny", TINY_BBH),
    ])
    code, report = _run(tmp_path, traces, "--write_filtered", str(tmp_path / "filtered"))
    assert code == 1
    bbh, agieval, gsm8k = (report["benchmarks"][b] for b in ("bbh", "agieval", "gsm8k"))
    assert (bbh["items"], bbh["checked"], bbh["too_short"], bbh["contaminated"]) == (3, 2, 1, 2)
    assert agieval["contaminated"] == 0  # 12 shared words are not a 13-gram
    assert gsm8k["contaminated"] == 1
    assert {e["trace_id"] for e in bbh["examples"]} == {"pasted", "short"}
    example = gsm8k["examples"][0]
    assert (example["item"], example["trace_id"]) == ("test/0", "in-answer")
    assert example["overlap"] in " ".join(GSM8K.lower().replace("'", "").replace(".", "").split())
    assert report["trace_files"][str(traces / "a.jsonl")] == {"traces": 6, "contaminated": 3, "written": 3}
    kept = [t.id for t in read_traces(str(tmp_path / "filtered" / "a.jsonl"))]
    assert kept == ["clean-1", "twelve", "tiny"]
    printed = capsys.readouterr().out
    assert "| gsm8k | 1 | 1 | 0 | 1 |" in printed and "trace in-answer" in printed


def test_clean_traces_report_nothing(tmp_path):
    traces = tmp_path / "traces"
    os.makedirs(traces)
    write_traces(str(traces / "clean.jsonl"), [_trace(f"t{i}", f"Question number {i} about the weather today?")
                                               for i in range(5)])
    code, report = _run(tmp_path, traces)
    assert code == 0
    assert all(b["contaminated"] == 0 and b["examples"] == [] for b in report["benchmarks"].values())
    assert report["trace_files"][str(traces / "clean.jsonl")] == {"traces": 5, "contaminated": 0}
