"""Synthetic teacher traces in the three recipes the quickstart trains on.

- Orca 1 style (the teacher assistant's stage): each query gets one of Orca 1's
  chain-of-thought system messages and is answered step by step.
- Orca 2 style (the strong teacher's stage): each family's cautious strategy is
  told to the teacher as an Orca 2 strategy instruction; the data pipeline erases
  it at training time.
- Answers only (the shallow-imitation baseline): the final answer, no explanation.

The user turn is exactly the zero-shot BBH prompt the evaluation sends, so
training and evaluation see the same question format. Traces are written with
the data layer's JSONL writer and read back through its reader like any other.
"""

from __future__ import annotations

from typing import Callable

from orca_jax.data.system_messages import pick_orca1_system_message, strategy_instruction
from orca_jax.data.traces import Trace, write_traces
from orca_jax.evaluation.benchmarks import Example
from orca_jax.evaluation.prompts import user_message
from orca_jax.synthetic.base import instance_rng, make_instance
from orca_jax.synthetic.families import FAMILIES
from orca_jax.synthetic.teachers import (CAUTIOUS_STRATEGY, DIRECT, EXPLAIN_THEN_ANSWER, STEP_BY_STEP,
                                         ProgrammaticTeacher)

# This project's strategies under Orca 2's names (orca_jax.data.system_messages).
# Explain-then-answer recalls the method, reasons with it, then answers.
ORCA2_STRATEGY_NAME = {
    DIRECT: "direct_answer",
    STEP_BY_STEP: "step_by_step",
    EXPLAIN_THEN_ANSWER: "recall_reason_generate",
}
RECIPES = ("orca1", "orca2", "answers_only")

# (family name, rng) -> (system message, Orca 2 strategy name or "", response strategy, metadata)
_Prompting = Callable[[str, object], tuple[str, str, str, dict]]


def _orca1(family_name, rng):
    number, system = pick_orca1_system_message("cot", multiple_choice=False, rng=rng)
    return system, "", STEP_BY_STEP, {"orca1_system_message": number}


def _orca2(family_name, rng):
    strategy = CAUTIOUS_STRATEGY[family_name]
    name = ORCA2_STRATEGY_NAME[strategy]
    return strategy_instruction(name), name, strategy, {}


def _answers_only(family_name, rng):
    return "", "", DIRECT, {}


_PROMPTING: dict[str, _Prompting] = {"orca1": _orca1, "orca2": _orca2, "answers_only": _answers_only}


def eval_example(instance) -> Example:
    """The instance as a BBH-style benchmark example (task = family name)."""
    return Example("bbh", instance.family, instance.id, instance.question, instance.answer)


def synthetic_traces(teacher: ProgrammaticTeacher, recipe: str, split: str, n_per_family: int, seed: int,
                     families: tuple[str, ...] | None = None) -> list[Trace]:
    if recipe not in _PROMPTING:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")
    traces = []
    for name in families or tuple(FAMILIES):
        family = FAMILIES[name]
        for i in range(n_per_family):
            instance = make_instance(family, split, i, seed)
            system, orca2_strategy, strategy, extra = _PROMPTING[recipe](name, instance_rng(seed, recipe, instance.id))
            response = teacher.respond(family, instance, strategy, seed)
            traces.append(Trace(
                id=f"{teacher.name}/{recipe}/{instance.id}",
                turns=[{"role": "user", "content": user_message(eval_example(instance))},
                       {"role": "assistant", "content": response.text}],
                system=system, source=f"synthetic_{recipe}", teacher=teacher.name, task=name,
                category="synthetic", strategy=orca2_strategy,
                metadata={"answer": instance.answer, "split": split, "level": instance.level,
                          "response_strategy": strategy, "teacher_correct": response.correct, **extra}))
    return traces


def write_synthetic_traces(path: str, teacher: ProgrammaticTeacher, recipe: str, split: str, n_per_family: int,
                           seed: int, families: tuple[str, ...] | None = None) -> int:
    return write_traces(path, synthetic_traces(teacher, recipe, split, n_per_family, seed, families))
