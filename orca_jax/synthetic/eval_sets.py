"""Held-out synthetic instances written in BIG-Bench Hard's file layout, so the
evaluation reads and scores them exactly as it does real BBH tasks; the strong teacher's
steps for each go beside them (`step_diagnostics`)."""

from __future__ import annotations

import itertools
import json
import os
from typing import Callable

from orca_jax.synthetic.base import Instance, make_instance
from orca_jax.synthetic.families import FAMILIES
from orca_jax.synthetic.step_diagnostics import write_references


def write_bbh_layout(data_dir: str, split: str, n_per_family: int, seed: int,
                     families: tuple[str, ...] | None = None, keep: Callable[[Instance], bool] | None = None,
                     max_draws_per_family: int = 100_000) -> list[str]:
    """Writes `data_dir/bbh/<family>.json` ({"examples": [{"input", "target"}]}) with the
    first `n_per_family` instances `keep` accepts (all by default), and their reference
    steps under `data_dir/reference_steps/`; returns the task names."""
    os.makedirs(os.path.join(data_dir, "bbh"), exist_ok=True)
    names = list(families or FAMILIES)
    for name in names:
        candidates = (make_instance(FAMILIES[name], split, i, seed) for i in range(max_draws_per_family))
        instances = list(itertools.islice((x for x in candidates if keep is None or keep(x)), n_per_family))
        if len(instances) < n_per_family:
            raise ValueError(f"{name}/{split}: only {len(instances)} of {n_per_family} instances accepted "
                             f"in {max_draws_per_family} draws")
        with open(os.path.join(data_dir, "bbh", f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump({"examples": [{"input": x.question, "target": x.answer} for x in instances]}, f, indent=1)
        write_references(data_dir, name, instances)
    return names
