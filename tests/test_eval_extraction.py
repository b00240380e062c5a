"""Answer extraction and scoring against hand-checked cases from each benchmark's official rule."""

import pytest

from orca_jax.evaluation.extraction import (extract_bbh, extract_choice, extract_gsm8k_flexible,
                                            extract_gsm8k_strict, extract_math)
from orca_jax.evaluation.math_equivalence import is_equiv
from orca_jax.evaluation.scoring import score_prediction, score_record, summarize


@pytest.mark.parametrize("text, target, extracted, correct, format_ok", [
    # several candidates discussed; the last "the answer is" decides
    ("(A) looks plausible, but (B) fits the clue. So the answer is (B).", "(B)", "(B)", True, True),
    ("The answer is (A). Wait, checking again: the answer is (C).", "(C)", "(C)", True, True),
    ("So the answer is apple banana cherry.", "apple banana cherry", "apple banana cherry", True, True),
    ("THE ANSWER IS Yes", "Yes", "Yes", True, True),
    # no trigger: the whole stripped output is the answer
    ("  No \n", "No", "No", True, False),
    ("I think it is No.", "No", "I think it is No.", False, False),
    # exact comparison: case and extra punctuation count
    ("So the answer is (b).", "(B)", "(b)", False, True),
    ("The answer is: 24.", "24", ": 24", False, True),
])
def test_bbh_rule(text, target, extracted, correct, format_ok):
    assert extract_bbh(text) == (extracted, format_ok)
    score = score_prediction("bbh", "any", text, target)
    assert (score.extracted, score.correct, score.format_ok) == (extracted, correct, format_ok)


@pytest.mark.parametrize("text, letter, format_ok", [
    # AGIEval's few-shot-CoT rule (parse_few_shot_qa_single_answer on the last line)
    # explanation weighing several options, AGIEval's stage-2 sentence on the last line
    ("(A) fails the first rule and (C) the second.\nTherefore, among A through E, the answer is (D).", "D", True),
    ("Reasoning...\n\nthe answer is not A, it is C", "A", True),  # first letter after "answer is"
    # "answer is" only counts on the last non-empty line; else the first A-F anywhere
    ("The answer is (E).\nI hope this helps.", "E", False),
    ("Both options fail except (C).\nDone", "B", False),  # "B" of "Both", as AGIEval does
    ("Answer is C", "A", False),  # case-sensitive pattern; "A" of "Answer" is the first capital
    (" (C) because the passage says so", "C", False),  # fallback: the first capital A-F
    ("G is the answer", "", False),  # G is outside the fallback set A-F
    ("I do not know", "", False),
])
def test_agieval_choice_rule(text, letter, format_ok):
    assert extract_choice(text) == (letter, format_ok)


def test_generic_mc_uses_its_own_letters():
    text = "Options H and J are wrong.\nSo the answer is (J)."
    assert score_prediction("mc", "t", text, "J", num_choices=10).correct
    assert not score_prediction("agieval", "lsat-ar", text, "J").correct  # AGIEval stops at G


@pytest.mark.parametrize("text, strict, strict_ok, flexible", [
    ("She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\n#### 18", "18", True, "18"),
    ("#### 1,234", "1234", True, "1234"),
    ("So she makes $18.00 a day.", "[invalid]", False, "18.00"),
    ("#### 18\nActually, 20 is right.", "18", True, "20"),  # strict takes the first ####
    ("####18", "[invalid]", False, "18"),  # the dataset's regex needs the space
    ("#### -5", "-5", True, "-5"),
    ("It is 7-3 = 4", "[invalid]", False, "4"),
    ("He owes 5 - 12 = -7 dollars", "[invalid]", False, "-7"),
    ("no numbers here", "[invalid]", False, ""),
])
def test_gsm8k_rules(text, strict, strict_ok, flexible):
    assert extract_gsm8k_strict(text) == (strict, strict_ok)
    assert extract_gsm8k_flexible(text)[0] == flexible


def test_gsm8k_scores_strict_and_flexible():
    full_target = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18"
    score = score_prediction("gsm8k", "test", "She makes 18.0 dollars.", full_target)
    assert (score.correct, score.correct_second, score.format_ok) == (False, True, False)
    score = score_prediction("gsm8k", "test", "#### 18.0", "18")
    assert (score.correct, score.correct_second) == (False, True)  # strict compares strings


@pytest.mark.parametrize("text, extracted", [
    ("First $x=2$, then the total is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("So \\boxed{x = 5}", "5"),
    ("The answer is $y = 7$", "7"),
    ("hence k = 12.", "12"),
    ("The answer is therefore 3/4", "4"),  # AGIEval's last-number fallback reads "4"
    ("nothing numeric", None),
])
def test_math_extraction(text, extracted):
    assert extract_math(text)[0] == extracted


@pytest.mark.parametrize("a, b, same", [
    ("\\frac12", "\\frac{1}{2}", True),
    ("\\dfrac{1}{2}", "0.5", True),
    ("1/2", "\\frac{1}{2}", True),
    ("10^\\circ", "10", True),
    ("10\\%", "10", True),
    ("x = 3", "3", True),
    ("\\left( 1, 2 \\right)", "(1,2)", True),
    ("\\sqrt3", "\\sqrt{3}", True),
    (".5", "0.5", True),
    ("5\\text{ cm}", "5", True),
    ("5", "6", False),
    ("\\frac{1}{3}", "\\frac{1}{2}", False),
    (None, "1", False),
])
def test_math_equivalence(a, b, same):
    assert is_equiv(a, b) is same


def test_summary_averages_follow_the_papers():
    def rec(benchmark, task, correct_n, n, **extra):
        return [dict(benchmark=benchmark, task=task, correct=i < correct_n, format_ok=True, **extra) for i in range(n)]

    records = (rec("bbh", "navigate", 1, 2) + rec("bbh", "snarks", 3, 4)
               + rec("agieval", "lsat-ar", 1, 4) + rec("agieval", "sat-math", 2, 4) + rec("agieval", "math", 4, 4)
               + rec("gsm8k", "test", 1, 4, correct_flexible=True))
    summary = summarize(records)
    assert summary["bbh"]["tasks"]["snarks"] == {"accuracy": 75.0, "format_ok": 100.0, "n": 4}
    assert summary["bbh"]["average"] == pytest.approx((50 + 75) / 2)  # over tasks, not examples
    assert summary["agieval"]["average"] == pytest.approx((25 + 50) / 2)  # math not in the English MC average
    assert summary["gsm8k"]["average"] == 25.0 and summary["gsm8k"]["average_flexible"] == 100.0


def test_score_record_keeps_fields_and_adds_results():
    out = score_record({"benchmark": "bbh", "task": "snarks", "id": "x", "prediction": "So the answer is (A).", "target": "(A)"})
    assert out["id"] == "x" and out["extracted"] == "(A)" and out["correct"] is True and out["format_ok"] is True
