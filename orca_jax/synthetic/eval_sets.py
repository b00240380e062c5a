"""Held-out synthetic instances written in BIG-Bench Hard's file layout, so the
evaluation reads and scores them exactly as it does real BBH tasks."""

from __future__ import annotations

import json
import os

from orca_jax.synthetic.base import make_instance
from orca_jax.synthetic.families import FAMILIES


def write_bbh_layout(data_dir: str, split: str, n_per_family: int, seed: int,
                     families: tuple[str, ...] | None = None) -> list[str]:
    """Writes `data_dir/bbh/<family>.json` ({"examples": [{"input", "target"}]});
    returns the task names."""
    os.makedirs(os.path.join(data_dir, "bbh"), exist_ok=True)
    names = list(families or FAMILIES)
    for name in names:
        instances = [make_instance(FAMILIES[name], split, i, seed) for i in range(n_per_family)]
        with open(os.path.join(data_dir, "bbh", f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump({"examples": [{"input": x.question, "target": x.answer} for x in instances]}, f, indent=1)
    return names
