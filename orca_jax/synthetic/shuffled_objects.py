"""Tracking shuffled objects, reduced to its serial core (BIG-Bench Hard's
tracking_shuffled_objects): cards ABCD lie in a row, pairs of cards trade places in turn,
and the answer is the final row. Composing permutations (S4 here) is the literature's
standard inherently serial problem (Li et al. 2024: S5 composition), which a shallow model
cannot do in one pass but can do one swap per step. A step writes the two cards, then the
whole row after the swap: each card of the new row is the card above it, or its partner
when it is one of the two, so the step looks up cards by content, never by position (swaps
named by position were not learned in 1000 steps: see the README). Difficulty = number of
swaps."""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, chained_steps

CARDS = "ABCD"


class ShuffledObjects:
    name = "tracking_shuffled_objects"
    method = "Write down the row after every swap; the last row is the answer."
    levels = {"train": (5,), "test": (7,)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        swaps = ["".join(sorted(rng.sample(CARDS, 2))) for _ in range(level)]
        return (f"Cards {CARDS} lie in a row. Swap the cards {' '.join(swaps)} in turn, each pair trading places. "
                f"What is the final row?", {"swaps": swaps})

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        row, moves = list(CARDS), []
        for i, pair in enumerate(data["swaps"]):
            a, b = row.index(pair[0]), row.index(pair[1])
            row[a], row[b] = row[b], row[a]
            if slip_at == i:  # one swap too many: a plausible wrong row, and every later row wrong
                x, y = rng.sample(range(len(row)), 2)
                row[x], row[y] = row[y], row[x]
            moves.append((pair, "".join(row)))
        return Solution(chained_steps(moves, copied=str), moves[-1][1])

    def normalize(self, answer: str) -> str:
        return "".join(answer.split()).rstrip(".").upper()
