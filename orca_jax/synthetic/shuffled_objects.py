"""Tracking shuffled objects, reduced to its serial core (BIG-Bench Hard's
tracking_shuffled_objects): cards ABCD lie in a row, pairs of positions swap in turn,
and the answer is the final row. Composing permutations (S4 here) is the
literature's standard inherently serial problem (Li et al. 2024: S5 composition), which a
shallow model cannot do in one pass but can do one swap per step. A step writes the two
positions, then the whole row after the swap. Difficulty = number of swaps."""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, chained_steps

CARDS = "ABCD"


class ShuffledObjects:
    name = "tracking_shuffled_objects"
    method = "Write down the row after every swap; the last row is the answer."
    levels = {"train": (5,), "test": (7,)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        swaps = [sorted(rng.sample(range(1, len(CARDS) + 1), 2)) for _ in range(level)]
        positions = " ".join(f"{a}{b}" for a, b in swaps)
        return (f"Cards {CARDS} lie in a row. Swap the cards at positions {positions} in turn. "
                f"What is the final row?", {"swaps": swaps})

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        row, moves = list(CARDS), []
        for i, (a, b) in enumerate(data["swaps"]):
            row[a - 1], row[b - 1] = row[b - 1], row[a - 1]
            if slip_at == i:  # one swap too many: a plausible wrong row, and every later row wrong
                x, y = rng.sample(range(len(row)), 2)
                row[x], row[y] = row[y], row[x]
            moves.append((f"{a}{b}", "".join(row)))
        return Solution(chained_steps(moves, copied=str), moves[-1][1])

    def normalize(self, answer: str) -> str:
        return "".join(answer.split()).rstrip(".").upper()
