"""The papers' protocols: the lenient BBH rule beside the official one, AGIEval's official
zero-shot rule beside its few-shot-CoT rule, averages that count what they average, and
`eval --protocol orca2` end to end on files fetched from a local mirror."""

import csv
import io
import json
import os
import re

import pytest

from benchmark_fixtures import write_mirror
from eval_tiny_model import tiny_model
from orca_jax.cli import main
from orca_jax.evaluation.benchmarks import AGIEVAL_ENGLISH_MC
from orca_jax.evaluation.extraction import bbh_lenient, bbh_options
from orca_jax.evaluation.protocols import BBH_MULTIPLE_CHOICE
from orca_jax.evaluation.scoring import score_prediction, summarize
from orca_jax.evaluation.tables import summary_csv, summary_markdown
from orca_jax.model.hf_convert import save_hf_folder

DATE_QUESTION = "What is the date tomorrow?\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937\n(C) 01/04/1938"
YES_NO = {"A": "Yes", "B": "No"}


@pytest.mark.parametrize("text, target, options, official, lenient", [
    # the cases: right option however written, right under the lenient rule only
    ("(A) Yes", "(A)", YES_NO, False, True),
    ("**(A)**", "(A)", YES_NO, False, True),
    ("A", "(A)", YES_NO, False, True),
    ("Valid", "valid", {}, False, True),
    ("So the answer is **(A)**.", "(A)", YES_NO, False, True),
    ("The knight moves twice.\nAnswer: A", "(A)", YES_NO, False, True),
    ("So the answer is 12/25/1937.", "(B)", bbh_options(DATE_QUESTION), False, True),  # the option's text
    ("So the answer is (A) Yes.", "Yes", {}, False, True),  # a lettered reply to a "- Yes / - No" question
    ("Yes, because every step returns.", "Yes", {}, False, True),
    # a wrong option is wrong, however written
    ("So the answer is (B).", "(A)", YES_NO, False, False),
    ("(B) No", "(A)", YES_NO, False, False),
    ("Invalid", "valid", {}, False, False),
    ("No, it is not.", "Yes", {}, False, False),
    ("So the answer is 12/11/1937.", "(B)", bbh_options(DATE_QUESTION), False, False),
    # naming two options names none; an article is not an option letter
    ("So the answer is (A) or (B).", "(A)", YES_NO, False, False),
    ("A knight moves in an L.", "(A)", YES_NO, False, False),
    # free-form targets: normalized equality, not a prefix
    ("So the answer is ] ] )", "] ]", {}, False, False),
    ("so the answer is Apple Kiwi", "apple kiwi", {}, False, True),
    # the official rule's own successes stay successes under both
    ("So the answer is (A).", "(A)", YES_NO, True, True),
    ("So the answer is valid.", "valid", {}, True, True),
    # a BBH target that is an option's text (movie_recommendation has a few): the letter counts
    ("So the answer is (A).", "Monsters, Inc", {"A": "Monsters, Inc", "B": "Up"}, False, True),
])
def test_lenient_bbh_rule_beside_the_official_one(text, target, options, official, lenient):
    score = score_prediction("bbh", "t", text, target, options=options)
    assert (score.correct, score.correct_second) == (official, lenient)
    assert bbh_lenient(text, target, options)[1] is lenient


def _agieval_zero_shot(prediction: str) -> str:
    """AGIEval's src/post_process.py, post_process() for an English single-answer dataset in a
    zero-shot setting: find_first_capital_letter over the whole prediction."""
    for c in prediction:
        if c in {"A", "B", "C", "D", "E", "F"}:
            return c
    return ""


def _agieval_few_shot_cot(prediction: str) -> str:
    """AGIEval's parse_few_shot_qa_single_answer(string, 'few-shot-CoT', 'en')."""
    lines = [line for line in prediction.split("\n") if line.strip() != ""]
    last = lines[-1] if lines else prediction
    match = re.search("answer is .*?([A-G])", last)
    return match.group(1) if match else _agieval_zero_shot(prediction)


AGIEVAL_OUTPUTS = [
    "Among A through E, the answer is B",
    " B",
    "(C) because the passage says so",
    "**D**",
    "Both options fail except (C).",
    "the answer is (E)",
    "Reasoning first.\nTherefore, among A through E, the answer is (D).",
    "The answer is (E).\nI hope this helps.",
    "none of them",
    "",
]


@pytest.mark.parametrize("text", AGIEVAL_OUTPUTS)
def test_agieval_official_column_is_agievals_zero_shot_rule(text):
    score = score_prediction("agieval", "lsat-ar", text, "B")
    assert score.extracted == _agieval_zero_shot(text)
    assert score.correct == (_agieval_zero_shot(text) == "B")
    assert score.extracted_second == _agieval_few_shot_cot(text)
    assert score.correct_second == (_agieval_few_shot_cot(text) == "B")


def test_agieval_rules_disagree_where_they_should():
    score = score_prediction("agieval", "lsat-ar", "Among A through E, the answer is B", "B")
    assert (score.extracted, score.correct, score.format_ok) == ("A", False, False)  # official reads "A"
    assert (score.extracted_second, score.correct_second) == ("B", True)
    assert score_prediction("agieval", "lsat-ar", " (B) since ...", "B").format_ok


def _rows(benchmark, task, n, correct, second=None, rule=None):
    rows = []
    for i in range(n):
        row = {"benchmark": benchmark, "task": task, "correct": i < correct, "format_ok": i == 0}
        if rule:
            row[f"correct_{rule}"] = i < second
        rows.append(row)
    return rows


def test_averages_count_the_tasks_they_average():
    records = (_rows("agieval", "lsat-ar", 4, 1, 2, "few_shot_rule") + _rows("agieval", "sat-math", 2, 2, 0, "few_shot_rule")
               + _rows("agieval", "math", 10, 10) + _rows("bbh", "navigate", 2, 0, 2, "lenient")
               + _rows("bbh", "snarks", 4, 1, 3, "lenient"))
    summary = summarize(records)
    agieval, bbh = summary["agieval"], summary["bbh"]
    assert agieval["averaged_tasks"] == ["lsat-ar", "sat-math"] and agieval["n"] == 6  # math listed, not counted
    assert agieval["average"] == pytest.approx((25 + 100) / 2)
    assert agieval["average_few_shot_rule"] == pytest.approx((50 + 0) / 2)
    assert agieval["format_ok"] == pytest.approx((25 + 50) / 2)
    assert bbh["average_lenient"] == pytest.approx((100 + 75) / 2) and bbh["n"] == 6
    assert bbh["tasks"]["snarks"]["accuracy_lenient"] == 75.0 and "accuracy_lenient" not in agieval["tasks"]["math"]
    markdown = summary_markdown(summary)
    assert "| **average over 2 tasks (English MC)** | 6 | **62.50** | 37.50 | **25.00** |" in markdown
    assert "| task | n | accuracy | format OK | lenient accuracy |" in markdown
    assert "format OK: the reply contains \"the answer is\"" in markdown  # what format OK means, per benchmark
    rows = list(csv.DictReader(io.StringIO(summary_csv(summary))))
    average = next(r for r in rows if r["benchmark"] == "agieval" and r["task"].startswith("average"))
    assert (average["n"], average["second_rule"], float(average["accuracy_second_rule"])) == ("6", "few_shot_rule", 25.0)


def test_orca2_protocol_on_fetched_files(tmp_path, capsys):
    config, params, tokenizer = tiny_model()
    model_dir = str(tmp_path / "model")
    save_hf_folder(model_dir, config, params)
    tokenizer.save(model_dir)
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main(["eval", "--model", model_dir, "--protocol", "orca2", "--data_mirror", write_mirror(tmp_path / "mirror"),
                 "--data_cache", str(cache), "--out", str(out), "--batch_size", "32", "--max_new_tokens", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["name"] == "orca2" and summary["protocol"]["variant"] == "plain"
    assert "arXiv:2311.11045" in summary["protocol"]["source"]
    assert set(summary) == {"protocol", "data", "bbh", "agieval", "gsm8k"}
    assert summary["bbh"]["averaged_tasks"] == list(BBH_MULTIPLE_CHOICE)  # the MCQ tasks, no free-form ones
    assert summary["agieval"]["averaged_tasks"] == list(AGIEVAL_ENGLISH_MC)  # math not in the protocol
    assert all("accuracy_lenient" in t for t in summary["bbh"]["tasks"].values())
    assert "average_few_shot_rule" in summary["agieval"] and "average_flexible" in summary["gsm8k"]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    bbh = records[0]
    # empty system message, the bare question (no answer-format instruction), options kept for the lenient rule
    assert bbh["prompt"].startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nQuestion 0 about")
    assert "answer is" not in bbh["prompt"] and bbh["options"] == {"A": "red", "B": "blue"}
    markdown = (out / "summary.md").read_text()
    assert "Protocol **orca2**" in markdown and "BIG-Bench Hard average_lenient" in markdown
    assert "| **average over 23 tasks** | 23 |" in markdown
    # every file the run read is named with its pinned source and checksum
    fetched = summary["data"]["files"]
    assert len(fetched) == 27 + 9 + 1 and all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in fetched.values())
    assert fetched["gsm8k/test.jsonl"]["source"].startswith("https://raw.githubusercontent.com/openai/grade-school-math/")
    assert os.path.exists(cache / "SOURCES.jsonl")
    capsys.readouterr()
