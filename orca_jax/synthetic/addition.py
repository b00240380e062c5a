"""Multi-digit addition worked column by column with carries.

Difficulty = number of digits in each operand; held-out numbers are longer than
any seen in training.
"""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, Step, basic_normalize

COLUMNS = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands", "millions")


class MultiDigitAddition:
    name = "multi_digit_addition"
    method = "Add the columns from right to left, starting with the ones; a column sum of 10 or more carries 1 to the next column."
    levels = {"train": (2, 3), "test": (4, 5)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        a, b = (rng.randint(10 ** (level - 1), 10 ** level - 1) for _ in range(2))
        return f"What is {a} + {b}?", {"a": a, "b": b}

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        a, b = str(data["a"]), str(data["b"])
        width = max(len(a), len(b))
        a, b = a.zfill(width), b.zfill(width)
        carry, written, steps = 0, [], []
        for col in range(width):
            x, y = int(a[-1 - col]), int(b[-1 - col])
            total = x + y + carry
            digit = total % 10
            if slip_at == len(steps):  # writes a wrong digit; the carry stays right
                digit = (digit + rng.randint(1, 9)) % 10
            written.append(str(digit))
            steps.append(Step(
                full=f"{COLUMNS[col].capitalize()}: {x} + {y} + carry {carry} = {total}, write {digit} and carry {total // 10}.",
                brief=f"{x} + {y} + {carry} = {total}."))
            carry = total // 10
        if carry:
            written.append(str(carry))
        result = "".join(reversed(written)).lstrip("0") or "0"
        if slip_at == len(steps):  # misreads one digit of the result
            i = rng.randrange(len(result))
            wrong = rng.choice([d for d in "0123456789" if d != result[i] and (i or d != "0")])
            result = result[:i] + wrong + result[i + 1:]
        lead = f"The last carry {carry} goes in front. " if carry else ""
        steps.append(Step(full=f"{lead}Reading the digits gives {result}.", brief=f"Total: {result}."))
        return Solution(tuple(steps), result)

    def normalize(self, answer: str) -> str:
        return basic_normalize(answer).replace(",", "")
