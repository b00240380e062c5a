"""Scoring: (benchmark, task, prediction, target) -> extracted answer, correctness, summary.

Works on plain records so that outputs of any model can be re-scored with the same rules
(`orca-jax eval --predictions FILE`). A record needs `benchmark`, `task`, `prediction`
and `target`; generic multiple choice (`mc`) may give `num_choices` so that options
beyond F are recognised (AGIEval's own letter sets otherwise), and BBH may give `options`
(letter -> option text) so that the lenient rule also reads an option named by its text.

Each record is scored by the benchmark's official rule (`correct`, `extracted`,
`format_ok`) and by the second rules of `SECOND_RULES` beside it (`correct_<rule>`,
`extracted_<rule>`): BBH's lenient rule, AGIEval's few-shot-CoT rule, GSM8K's flexible
rule (see `extraction`).

Summary layout (accuracies in percent)::

    {"<benchmark>": {"tasks": {"<task>": {"accuracy": float, "format_ok": float, "n": int,
                                          "accuracy_<rule>": float, ...}},
                     "average": float, "average_<rule>": float, ..., "format_ok": float,
                     "averaged_tasks": [str], "n": int}}

`average` is the papers' aggregate: the unweighted mean over tasks (BBH over its tasks;
AGIEval over the English multiple-choice subsets only, as Orca reports it, `math`
listed but not averaged); `averaged_tasks` names the tasks it averages, and the
benchmark's `n` and `format_ok` count those tasks only.
"""

from dataclasses import dataclass

from orca_jax.data.jsonl import read_jsonl
from orca_jax.errors import UserError
from orca_jax.evaluation import extraction
from orca_jax.evaluation.benchmarks import AGIEVAL_ENGLISH_MC, BENCHMARKS, LETTERS
from orca_jax.evaluation.math_equivalence import is_equiv

REQUIRED_FIELDS = ("benchmark", "task", "prediction", "target")


# The second rule each benchmark reports beside its official one.
SECOND_RULES = {"bbh": "lenient", "agieval": "few_shot_rule", "gsm8k": "flexible"}


@dataclass(frozen=True)
class Score:
    extracted: str | None
    correct: bool
    format_ok: bool
    extracted_second: str | None = None  # by the benchmark's SECOND_RULES rule, where it has one
    correct_second: bool | None = None


def score_prediction(benchmark: str, task: str, prediction: str, target: str, num_choices: int | None = None,
                     options: dict[str, str] | None = None) -> Score:
    if benchmark == "bbh":
        answer, ok = extraction.extract_bbh(prediction)
        return Score(answer, answer == target.strip(), ok, *extraction.bbh_lenient(prediction, target, options))
    if benchmark == "gsm8k":
        # A full GSM8K solution as target is reduced to its final number, as the dataset's code does.
        target = extraction.extract_gsm8k_strict(target)[0] if "####" in target else target.strip()
        strict, ok = extraction.extract_gsm8k_strict(prediction)
        flexible, _ = extraction.extract_gsm8k_flexible(prediction)
        return Score(strict, strict == target, ok, flexible, extraction.same_number(flexible, target))
    if benchmark == "agieval" and task == "math":
        answer, ok = extraction.extract_math(prediction)
        return Score(answer, is_equiv(answer, target), ok)
    if benchmark == "agieval":
        answer, ok = extraction.first_capital_letter(prediction)
        few_shot, _ = extraction.extract_choice(prediction)
        return Score(answer, answer == target.strip(), ok, few_shot, few_shot == target.strip())
    if benchmark == "mc":
        letters = LETTERS[:num_choices] if num_choices else None
        answer, ok = extraction.extract_choice(prediction, letters, letters) if letters else extraction.extract_choice(prediction)
        return Score(answer, answer == target.strip(), ok)
    raise ValueError(f"unknown benchmark {benchmark!r}")


def score_record(record: dict) -> dict:
    """The record with `extracted`, `correct`, `format_ok` (and the second rule's pair) set."""
    score = score_prediction(record["benchmark"], record["task"], record["prediction"], record["target"],
                             record.get("num_choices"), record.get("options"))
    out = dict(record, extracted=score.extracted, correct=score.correct, format_ok=score.format_ok)
    if score.correct_second is not None:
        rule = SECOND_RULES[record["benchmark"]]
        out.update({f"extracted_{rule}": score.extracted_second, f"correct_{rule}": score.correct_second})
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _task_row(benchmark: str, rows: list[dict]) -> dict:
    row = {"accuracy": 100.0 * _mean([r["correct"] for r in rows]),
           "format_ok": 100.0 * _mean([r["format_ok"] for r in rows]), "n": len(rows)}
    rule = SECOND_RULES.get(benchmark)
    if rule and all(f"correct_{rule}" in r for r in rows):
        row[f"accuracy_{rule}"] = 100.0 * _mean([r[f"correct_{rule}"] for r in rows])
    return row


def summarize(scored: list[dict]) -> dict:
    grouped: dict[str, dict[str, list[dict]]] = {}
    for r in scored:
        grouped.setdefault(r["benchmark"], {}).setdefault(r["task"], []).append(r)
    summary = {}
    for benchmark, tasks in grouped.items():
        table = {task: _task_row(benchmark, rows) for task, rows in tasks.items()}
        averaged = [t for t in table if t in AGIEVAL_ENGLISH_MC] if benchmark == "agieval" else list(table)
        averaged = averaged or list(table)
        entry = {"tasks": table, "average": _mean([table[t]["accuracy"] for t in averaged])}
        rule = SECOND_RULES.get(benchmark)
        if rule and all(f"accuracy_{rule}" in table[t] for t in averaged):
            entry[f"average_{rule}"] = _mean([table[t][f"accuracy_{rule}"] for t in averaged])
        entry.update(format_ok=_mean([table[t]["format_ok"] for t in averaged]), averaged_tasks=averaged,
                     n=sum(table[t]["n"] for t in averaged))
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
        options = record.get("options")
        if options is not None and not (isinstance(options, dict) and all(
                isinstance(k, str) and len(k) == 1 and isinstance(v, str) for k, v in options.items())):
            raise UserError(f"{path}:{line_no}: field 'options': expected an object of letter -> option text")
        num_choices = record.get("num_choices")
        if num_choices is not None and (not isinstance(num_choices, int) or not 2 <= num_choices <= len(LETTERS)):
            raise UserError(f"{path}:{line_no}: field 'num_choices': expected an integer from 2 to {len(LETTERS)}, got {num_choices!r}")
        if record["benchmark"] not in BENCHMARKS:
            raise UserError(f"{path}:{line_no}: field 'benchmark': unknown '{record['benchmark']}' (known: {', '.join(BENCHMARKS)})")
        records.append(record)
    if not records:
        raise UserError(f"{path}: no predictions")
    return records
