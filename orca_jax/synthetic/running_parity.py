"""Parity of a bit string, worked as a running parity. Answers alone make a small
transformer learn parity from the labels, whose sample cost grows exponentially with the
number of bits; with the intermediate parities written, each step is the XOR of the bit
beside it and the parity before it (Wies et al. 2023; Kim and Suzuki 2025). A step writes
the bit, then the parity so far. Difficulty = number of bits."""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, basic_normalize, chained_steps


class RunningParity:
    name = "running_parity"
    method = "Go through the bits one at a time, flipping the running parity at every 1."
    levels = {"train": (10,), "test": (14,)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        bits = "".join(rng.choice("01") for _ in range(level))
        return f"Bits: {bits}. What is their parity (1 if the count of 1s is odd, else 0)?", {"bits": bits}

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        parity, moves = 0, []
        for i, bit in enumerate(data["bits"]):
            parity ^= int(bit) ^ (slip_at == i)  # a slip flips the parity, and so the answer
            moves.append((bit, str(parity)))
        return Solution(chained_steps(moves, copied=str), str(parity))

    def normalize(self, answer: str) -> str:
        return basic_normalize(answer)
