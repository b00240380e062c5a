"""Word sorting (in the spirit of BBH word_sorting), solved by repeatedly picking the
alphabetically first remaining word. Difficulty = number of words."""

from __future__ import annotations

import random

from orca_jax.synthetic.base import Solution, Step, basic_normalize

WORDS = (
    "apple", "anchor", "badge", "banana", "basket", "candle", "carrot", "castle", "cherry", "cloud",
    "desert", "dragon", "eagle", "engine", "falcon", "forest", "garden", "ginger", "harbor", "hammer",
    "island", "jacket", "jungle", "kettle", "kitten", "ladder", "lemon", "marble", "meadow", "mirror",
    "needle", "nickel", "orange", "oyster", "paper", "pepper", "planet", "pocket", "quartz", "rabbit",
    "river", "rocket", "saddle", "silver", "spider", "tiger", "tunnel", "violet", "wagon", "window",
)


class WordSorting:
    name = "word_sorting"
    method = "Compare the words letter by letter from the first letter; repeatedly take the word that comes first."
    levels = {"train": (3, 4), "test": (6, 7)}

    def sample(self, rng: random.Random, level: int) -> tuple[str, dict]:
        words = rng.sample(WORDS, level)
        return f"Sort the following words alphabetically: List: {' '.join(words)}", {"words": words}

    def solve(self, data: dict, slip_at: int | None = None, rng: random.Random | None = None) -> Solution:
        remaining, ordered, steps = list(data["words"]), [], []
        while len(remaining) > 1:
            ranked = sorted(remaining)
            pick = ranked[1] if slip_at == len(steps) else ranked[0]  # a slip takes the runner-up
            steps.append(Step(full=f"Of {', '.join(remaining)}, the first alphabetically is {pick}.", brief=f"{pick}."))
            remaining.remove(pick)
            ordered.append(pick)
        ordered += remaining
        if slip_at == len(steps):  # swaps two neighbours while writing the list out
            i = rng.randrange(len(ordered) - 1)
            ordered[i], ordered[i + 1] = ordered[i + 1], ordered[i]
        answer = " ".join(ordered)
        steps.append(Step(full=f"In order: {answer}.", brief=f"{answer}."))
        return Solution(tuple(steps), answer)

    def normalize(self, answer: str) -> str:
        return basic_normalize(answer).replace(",", "")
