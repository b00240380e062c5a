"""The registry of synthetic task families, by name: three serial families, where the
literature expects written intermediate steps to help a small model, and one control
family that parallelises, where it expects no gain (`SERIAL`, `CONTROL`)."""

from __future__ import annotations

from orca_jax.synthetic.base import Family
from orca_jax.synthetic.digit_sorting import DigitSorting
from orca_jax.synthetic.modular_arithmetic import ModularArithmetic
from orca_jax.synthetic.running_parity import RunningParity
from orca_jax.synthetic.shuffled_objects import ShuffledObjects

FAMILIES: dict[str, Family] = {f.name: f for f in (
    ShuffledObjects(), ModularArithmetic(), RunningParity(), DigitSorting())}
SERIAL = ("tracking_shuffled_objects", "modular_arithmetic", "running_parity")
CONTROL = ("digit_sorting",)


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown synthetic task family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
