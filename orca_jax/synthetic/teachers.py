"""Programmatic teachers: they answer synthetic instances in a chosen strategy.

Two qualities play the roles Orca gives ChatGPT and GPT-4:
- the teacher assistant writes brief explanations (every other intermediate state
  skipped, on one line) and slips at a configurable rate (a wrong step whose error is
  carried to the final answer);
- the strong teacher writes complete, correct explanations.

Every response ends "... the answer is X." so BBH-style extraction finds X.
"""

from __future__ import annotations

import dataclasses
import random

from orca_jax.synthetic.base import Family, Instance, Solution, instance_rng

DIRECT, STEP_BY_STEP, EXPLAIN_THEN_ANSWER = "direct", "step-by-step", "explain-then-answer"
STRATEGIES = (DIRECT, STEP_BY_STEP, EXPLAIN_THEN_ANSWER)

# Orca 2's cautious reasoning: the strategy the strong teacher is told to use for each
# family. The two openings differ (a recalled method, or "Let's think step by step"), so
# a student trained with the strategy prompts kept has to pick the opening from the
# question alone under the generic message: what prompt erasing is meant to teach.
CAUTIOUS_STRATEGY = {
    "tracking_shuffled_objects": STEP_BY_STEP,
    "modular_arithmetic": EXPLAIN_THEN_ANSWER,
    "running_parity": STEP_BY_STEP,
    "digit_sorting": EXPLAIN_THEN_ANSWER,
}


@dataclasses.dataclass(frozen=True)
class TeacherResponse:
    text: str
    answer: str
    strategy: str
    correct: bool


@dataclasses.dataclass(frozen=True)
class ProgrammaticTeacher:
    name: str
    brief: bool  # brief explanations (the assistant) or complete ones (the strong teacher)
    error_rate: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")

    def respond(self, family: Family, instance: Instance, strategy: str, seed: int = 0) -> TeacherResponse:
        """Answers `instance`; whether and where it slips depends only on (seed,
        teacher, instance, strategy), not on which other instances were answered."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        rng = instance_rng(seed, self.name, instance.id, strategy)
        solution = family.solve(instance.data)
        if rng.random() < self.error_rate:
            solution = _slipped(family, instance, solution, rng)
        return TeacherResponse(self._render(family, solution, strategy), solution.answer, strategy,
                               solution.answer == instance.answer)

    def _render(self, family: Family, solution: Solution, strategy: str) -> str:
        conclusion = f"So the answer is {solution.answer}."
        if strategy == DIRECT:
            return f"The answer is {solution.answer}."
        if self.brief:
            work = " ".join(s.brief for s in solution.steps if s.brief)
        else:
            work = "\n".join(s.full for s in solution.steps)
        opening = "Let's think step by step." if strategy == STEP_BY_STEP else family.method
        return f"{opening}\n{work}\n{conclusion}"


def _slipped(family: Family, instance: Instance, solution: Solution, rng: random.Random) -> Solution:
    """A solution with one wrong step. A slip early on can cancel out (a flipped
    operand under `or True`); then the teacher slips at the last step instead,
    which always changes the answer, so the configured rate is the rate of wrong
    answers."""
    wrong = family.solve(instance.data, slip_at=rng.randrange(len(solution.steps)), rng=rng)
    if wrong.answer == instance.answer:
        wrong = family.solve(instance.data, slip_at=len(solution.steps) - 1, rng=rng)
    return wrong


def teacher_assistant(error_rate: float = 0.2) -> ProgrammaticTeacher:
    """The "ChatGPT" role: shorter explanations, wrong at `error_rate`."""
    return ProgrammaticTeacher("teacher-assistant", brief=True, error_rate=error_rate)


def strong_teacher() -> ProgrammaticTeacher:
    """The "GPT-4" role: complete and correct explanations."""
    return ProgrammaticTeacher("strong-teacher", brief=False, error_rate=0.0)
