"""Benchmark readers on the official files, the generic MC format, prompts, and bad input."""

import json
import os
import re

import pytest

from orca_jax.errors import UserError
from orca_jax.evaluation.benchmarks import AGIEVAL_ENGLISH_MC, Example, load_examples
from orca_jax.evaluation.extraction import bbh_options
from orca_jax.evaluation.prompts import chat_messages, user_message
from orca_jax.evaluation.scoring import read_predictions, score_prediction

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data is absent")
BBH_TASKS = (  # the official 27 (Suzgun et al., 2022)
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation", "multistep_arithmetic_two",
    "navigate", "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects",
    "ruin_names", "salient_translation_error_detection", "snarks", "sports_understanding",
    "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
    "web_of_lies", "word_sorting",
)


def _counts(examples):
    counts = {}
    for e in examples:
        counts[e.task] = counts.get(e.task, 0) + 1
    return counts


@needs_data
def test_bbh_counts():
    counts = _counts(load_examples(DATA, "bbh"))
    assert set(counts) == set(BBH_TASKS) and len(BBH_TASKS) == 27
    # Published sizes: 250 per task except these three.
    assert {t: n for t, n in counts.items() if n != 250} == {"causal_judgement": 187, "penguins_in_a_table": 146, "snarks": 178}
    assert sum(counts.values()) == 6511


@needs_data
def test_agieval_counts_and_labels():
    examples = load_examples(DATA, "agieval")
    assert _counts(examples) == {
        "aqua-rat": 254, "logiqa-en": 651, "lsat-ar": 230, "lsat-lr": 510, "lsat-rc": 269,
        "sat-math": 220, "sat-en": 206, "sat-en-without-passage": 206, "math": 1000}
    for e in examples:
        if e.task in AGIEVAL_ENGLISH_MC:
            assert e.target in "ABCDEFG"[: len(e.options)], e.id
    with_passage = next(e for e in examples if e.task == "sat-en")
    without = next(e for e in examples if e.task == "sat-en-without-passage")
    assert with_passage.question == without.question and with_passage.passage and not without.passage
    # AGIEval's zero-shot context: passage, "Q: ", question, the options, "A: Among A through D, the answer is"
    prompt = user_message(with_passage)
    assert prompt.startswith(with_passage.passage + "\nQ: " + with_passage.question + " Answer Choices: (A)")
    assert prompt.endswith("\nA: Among A through D, the answer is")


@needs_data
def test_gsm8k_targets_are_the_final_numbers():
    examples = load_examples(DATA, "gsm8k")
    assert len(examples) == 1319
    assert examples[0].target == "18"  # Janet's ducks: 16 - 3 - 4 = 9 eggs at $2
    assert all(e.target.lstrip("-").replace(".", "").isdigit() for e in examples)
    solutions = [json.loads(line)["answer"] for line in open(os.path.join(DATA, "gsm8k", "test.jsonl"))]
    scores = [score_prediction("gsm8k", "test", s, e.target) for s, e in zip(solutions, examples)]
    assert all(s.correct and s.correct_second and s.format_ok for s in scores)  # reference solutions score 100%


@needs_data
def test_task_selection_and_limit():
    examples = load_examples(DATA, "bbh:navigate,agieval:lsat-ar,bbh:navigate", limit=3)
    assert [(e.benchmark, e.task) for e in examples] == [("bbh", "navigate")] * 3 + [("agieval", "lsat-ar")] * 3


def _write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def test_generic_mc_format(tmp_path):
    _write(str(tmp_path / "mc" / "arc.jsonl"), [
        json.dumps({"id": "q1", "question": "Which is a gas?", "choices": ["ice", "steam", "rock"], "answer": 1}),
        json.dumps({"question": "2+2?", "choices": ["3", "4"], "answer": "B", "passage": "Arithmetic."}),
    ])
    a, b = load_examples(str(tmp_path), "mc")
    assert (a.id, a.target, a.options) == ("q1", "B", ("(A)ice", "(B)steam", "(C)rock"))
    assert (b.id, b.question, b.passage) == ("arc/1", "2+2?", "Arithmetic.")
    assert user_message(b).startswith("Arithmetic.\nQ: 2+2? Answer Choices: (A)3 (B)4")
    assert user_message(a).endswith("Answer Choices: (A)ice (B)steam (C)rock\nA: Among A through C, the answer is")


@pytest.mark.parametrize("line, message", [
    ('{"question": "q", "choices": ["a", "b"]}', "arc.jsonl:2: field 'answer': expected str or int, got missing"),
    ('{"question": "q", "choices": ["a", "b"], "answer": "C"}', "arc.jsonl:2: field 'answer': expected one of AB"),
    ('{"question": "q", "choices": ["a"], "answer": "A"}', "arc.jsonl:2: field 'choices'"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 0', "arc.jsonl:2: (line): broken JSON"),
])
def test_bad_mc_records_name_file_line_and_field(tmp_path, line, message):
    _write(str(tmp_path / "mc" / "arc.jsonl"), ['{"question": "q", "choices": ["a", "b"], "answer": 0}', line])
    with pytest.raises(UserError, match=re.escape(message)):
        load_examples(str(tmp_path), "mc:arc")


def test_bad_specs_and_missing_data(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        load_examples(str(tmp_path / "nope"), "bbh")
    with pytest.raises(UserError, match="unknown benchmark 'mmlu'"):
        load_examples(str(tmp_path), "mmlu")
    with pytest.raises(UserError, match=r"bbh: no such directory \(expected bbh/<task>.json"):
        load_examples(str(tmp_path), "bbh:navigate")
    _write(str(tmp_path / "bbh" / "navigate.json"), ['{"examples": [{"input": "q", "target": "Yes"}]}'])
    with pytest.raises(UserError, match="unknown bbh task 'navigation' \\(known: navigate\\)"):
        load_examples(str(tmp_path), "bbh:navigation")
    with pytest.raises(UserError, match=r"agieval/lsat-ar.jsonl: missing"):
        load_examples(str(tmp_path), "agieval:lsat-ar")
    _write(str(tmp_path / "bbh" / "snarks.json"), ['{"examples": [{"input": "q"}]}'])
    with pytest.raises(UserError, match=r"snarks.json: examples\[0\]: field 'target': expected str, got missing"):
        load_examples(str(tmp_path), "bbh")


def test_predictions_file_validation(tmp_path):
    path = tmp_path / "p.jsonl"
    good = {"benchmark": "bbh", "task": "snarks", "prediction": "x", "target": "(A)"}
    _write(str(path), [json.dumps(good), json.dumps({k: v for k, v in good.items() if k != "target"})])
    with pytest.raises(UserError, match=r"p.jsonl:2: field 'target': missing"):
        read_predictions(str(path))
    _write(str(path), [json.dumps(dict(good, benchmark="mmlu"))])
    with pytest.raises(UserError, match=r"p.jsonl:1: field 'benchmark': unknown 'mmlu'"):
        read_predictions(str(path))


def test_prompts_variants_and_system_message():
    bbh = Example("bbh", "navigate", "n/0", "Take 1 step. Options:\n- Yes\n- No", "No")
    zero = user_message(bbh)
    cot = user_message(bbh, "step_by_step")
    assert zero.startswith(bbh.question) and "So the answer is" in zero and "step by step" not in zero
    assert "Let's think step by step." in cot and "So the answer is" in cot
    assert chat_messages(bbh)[0] == {"role": "system", "content": ""}  # Orca's empty system message
    assert chat_messages(bbh, system=None)[0]["role"] == "user"
    gsm = Example("gsm8k", "test", "t/0", "How many?", "3")
    assert "####" in user_message(gsm)
    with pytest.raises(ValueError):
        user_message(bbh, "few_shot")


@needs_data
def test_agieval_math_rule_scores_the_official_solutions_right():
    rows = [json.loads(line) for line in open(os.path.join(DATA, "agieval", "math.jsonl"))]
    wrong = [r["answer"] for r in rows
             if not score_prediction("agieval", "math", r["other"]["solution"], r["answer"]).correct]
    # Each reference solution ends in \boxed{answer}; only equation answers fail, because
    # AGIEval keeps what follows "=" inside the box.
    assert len(rows) == 1000 and wrong and all("=" in a for a in wrong)
    assert len(wrong) <= 5


@needs_data
def test_every_official_target_survives_its_answer_sentence():
    # An explanation that weighs other candidates and ends in the benchmark's answer sentence
    # must score right for every example, whatever the target looks like ("] ]", word lists, "(C)").
    for e in load_examples(DATA, "bbh"):
        text = f"It could be (A) or Yes at first sight.\nSo the answer is {e.target}."
        score = score_prediction("bbh", e.task, text, e.target, options=bbh_options(e.question))
        assert score.correct and score.correct_second, e.id  # official and lenient
    for e in load_examples(DATA, ",".join(f"agieval:{t}" for t in AGIEVAL_ENGLISH_MC)):
        text = f"(A) and (E) both look tempting.\nTherefore, among A through E, the answer is ({e.target})."
        assert score_prediction("agieval", e.task, text, e.target).correct_second, e.id  # the few-shot-CoT rule
        # the official zero-shot rule: the reply continues "... the answer is" with its letter
        assert score_prediction("agieval", e.task, f" ({e.target}) fits: (A) and (E) do not.", e.target).correct, e.id
