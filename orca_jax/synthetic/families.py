"""The registry of synthetic task families, by name."""

from __future__ import annotations

from orca_jax.synthetic.addition import MultiDigitAddition
from orca_jax.synthetic.arithmetic import MultistepArithmetic
from orca_jax.synthetic.base import Family
from orca_jax.synthetic.boolean_expressions import BooleanExpressions
from orca_jax.synthetic.shuffled_objects import ShuffledObjects
from orca_jax.synthetic.word_sorting import WordSorting

FAMILIES: dict[str, Family] = {f.name: f for f in (
    MultistepArithmetic(), BooleanExpressions(), ShuffledObjects(), MultiDigitAddition(), WordSorting())}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown synthetic task family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
