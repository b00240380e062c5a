"""Boolean expressions over True/False with not/and/or (in the spirit of BBH boolean_expressions).

Binary operations are parenthesised; `not` binds to the operand right after it,
exactly as in Python, so `eval` is an independent reference. Difficulty = number
of operators.
"""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, Step, basic_normalize


def render(tree) -> str:
    if isinstance(tree, bool):
        return str(tree)
    if tree[0] == "not":
        return f"not {render(tree[1])}"
    op, left, right = tree
    return f"({render(left)} {op} {render(right)})"


def _sample_tree(rng: random.Random, n_ops: int):
    if n_ops == 0:
        return rng.random() < 0.5
    op = rng.choice(("not", "and", "or"))
    if op == "not":
        return ("not", _sample_tree(rng, n_ops - 1))
    n_left = rng.randint(0, n_ops - 1)
    return (op, _sample_tree(rng, n_left), _sample_tree(rng, n_ops - 1 - n_left))


def _apply(op: str, *args: bool) -> bool:
    if op == "not":
        return not args[0]
    return (args[0] and args[1]) if op == "and" else (args[0] or args[1])


def _reduce_first(tree, flip: bool):
    """Reduces the leftmost operator whose operands are all constants; `flip`
    inverts its result (a teacher's slip). Returns (new tree, (text, value))."""
    op, *args = tree
    if all(isinstance(a, bool) for a in args):
        value = _apply(op, *args) != flip
        return value, (render(tree).strip("()"), value)
    for i, arg in enumerate(args):
        if not isinstance(arg, bool):
            new_arg, done = _reduce_first(arg, flip)
            return (op, *args[:i], new_arg, *args[i + 1:]), done
    raise AssertionError("unreachable: a non-constant tree has a non-constant operand")


class BooleanExpressions:
    name = "boolean_expressions"
    method = ("Evaluate the innermost operations first: not flips a value, and is True only if both sides are True, "
              "or is True if either side is True.")
    levels = {"train": (2, 3), "test": (5, 6)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        tree = _sample_tree(rng, level)
        return f"Evaluate: {render(tree)} is", {"tree": tree}

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        tree, steps = _as_tree(data["tree"]), []
        while not isinstance(tree, bool):
            tree, (text, value) = _reduce_first(tree, flip=slip_at == len(steps))
            rest = "." if isinstance(tree, bool) else f", so the expression becomes {render(tree)}."
            steps.append(Step(full=f"{text} = {value}{rest}", brief=f"{text} = {value}."))
        return Solution(tuple(steps), str(tree))

    def normalize(self, answer: str) -> str:
        return basic_normalize(answer)


def _as_tree(tree):
    # Trees read back from JSON metadata come as lists.
    if isinstance(tree, bool):
        return tree
    return (tree[0], *(_as_tree(t) for t in tree[1:]))
