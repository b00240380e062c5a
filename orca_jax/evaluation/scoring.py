"""Scoring: (benchmark, task, prediction, target) -> extracted answer, correctness, summary.

Works on plain records so that outputs of any model can be re-scored with the same rules
(`orca-jax eval --predictions FILE`). A record needs `benchmark`, `task`, `prediction`
and `target`; generic multiple choice (`mc`) may give `num_choices` so that options
beyond F are recognised (AGIEval's own letter sets otherwise).

Summary layout (accuracies in percent)::

    {"<benchmark>": {"tasks": {"<task>": {"accuracy": float, "format_ok": float, "n": int}},
                     "average": float}}

`average` is the papers' aggregate: the unweighted mean over tasks (BBH over its tasks;
AGIEval over the English multiple-choice subsets only, as Orca reports it, `math`
listed but not averaged). GSM8K's `accuracy` is the strict (official) one;
`accuracy_flexible` sits beside it, and `average_flexible` at the benchmark level.
"""

from dataclasses import dataclass

from orca_jax.data.jsonl import read_jsonl
from orca_jax.errors import UserError
from orca_jax.evaluation import extraction
from orca_jax.evaluation.benchmarks import AGIEVAL_ENGLISH_MC, BENCHMARKS, LETTERS
from orca_jax.evaluation.math_equivalence import is_equiv

REQUIRED_FIELDS = ("benchmark", "task", "prediction", "target")


@dataclass(frozen=True)
class Score:
    extracted: str | None
    correct: bool
    format_ok: bool
    extracted_flexible: str | None = None  # GSM8K only
    correct_flexible: bool | None = None


def score_prediction(benchmark: str, task: str, prediction: str, target: str, num_choices: int | None = None) -> Score:
    if benchmark == "bbh":
        answer, ok = extraction.extract_bbh(prediction)
        return Score(answer, answer == target.strip(), ok)
    if benchmark == "gsm8k":
        # A full GSM8K solution as target is reduced to its final number, as the dataset's code does.
        target = extraction.extract_gsm8k_strict(target)[0] if "####" in target else target.strip()
        strict, ok = extraction.extract_gsm8k_strict(prediction)
        flexible, _ = extraction.extract_gsm8k_flexible(prediction)
        return Score(strict, strict == target, ok, flexible, extraction.same_number(flexible, target))
    if benchmark == "agieval" and task == "math":
        answer, ok = extraction.extract_math(prediction)
        return Score(answer, is_equiv(answer, target), ok)
    if benchmark in ("agieval", "mc"):
        if num_choices:
            answer, ok = extraction.extract_choice(prediction, LETTERS[:num_choices], LETTERS[:num_choices])
        else:
            answer, ok = extraction.extract_choice(prediction)
        return Score(answer, answer == target.strip(), ok)
    raise ValueError(f"unknown benchmark {benchmark!r}")


def score_record(record: dict) -> dict:
    """The record with `extracted`, `correct`, `format_ok` (and GSM8K's flexible pair) set."""
    score = score_prediction(record["benchmark"], record["task"], record["prediction"], record["target"], record.get("num_choices"))
    out = dict(record, extracted=score.extracted, correct=score.correct, format_ok=score.format_ok)
    if score.correct_flexible is not None:
        out.update(extracted_flexible=score.extracted_flexible, correct_flexible=score.correct_flexible)
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarize(scored: list[dict]) -> dict:
    grouped: dict[str, dict[str, list[dict]]] = {}
    for r in scored:
        grouped.setdefault(r["benchmark"], {}).setdefault(r["task"], []).append(r)
    summary = {}
    for benchmark, tasks in grouped.items():
        table = {}
        for task, rows in tasks.items():
            table[task] = {
                "accuracy": 100.0 * _mean([r["correct"] for r in rows]),
                "format_ok": 100.0 * _mean([r["format_ok"] for r in rows]),
                "n": len(rows),
            }
            if benchmark == "gsm8k":
                table[task]["accuracy_flexible"] = 100.0 * _mean([r["correct_flexible"] for r in rows])
        averaged = [t for t in table if t in AGIEVAL_ENGLISH_MC] if benchmark == "agieval" else list(table)
        entry = {"tasks": table, "average": _mean([table[t]["accuracy"] for t in averaged or table])}
        if benchmark == "gsm8k":
            entry["average_flexible"] = _mean([v["accuracy_flexible"] for v in table.values()])
        summary[benchmark] = entry
    return summary


def read_predictions(path: str) -> list[dict]:
    """A predictions JSONL, each line checked for the fields scoring needs."""
    records = []
    for line_no, record in read_jsonl(path, "--predictions"):
        for name in REQUIRED_FIELDS:
            if not isinstance(record.get(name), str):
                problem = "missing" if name not in record else f"expected a string, got {type(record[name]).__name__}"
                raise UserError(f"{path}:{line_no}: field '{name}': {problem}")
        num_choices = record.get("num_choices")
        if num_choices is not None and (not isinstance(num_choices, int) or not 2 <= num_choices <= len(LETTERS)):
            raise UserError(f"{path}:{line_no}: field 'num_choices': expected an integer from 2 to {len(LETTERS)}, got {num_choices!r}")
        if record["benchmark"] not in BENCHMARKS:
            raise UserError(f"{path}:{line_no}: field 'benchmark': unknown '{record['benchmark']}' (known: {', '.join(BENCHMARKS)})")
        records.append(record)
    if not records:
        raise UserError(f"{path}: no predictions")
    return records
