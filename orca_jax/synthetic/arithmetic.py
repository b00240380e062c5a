"""Multi-step arithmetic with parentheses (in the spirit of BBH multistep_arithmetic_two).

Every operation is parenthesised, so the solver needs no precedence rules: it
reduces the leftmost innermost operation, one per step, until a number remains.
Difficulty = number of operations.
"""

from __future__ import annotations

import operator
import random

from orca_jax.synthetic.base import Solution, Step, basic_normalize

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def render(tree) -> str:
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    return f"({render(left)} {op} {render(right)})"


def _sample_tree(rng: random.Random, n_ops: int):
    if n_ops == 0:
        return rng.randint(-9, 9)
    n_left = rng.randint(0, n_ops - 1)
    return (rng.choice(sorted(_OPS)), _sample_tree(rng, n_left), _sample_tree(rng, n_ops - 1 - n_left))


def _reduce_first(tree, slip: int):
    """Reduces the leftmost operation whose operands are both numbers.

    Returns (new tree, (a, op, b, value)); `slip` is added to the computed value."""
    op, left, right = tree
    if isinstance(left, int) and isinstance(right, int):
        value = _OPS[op](left, right) + slip
        return value, (left, op, right, value)
    if not isinstance(left, int):
        new_left, done = _reduce_first(left, slip)
        return (op, new_left, right), done
    new_right, done = _reduce_first(right, slip)
    return (op, left, new_right), done


class MultistepArithmetic:
    name = "multistep_arithmetic"
    method = ("Work from the innermost parentheses outward: each pair of parentheses holds one operation, "
              "and its result replaces it.")
    levels = {"train": (2, 3), "test": (4, 5)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        tree = _sample_tree(rng, level)
        return f"Compute: {render(tree)} =", {"tree": tree}

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        tree, steps = _as_tree(data["tree"]), []
        while not isinstance(tree, int):
            slip = rng.choice((-2, -1, 1, 2)) if slip_at == len(steps) else 0
            tree, (a, op, b, value) = _reduce_first(tree, slip)
            rest = "." if isinstance(tree, int) else f", so the expression becomes {render(tree)}."
            steps.append(Step(full=f"{a} {op} {b} = {value}{rest}", brief=f"{a} {op} {b} = {value}."))
        return Solution(tuple(steps), str(tree))

    def normalize(self, answer: str) -> str:
        text = basic_normalize(answer)
        try:
            return str(int(text))
        except ValueError:
            return text


def _as_tree(tree):
    # Trees read back from JSON metadata come as lists; operations are 3-element tuples.
    return tree if isinstance(tree, int) else (tree[0], _as_tree(tree[1]), _as_tree(tree[2]))
