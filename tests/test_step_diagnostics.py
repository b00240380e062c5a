"""Explanations scored step by step: the strong teacher's own explanation is all right, and
each kind of first error is found where it was planted."""

import json

import pytest

from orca_jax.synthetic.base import make_instance
from orca_jax.synthetic.eval_sets import write_bbh_layout
from orca_jax.synthetic.families import FAMILIES, get_family
from orca_jax.synthetic.step_diagnostics import diagnose, reference_steps, summarize_steps
from orca_jax.synthetic.teachers import STEP_BY_STEP, strong_teacher, teacher_assistant


def _swaps():
    family = get_family("tracking_shuffled_objects")
    instance = make_instance(family, "train", 0, seed=0)
    return family, instance, reference_steps(instance)


def test_the_strong_explanation_is_all_right_in_every_family():
    for family in FAMILIES.values():
        instance = make_instance(family, "train", 1, seed=0)
        text = strong_teacher().respond(family, instance, STEP_BY_STEP).text
        d = diagnose(text, reference_steps(instance))
        assert d["kind"] is None and all(d["right"]) and d["first_error"] is None


def test_each_kind_of_first_error():
    _, _, reference = _swaps()
    lines = [s["line"] for s in reference]
    operand, result = lines[2].split(">")
    wrong_operand = "XY"
    cases = {
        "copy": lines[:2] + [f"{wrong_operand}>{result}"] + lines[3:],
        "compute": lines[:2] + [f"{operand}>{result[::-1]}"] + lines[3:],
        "missing": lines[:2],
        "extra": lines + ["AB>ABCD"],
    }
    for kind, predicted in cases.items():
        d = diagnose("Let's think step by step.\n" + "\n".join(predicted) + "\nSo the answer is X.", reference)
        assert d["kind"] == kind
        assert d["first_error"] == (len(lines) if kind == "extra" else 2)
        assert d["right"][:2] == [True, True]


def test_a_step_that_copies_nothing_can_only_be_a_computing_error():
    family = get_family("digit_sorting")
    instance = make_instance(family, "train", 0, seed=0)
    reference = reference_steps(instance)
    assert all(step["copied"] == "" for step in reference)
    wrong = ["9>" + reference[0]["line"].split(">")[1]] + [s["line"] for s in reference[1:]]
    assert diagnose("\n".join(wrong), reference)["kind"] == "compute"


def test_summary_over_predictions_read_with_the_evaluation_set(tmp_path):
    write_bbh_layout(str(tmp_path), "train", 4, seed=5, families=("running_parity",))
    examples = json.load(open(tmp_path / "bbh" / "running_parity.json"))["examples"]
    family = get_family("running_parity")
    instances = [make_instance(family, "train", i, seed=5) for i in range(4)]
    assert [x.question for x in instances] == [e["input"] for e in examples]
    predictions = [strong_teacher().respond(family, instances[0], STEP_BY_STEP).text,
                   teacher_assistant(0.0).respond(family, instances[1], STEP_BY_STEP).text,  # brief: one line
                   "The answer is 1.",
                   strong_teacher().respond(family, instances[3], STEP_BY_STEP).text]
    records = [{"task": "running_parity", "id": f"running_parity/{i}", "prediction": p} for i, p in enumerate(predictions)]
    summary = summarize_steps(records, str(tmp_path))["running_parity"]
    assert summary["n"] == 4
    assert summary["explained"] == pytest.approx(75.0)
    assert summary["all_steps_right"] == pytest.approx(50.0)
    assert summary["step_accuracy"][0] == pytest.approx(50.0)
    assert summary["first_error"]["missing"] == pytest.approx(25.0)  # no step lines at all
    assert sum(summary["first_error"].values()) == pytest.approx(50.0)
