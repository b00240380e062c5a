"""Synthetic traces through the real data layer and evaluation: written and read back
with the trace JSONL reader, prompts identical to the evaluation's, teacher quality
measured with the evaluation's BBH scorer."""

import collections

import pytest

from orca_jax.data.system_messages import ORCA1_ASSIGNMENT, ORCA1_SYSTEM_MESSAGES, strategy_instruction
from orca_jax.data.traces import read_traces
from orca_jax.evaluation.benchmarks import read_bbh
from orca_jax.evaluation.prompts import chat_messages
from orca_jax.evaluation.scoring import score_record
from orca_jax.synthetic.eval_sets import write_bbh_layout
from orca_jax.synthetic.families import FAMILIES
from orca_jax.synthetic.teachers import CAUTIOUS_STRATEGY, strong_teacher, teacher_assistant
from orca_jax.synthetic.trace_generation import (ORCA2_STRATEGY_NAME, synthetic_traces,
                                                 write_synthetic_traces)

N = 40


def _accuracy(traces):
    scored = [score_record({"benchmark": "bbh", "task": t.task, "prediction": t.response,
                            "target": t.metadata["answer"]}) for t in traces]
    return sum(r["correct"] for r in scored) / len(scored)


@pytest.mark.parametrize("recipe", ["orca1", "orca2", "answers_only"])
def test_traces_round_trip_through_the_reader(tmp_path, recipe):
    path = str(tmp_path / f"{recipe}.jsonl")
    written = synthetic_traces(strong_teacher(), recipe, "train", N, seed=0)
    assert write_synthetic_traces(path, strong_teacher(), recipe, "train", N, seed=0) == N * len(FAMILIES)
    assert list(read_traces(path)) == written


def test_recipes_set_system_messages_and_strategies():
    orca2 = synthetic_traces(strong_teacher(), "orca2", "train", N, seed=0)
    for t in orca2:
        name = ORCA2_STRATEGY_NAME[CAUTIOUS_STRATEGY[t.task]]
        assert (t.strategy, t.system) == (name, strategy_instruction(name))
        if name == "direct_answer":
            assert t.response.startswith("The answer is")
        else:
            assert "\n" in t.response  # an explanation, then the answer line
    orca1 = synthetic_traces(teacher_assistant(0.0), "orca1", "train", N, seed=0)
    used = collections.Counter(t.metadata["orca1_system_message"] for t in orca1)
    assert set(used) == set(ORCA1_ASSIGNMENT["cot"])  # all chain-of-thought messages, nothing else
    assert all(t.system == ORCA1_SYSTEM_MESSAGES[t.metadata["orca1_system_message"]] for t in orca1)
    shallow = synthetic_traces(strong_teacher(), "answers_only", "train", N, seed=0)
    assert all(t.response == f"The answer is {t.metadata['answer']}." and t.system == "" for t in shallow)


def test_teacher_quality_measured_by_the_bbh_scorer():
    assert _accuracy(synthetic_traces(strong_teacher(), "orca2", "test", N, seed=1)) == 1.0
    assistant = synthetic_traces(teacher_assistant(0.25), "orca1", "train", 200, seed=1)
    assert 0.75 - 0.05 <= _accuracy(assistant) <= 0.75 + 0.05
    assert all(t.metadata["teacher_correct"] == (score_record({"benchmark": "bbh", "task": t.task,
               "prediction": t.response, "target": t.metadata["answer"]})["correct"]) for t in assistant)


def test_training_prompts_equal_evaluation_prompts(tmp_path):
    tasks = write_bbh_layout(str(tmp_path), "test", 5, seed=3)
    traces = {t.task + str(i % 5): t for i, t in enumerate(synthetic_traces(strong_teacher(), "orca2", "test", 5, seed=3))}
    for task in tasks:
        for i, example in enumerate(read_bbh(str(tmp_path), task)):
            messages = chat_messages(example, system="")
            assert messages[-1]["content"] == traces[task + str(i)].turns[0]["content"]
            assert example.target == traces[task + str(i)].metadata["answer"]


def test_family_weights_set_each_familys_share_and_keep_the_baselines_questions():
    from orca_jax.pipelines.synthetic_experiment import ExperimentConfig, family_counts, trace_sets

    cfg = ExperimentConfig(assistant_per_family=3, strong_per_family=5,
                           family_weights=(("running_parity", 2), ("digit_sorting", 4)))
    sets = trace_sets(cfg)
    for stem, per_family in (("assistant_orca1", 3), ("strong_orca2", 5)):
        counts = collections.Counter(t.task for t in sets[stem])
        assert counts == {"tracking_shuffled_objects": per_family, "modular_arithmetic": per_family,
                          "running_parity": 2 * per_family, "digit_sorting": 4 * per_family}
    # The baseline answers exactly the student's questions, each once.
    student_questions = sorted(t.turns[0]["content"] for stem in ("assistant_orca1", "strong_orca2") for t in sets[stem])
    assert sorted(t.turns[0]["content"] for t in sets["answers_only"]) == student_questions
    with pytest.raises(ValueError, match="unknown families"):
        family_counts(ExperimentConfig(family_weights=(("parity", 2),)), 1)
