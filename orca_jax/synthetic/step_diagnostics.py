"""Step-by-step scoring of explanations against the strong teacher's, to see where a
student's reasoning first goes wrong and what kind of error it was.

Every family writes its steps as `operand>result` lines (`base.chained_steps`). A
prediction's steps are its lines that contain `>`; step k is right when it equals the
reference's line k. The first wrong step is classed as:
- "copy": the part of the operand that the step copies from the question is wrong;
- "compute": that part is right (or the step copies nothing) but the rest is wrong;
- "missing": the prediction stops before the reference does;
- "extra": every reference step is right, but more steps follow.

The references are written beside the evaluation sets (`eval_sets.write_bbh_layout`), one
list of steps per example, in the examples' order.
"""

from __future__ import annotations

import json
import os

from orca_jax.synthetic.base import Instance
from orca_jax.synthetic.families import get_family

REFERENCE_DIR = "reference_steps"
ERROR_KINDS = ("copy", "compute", "missing", "extra")


def reference_steps(instance: Instance) -> list[dict]:
    return [{"line": s.full, "copied": s.copied} for s in get_family(instance.family).solve(instance.data).steps]


def write_references(data_dir: str, family: str, instances: list[Instance]) -> None:
    os.makedirs(os.path.join(data_dir, REFERENCE_DIR), exist_ok=True)
    with open(os.path.join(data_dir, REFERENCE_DIR, f"{family}.json"), "w", encoding="utf-8") as f:
        json.dump([reference_steps(x) for x in instances], f)


def read_references(data_dir: str, family: str) -> list[list[dict]]:
    with open(os.path.join(data_dir, REFERENCE_DIR, f"{family}.json"), encoding="utf-8") as f:
        return json.load(f)


def explanation_steps(prediction: str) -> list[str]:
    return [line.strip() for line in prediction.splitlines() if ">" in line]


def diagnose(prediction: str, reference: list[dict]) -> dict:
    """`{"right": [bool per reference step], "first_error": index or None, "kind": one of
    ERROR_KINDS or None}`."""
    predicted = explanation_steps(prediction)
    right = [k < len(predicted) and predicted[k] == step["line"] for k, step in enumerate(reference)]
    first = next((k for k, ok in enumerate(right) if not ok), None)
    if first is None:
        return {"right": right, "first_error": len(reference) if len(predicted) > len(reference) else None,
                "kind": "extra" if len(predicted) > len(reference) else None}
    if first >= len(predicted):
        kind = "missing"
    else:
        copied = reference[first]["copied"]
        kind = "copy" if copied and not predicted[first].split(">")[0].endswith(copied) else "compute"
    return {"right": right, "first_error": first, "kind": kind}


def summarize_steps(records: list[dict], data_dir: str) -> dict[str, dict]:
    """Task -> `{"n", "explained", "all_steps_right", "step_accuracy", "first_error"}` in percent:
    predictions with any step line, with every step right, right at each step k, and the
    first error's kind."""
    by_task: dict[str, list[dict]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
    summary = {}
    for task, rows in by_task.items():
        references = read_references(data_dir, task)
        diagnoses = [diagnose(r["prediction"], references[int(r["id"].rsplit("/", 1)[1])]) for r in rows]
        n, longest = len(rows), max(len(d["right"]) for d in diagnoses)
        summary[task] = {
            "n": n,
            "explained": 100.0 * sum(bool(explanation_steps(r["prediction"])) for r in rows) / n,
            "all_steps_right": 100.0 * sum(d["kind"] is None for d in diagnoses) / n,
            "step_accuracy": [100.0 * sum(k < len(d["right"]) and d["right"][k] for d in diagnoses) / n
                              for k in range(longest)],
            "first_error": {kind: 100.0 * sum(d["kind"] == kind for d in diagnoses) / n for kind in ERROR_KINDS},
        }
    return summary
