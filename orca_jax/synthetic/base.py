"""What every synthetic task family provides, and how instances are drawn from a seed.

A family samples an `Instance` at a difficulty level and solves it as a list of
`Step`s. Every family is a chain of moves, each written `operand>result`: the operand
stands right before the state it produces, and the state a move works on is the line
above, so no step has to fetch a token by its absolute position in the prompt
(index hints, position coupling: Nogueira et al. 2021, Cho et al. 2024). The
strong teacher writes every step; the teacher assistant's brief version merges each
pair of moves into one, skipping the state between them.

A solver can be told to slip at one step: it then corrupts that step's result and
carries the mistake forward, which is how an imperfect teacher produces a wrong but
plausible explanation.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Protocol

# Split -> which difficulty levels it draws from. Held-out instances are harder than
# anything seen in training (more swaps, operations, bits or digits), so the families'
# level ranges never overlap between the two splits.
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Instance:
    family: str
    id: str
    split: str
    level: int
    question: str
    answer: str
    data: dict  # the structured problem the solver works on


@dataclasses.dataclass(frozen=True)
class Step:
    full: str  # the strong teacher's line, `operand>result`
    brief: str  # the assistant's, "" where it skips this step's state
    copied: str  # the part of the operand copied from the question (its end), else "": all computed


def chained_steps(moves: list[tuple[str, str]], copied=None) -> tuple[Step, ...]:
    """Steps from (operand, result) moves; `copied(operand)` gives the part of each operand
    taken from the question (None: nothing is). The brief line of every second move carries
    the first move's operand, the second's copied part and only the later result (no
    intermediate state); the odd one out at the end stands alone."""
    steps = []
    for i, (operand, result) in enumerate(moves):
        if i % 2 == 0 and i + 1 < len(moves):
            brief = ""
        elif i % 2 == 1:
            brief = f"{moves[i - 1][0]}{copied(operand) if copied else operand}>{result}"
        else:
            brief = f"{operand}>{result}"
        steps.append(Step(f"{operand}>{result}", brief, copied(operand) if copied else ""))
    return tuple(steps)


@dataclasses.dataclass(frozen=True)
class Solution:
    steps: tuple[Step, ...]
    answer: str


class Family(Protocol):
    name: str
    # Sentence recalling the method (used by the explain-then-answer strategy).
    method: str
    levels: dict[str, tuple[int, ...]]  # split -> difficulty levels

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        """Returns (question text, structured data)."""

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        """Works the problem step by step. With `slip_at`, corrupts that step (using
        `rng`) and propagates the error; a slip at the last step always changes the
        answer."""

    def normalize(self, answer: str) -> str:
        """Canonical form of an answer string, for exact comparison."""


def instance_rng(seed: int, *parts: object) -> random.Random:
    # String seeds are hashed with SHA-512 by `random.Random`, so the stream depends
    # only on (seed, parts), not on Python's per-process hash randomisation.
    return random.Random("/".join(str(p) for p in (seed, *parts)))


def make_instance(family: Family, split: str, index: int, seed: int) -> Instance:
    if split not in family.levels:
        raise ValueError(f"family {family.name!r} has no split {split!r}; expected one of {sorted(family.levels)}")
    rng = instance_rng(seed, family.name, split, index)
    level = rng.choice(family.levels[split])
    question, data = family.sample(rng, level)
    answer = family.solve(data).answer
    return Instance(family.name, f"{family.name}-{split}-{seed}-{index}", split, level, question, answer, data)


def is_correct(family: Family, instance: Instance, answer: str) -> bool:
    """Exact match after the family's normalisation (case, spacing, trailing period)."""
    return family.normalize(answer) == family.normalize(instance.answer)


def basic_normalize(answer: str) -> str:
    return " ".join(answer.strip().rstrip(".").strip().lower().split())
