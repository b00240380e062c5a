"""Chained arithmetic on one digit modulo 5: start from a digit and apply +n, -n and *n in
turn, keeping the remainder by 5. Mixing multiplication with addition makes the chain serial
(the result is not a sum of independent terms); with every intermediate written, each step
is one lookup in a small table (Feng et al. 2023: small transformers fail such expressions
directly and learn the step-by-step versions). A step restates the value it starts from,
then the operation, then the result (`3*4>2`), so all of its inputs stand beside it (Lee et
al. 2024's detailed scratchpad). Modulo 5 keeps the tables to 60 facts, which a tiny
student can learn within the quickstart's budget (modulo 10's 300 were not learned in 1000
steps: see the README). Difficulty = number of operations."""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, basic_normalize, chained_steps

MODULUS = 5
OPERATIONS = {"+": lambda x, n: (x + n) % MODULUS, "-": lambda x, n: (x - n) % MODULUS,
              "*": lambda x, n: (x * n) % MODULUS}


class ModularArithmetic:
    name = "modular_arithmetic"
    method = f"Apply the operations one at a time and keep the remainder by {MODULUS} of each result."
    levels = {"train": (4,), "test": (6,)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        start = rng.randrange(MODULUS)
        operations = [(rng.choice(sorted(OPERATIONS)), rng.randrange(1, MODULUS)) for _ in range(level)]
        chain = " ".join(f"{op}{n}" for op, n in operations)
        return (f"Start at {start} and apply {chain} in turn, keeping the remainder by {MODULUS}. "
                f"What is the result?", {"start": start, "operations": operations})

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        value, moves = data["start"], []
        for i, (op, n) in enumerate(data["operations"]):
            before, value = value, OPERATIONS[op](value, n)
            if slip_at == i:
                value = (value + rng.randrange(1, MODULUS)) % MODULUS
            moves.append((f"{before}{op}{n}", str(value)))
        return Solution(chained_steps(moves, copied=lambda operand: operand[1:]), moves[-1][1])

    def normalize(self, answer: str) -> str:
        return basic_normalize(answer)
