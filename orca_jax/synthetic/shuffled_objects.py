"""Tracking shuffled objects (in the spirit of BBH tracking_shuffled_objects).

People start with one ball each and swap in pairs; the question asks who holds
what at the end. The solver writes down the state after every swap. Difficulty =
number of swaps (held-out also has more people).
"""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, Step, basic_normalize

PEOPLE = ("Alice", "Bob", "Claire", "Dave", "Eve")
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink", "brown")


def _n_people(level: int) -> int:
    return 3 if level <= 3 else 5


def _join(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1]


class ShuffledObjects:
    name = "tracking_shuffled_objects"
    method = "Keep a list of who holds which ball and update it after every swap; the last list gives the answer."
    levels = {"train": (2, 3), "test": (5, 6)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        people = list(PEOPLE[: _n_people(level)])
        balls = rng.sample(COLORS, len(people))
        swaps = [rng.sample(range(len(people)), 2) for _ in range(level)]
        query = rng.randrange(len(people))
        holdings = _join([f"{p} has the {b} ball" for p, b in zip(people, balls)])
        moves = " ".join(f"Swap {i + 1}: {people[a]} and {people[b]} swap balls." for i, (a, b) in enumerate(swaps))
        question = (f"{_join(people)} each hold a ball: {holdings}. {moves} "
                    f"At the end, which ball does {people[query]} have?")
        return question, {"people": people, "balls": balls, "swaps": swaps, "query": query}

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        people, state, steps = data["people"], list(data["balls"]), []
        for a, b in data["swaps"]:
            if slip_at == len(steps):  # swaps the wrong pair: keeps a, replaces b
                b = rng.choice([i for i in range(len(people)) if i not in (a, b)])
            state[a], state[b] = state[b], state[a]
            full = f"After {people[a]} and {people[b]} swap: " + ", ".join(
                f"{p} has {s}" for p, s in zip(people, state)) + "."
            steps.append(Step(full=full, brief=f"{people[a]} has {state[a]}, {people[b]} has {state[b]}."))
        query = data["query"]
        held = state[query]
        if slip_at == len(steps):  # misreads the final list
            held = rng.choice([s for s in state if s != held])
        steps.append(Step(full=f"At the end, {people[query]} has the {held} ball.",
                          brief=f"{people[query]} ends with {held}."))
        return Solution(tuple(steps), held)

    def normalize(self, answer: str) -> str:
        text = basic_normalize(answer)
        return text.removeprefix("the ").removesuffix(" ball")
