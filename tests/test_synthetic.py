"""Synthetic task families and programmatic teachers, checked against independent
evaluation of the question text (Python eval, int addition, sorted(), a re-simulation)."""

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
    if family == "multistep_arithmetic":
        return str(eval(question.removeprefix("Compute: ").removesuffix(" =")))
    if family == "boolean_expressions":
        return str(eval(question.removeprefix("Evaluate: ").removesuffix(" is")))
    if family == "multi_digit_addition":
        a, b = map(int, re.fullmatch(r"What is (\d+) \+ (\d+)\?", question).groups())
        return str(a + b)
    if family == "word_sorting":
        return " ".join(sorted(question.split("List: ")[1].split()))
    if family == "tracking_shuffled_objects":
        holding = dict(re.findall(r"(\w+) has the (\w+) ball", question))
        for a, b in re.findall(r"Swap \d+: (\w+) and (\w+) swap balls", question):
            holding[a], holding[b] = holding[b], holding[a]
        return holding[re.search(r"which ball does (\w+) have", question).group(1)]
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


def test_arithmetic_explanations_state_only_true_equations():
    family, teacher = get_family("multistep_arithmetic"), strong_teacher()
    checked = 0
    for i in range(N):
        inst = make_instance(family, "test", i, seed=1)
        text = teacher.respond(family, inst, "step-by-step").text
        for a, op, b, value in re.findall(r"(-?\d+) ([-+*]) (-?\d+) = (-?\d+)", text):
            assert eval(f"{a} {op} {b}") == int(value), text
            checked += 1
    assert checked >= N * 4  # held-out arithmetic has at least four operations


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
        "multistep_arithmetic": ("-70", [" -70.", "-070"], ["70", "-71"]),
        "boolean_expressions": ("True", ["true", "True."], ["False"]),
        "tracking_shuffled_objects": ("green", ["the green ball", "Green."], ["red"]),
        "multi_digit_addition": ("8021", ["8,021", "8021."], ["8012"]),
        "word_sorting": ("anchor engine", ["Anchor  engine.", "anchor, engine"], ["engine anchor"]),
    }
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
        make_instance(get_family("word_sorting"), "validation", 0, seed=0)
    with pytest.raises(ValueError, match="strategy"):
        family = get_family("word_sorting")
        strong_teacher().respond(family, make_instance(family, "train", 0, 0), "guess")
