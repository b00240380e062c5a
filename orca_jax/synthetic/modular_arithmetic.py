"""Chained arithmetic on one digit: start from a digit and apply +n, -n and *n in turn,
keeping only the last digit. Mixing multiplication with addition makes the chain serial
(the result is not a sum of independent terms); with every intermediate written, each
step is one lookup in a 10 x 10 table (Feng et al. 2023: small transformers fail such
expressions directly and learn the step-by-step versions). Difficulty = number of operations."""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, basic_normalize, chained_steps

OPERATIONS = {"+": lambda x, n: (x + n) % 10, "-": lambda x, n: (x - n) % 10, "*": lambda x, n: (x * n) % 10}


class ModularArithmetic:
    name = "modular_arithmetic"
    method = "Apply the operations one at a time and keep only the last digit of each result."
    levels = {"train": (4,), "test": (6,)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        start = rng.randrange(10)
        operations = [(rng.choice(sorted(OPERATIONS)), rng.randrange(1, 10)) for _ in range(level)]
        chain = " ".join(f"{op}{n}" for op, n in operations)
        return (f"Start at {start} and apply {chain} in turn, keeping only the last digit. What is the result?",
                {"start": start, "operations": operations})

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        value, moves = data["start"], []
        for i, (op, n) in enumerate(data["operations"]):
            value = OPERATIONS[op](value, n)
            if slip_at == i:
                value = (value + rng.randrange(1, 10)) % 10
            moves.append((f"{op}{n}", str(value)))
        return Solution(chained_steps(moves, operands_from_question=True), moves[-1][1])

    def normalize(self, answer: str) -> str:
        return basic_normalize(answer)
