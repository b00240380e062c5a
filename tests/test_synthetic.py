"""Synthetic task families and programmatic teachers, checked against independent
evaluation of the question text (a re-simulation of the swaps, Python eval, counting, sorted())."""

import math
import re
import statistics

import pytest

from orca_jax.synthetic.base import SPLITS, is_correct, make_instance
from orca_jax.synthetic.families import FAMILIES, get_family
from orca_jax.synthetic.teachers import (CAUTIOUS_STRATEGY, DIRECT, STRATEGIES, strong_teacher,
                                         teacher_assistant)

N = 150


def _reference_answer(family: str, question: str) -> str:
    """Solves the question from its text alone, without the family's solver."""
    if family == "tracking_shuffled_objects":
        cards, swaps = re.fullmatch(r"Cards (\w+) lie in a row\. Swap the cards ([A-Z ]+) in turn, each pair "
                                    r"trading places\. What is the final row\?", question).groups()
        row = cards
        for a, b in swaps.split():
            row = row.translate(str.maketrans({a: b, b: a}))
        return row
    if family == "modular_arithmetic":
        start, chain = re.fullmatch(r"Start at (\d) and apply (.+) in turn, keeping the remainder by 5\. "
                                    r"What is the result\?", question).groups()
        value = int(start)
        for operation in chain.split():
            value = eval(f"{value} {operation[0]} {operation[1:]}") % 5
        return str(value)
    if family == "running_parity":
        return str(re.search(r"Bits: ([01]+)\.", question).group(1).count("1") % 2)
    if family == "digit_sorting":
        return "".join(sorted(re.fullmatch(r"Sort the digits (\d+) in ascending order\.", question).group(1)))
    raise AssertionError(family)


def _extract(text: str) -> str:
    # BBH's rule: what follows the last "the answer is", minus the final period.
    return re.split(r"the answer is", text, flags=re.IGNORECASE)[-1].strip().removesuffix(".")


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("split", SPLITS)
def test_answers_match_independent_evaluation(name, split):
    family = get_family(name)
    for i in range(N):
        inst = make_instance(family, split, i, seed=0)
        assert inst.answer == _reference_answer(name, inst.question), inst.question


def test_arithmetic_explanations_state_only_true_steps():
    family, teacher = get_family("modular_arithmetic"), strong_teacher()
    checked = 0
    for i in range(N):
        inst = make_instance(family, "test", i, seed=1)
        value = int(re.search(r"Start at (\d)", inst.question).group(1))
        for before, op, n, result in re.findall(r"^(\d)([-+*])(\d)>(\d)$",
                                                teacher.respond(family, inst, "step-by-step").text, flags=re.MULTILINE):
            assert int(before) == value  # each step restates the value it starts from
            value = eval(f"{value} {op} {n}") % 5
            assert int(result) == value, inst.question
            checked += 1
    assert checked == N * 6  # held-out chains have six operations, one line each


def test_every_step_restates_its_operand_next_to_its_result():
    """No step has to fetch a token by position: the operand it copies from the question
    stands right before its result, and the state it works on is the line above."""
    strong = strong_teacher()
    for name, family in FAMILIES.items():
        inst = make_instance(family, "train", 0, seed=4)
        steps = family.solve(inst.data).steps
        lines = [line for line in strong.respond(family, inst, "step-by-step").text.splitlines() if ">" in line]
        assert lines == [s.full for s in steps]
        for step in steps:
            assert step.full.split(">")[0].endswith(step.copied) and ">" in step.full
            if step.copied:
                assert step.copied in inst.question


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_held_out_split_is_harder(name):
    family = get_family(name)
    stats = {}
    for split in SPLITS:
        instances = [make_instance(family, split, i, seed=0) for i in range(N)]
        stats[split] = dict(
            levels={x.level for x in instances},
            steps=statistics.mean(len(family.solve(x.data).steps) for x in instances),
            chars=statistics.mean(len(x.question) for x in instances))
    assert max(stats["train"]["levels"]) < min(stats["test"]["levels"])
    assert stats["test"]["steps"] > stats["train"]["steps"]
    assert stats["test"]["chars"] > stats["train"]["chars"]


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("error_rate", [0.0, 0.3])
def test_assistant_error_rate_matches_configuration(name, error_rate):
    family, teacher, wrong, total = get_family(name), teacher_assistant(error_rate), 0, 4000
    for i in range(total):
        inst = make_instance(family, "train", i, seed=3)
        response = teacher.respond(family, inst, "step-by-step", seed=7)
        extracted_ok = is_correct(family, inst, _extract(response.text))
        assert extracted_ok == response.correct
        wrong += not extracted_ok
    # 3.5 binomial standard deviations: about 0.025 at 30%.
    assert abs(wrong / total - error_rate) <= 3.5 * math.sqrt(error_rate * (1 - error_rate) / total)


def test_strong_teacher_is_complete_and_correct_in_every_strategy():
    strong, assistant = strong_teacher(), teacher_assistant(0.0)
    for name, family in FAMILIES.items():
        for i in range(30):
            inst = make_instance(family, "test", i, seed=2)
            for strategy in STRATEGIES:
                full = strong.respond(family, inst, strategy)
                brief = assistant.respond(family, inst, strategy)
                assert full.correct and _extract(full.text) == inst.answer
                assert brief.correct and _extract(brief.text) == inst.answer
                if strategy == DIRECT:
                    assert full.text == f"The answer is {inst.answer}."
                else:  # the assistant's explanations are the shorter ones
                    assert len(brief.text) < len(full.text)
        assert CAUTIOUS_STRATEGY[name] in STRATEGIES


def test_instances_and_responses_are_deterministic_from_seed():
    def draw(seed):
        out = []
        for name, family in FAMILIES.items():
            for i in range(20):
                inst = make_instance(family, "train", i, seed=seed)
                out.append((inst, teacher_assistant(0.5).respond(family, inst, "step-by-step", seed=seed).text))
        return out

    assert draw(11) == draw(11)
    assert draw(11) != draw(12)


def test_checker_normalizes_format_but_not_content():
    cases = {
        "tracking_shuffled_objects": ("CADB", ["cadb", "CADB."], ["CABD"]),
        "modular_arithmetic": ("7", [" 7.", "7"], ["1"]),
        "running_parity": ("1", ["1.", " 1"], ["0"]),
        "digit_sorting": ("0258", ["0258.", "0 2 5 8"], ["0285"]),
    }
    assert set(cases) == set(FAMILIES)
    for name, (answer, accepted, rejected) in cases.items():
        family = get_family(name)
        inst = make_instance(family, "train", 0, seed=0)
        inst = type(inst)(**{**inst.__dict__, "answer": answer})
        assert all(is_correct(family, inst, a) for a in accepted), name
        assert not any(is_correct(family, inst, r) for r in rejected), name


def test_unknown_names_are_clear_errors():
    with pytest.raises(KeyError, match="known"):
        get_family("nope")
    with pytest.raises(ValueError, match="split"):
        make_instance(get_family("digit_sorting"), "validation", 0, seed=0)
    with pytest.raises(ValueError, match="strategy"):
        family = get_family("digit_sorting")
        strong_teacher().respond(family, make_instance(family, "train", 0, 0), "guess")
