"""Sorting digits: the control family. Sorting parallelises (each output position is a
count over the input), so the literature expects answers alone to suffice for a small
transformer and explanations to add nothing (Li et al. 2024: steps help inherently serial
problems, not parallel ones). The explanation is selection sort: each step writes the
smallest remaining digit, then the digits left. Difficulty = number of digits."""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, chained_steps


class DigitSorting:
    name = "digit_sorting"
    method = "Take the smallest remaining digit again and again; the digits taken, in order, are the answer."
    levels = {"train": (4,), "test": (6,)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        digits = "".join(rng.choice("0123456789") for _ in range(level))
        return f"Sort the digits {digits} in ascending order.", {"digits": digits}

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        rest, taken, moves = data["digits"], "", []
        while len(rest) > 1:
            smallest = min(rest)
            if slip_at == len(moves):  # takes a larger digit first: the answer is out of order
                smallest = rng.choice([d for d in rest if d != smallest] or [smallest])
            rest = rest.replace(smallest, "", 1)
            taken += smallest
            moves.append((smallest, rest))
        return Solution(chained_steps(moves), taken + rest)

    def normalize(self, answer: str) -> str:
        return "".join(answer.split()).rstrip(".")
