"""Benchmark readers: official file layouts -> `Example`s.

Layout under `--data_dir` (the official releases, unchanged):

- `bbh/<task>.json`: BIG-Bench Hard, `{"examples": [{"input", "target"}]}`, 27 tasks
  (any task in this layout is read, e.g. synthetic held-out sets).
- `agieval/<task>.jsonl`: AGIEval v1, one object per line with `passage` (or null),
  `question`, `options` (["(A)...", ...]), `label` (letter; multiple choice) and `answer`
  (cloze answer; `math`). Read: the English multiple-choice subsets used by Orca and `math`.
- `gsm8k/test.jsonl`: `question`, `answer` ending in `#### N`.
- `mc/<task>.jsonl`: generic multiple choice, for MMLU, ARC and the like. One object per
  line::

      {"id": "q1", "question": "Which gas ...?", "choices": ["O2", "CO2", "N2"],
       "answer": "B", "passage": "optional context"}

  `choices` has 2 to 26 entries, `answer` is the correct letter or its 0-based index,
  `id` and `passage` are optional. It is scored with AGIEval's multiple-choice rule over
  the letters the question offers.

A benchmark spec is `name` (all its default tasks) or `name:task`, e.g. `bbh:navigate`.
"""

import json
import os
from dataclasses import dataclass

from orca_jax.data.jsonl import read_jsonl
from orca_jax.errors import UserError
from orca_jax.evaluation.extraction import extract_gsm8k_strict

# The English multiple-choice subsets Orca averages as "AGIEval".
AGIEVAL_ENGLISH_MC = (
    "aqua-rat", "logiqa-en", "lsat-ar", "lsat-lr", "lsat-rc", "sat-math", "sat-en",
    "sat-en-without-passage",
)
AGIEVAL_TASKS = AGIEVAL_ENGLISH_MC + ("math",)
BENCHMARKS = ("bbh", "agieval", "gsm8k", "mc")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def task_file(benchmark: str, task: str) -> str:
    """A task's file under --data_dir, e.g. bbh/navigate.json."""
    return f"{benchmark}/{task}" + (".json" if benchmark == "bbh" else ".jsonl")


@dataclass(frozen=True)
class Example:
    benchmark: str
    task: str
    id: str
    question: str
    target: str
    options: tuple[str, ...] = ()  # multiple choice, each labelled "(A)..."
    passage: str = ""  # reading passage the question refers to (AGIEval, mc)


def _field(where: str, row: dict, name: str, kind: type | tuple[type, ...]):
    """row[name], checked; `where` is "FILE:LINE" (JSONL) or "FILE: examples[i]" (JSON)."""
    value = row.get(name) if isinstance(row, dict) else None
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        got = type(value).__name__ if isinstance(row, dict) and name in row else "missing"
        raise UserError(f"{where}: field '{name}': expected {expected}, got {got}")
    return value


def read_bbh(data_dir: str, task: str) -> list[Example]:
    path = os.path.join(data_dir, task_file("bbh", task))
    with open(path, encoding="utf-8") as f:
        try:
            examples = json.load(f)["examples"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{path}: expected a JSON object with an 'examples' list") from None
    return [
        Example("bbh", task, f"{task}/{i}", _field(f"{path}: examples[{i}]", ex, "input", str),
                _field(f"{path}: examples[{i}]", ex, "target", str))
        for i, ex in enumerate(examples)
    ]


def read_agieval(data_dir: str, task: str) -> list[Example]:
    path = os.path.join(data_dir, task_file("agieval", task))
    examples = []
    for line_no, row in read_jsonl(path):
        where, key = f"{path}:{line_no}", f"{task}/{line_no - 1}"
        question, passage = _field(where, row, "question", str), row.get("passage") or ""
        if task == "math":
            examples.append(Example("agieval", task, key, question, _field(where, row, "answer", str), passage=passage))
        else:
            options = tuple(_field(where, row, "options", list))
            examples.append(Example("agieval", task, key, question, _field(where, row, "label", str), options, passage))
    return examples


def read_gsm8k(data_dir: str, task: str) -> list[Example]:
    path = os.path.join(data_dir, task_file("gsm8k", task))
    examples = []
    for line_no, row in read_jsonl(path):
        target, ok = extract_gsm8k_strict(_field(f"{path}:{line_no}", row, "answer", str))
        if not ok:
            raise UserError(f"{path}:{line_no}: field 'answer': expected a final '#### N' line")
        examples.append(Example("gsm8k", task, f"{task}/{line_no - 1}", _field(f"{path}:{line_no}", row, "question", str), target))
    return examples


def read_mc(data_dir: str, task: str) -> list[Example]:
    path = os.path.join(data_dir, task_file("mc", task))
    examples = []
    for line_no, row in read_jsonl(path):
        choices = _field(f"{path}:{line_no}", row, "choices", list)
        if not 2 <= len(choices) <= len(LETTERS) or not all(isinstance(c, str) for c in choices):
            raise UserError(f"{path}:{line_no}: field 'choices': expected a list of 2 to 26 strings")
        answer = _field(f"{path}:{line_no}", row, "answer", (str, int))
        letters = LETTERS[: len(choices)]
        if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
            answer = letters[answer]
        if not isinstance(answer, str) or answer not in letters:
            raise UserError(f"{path}:{line_no}: field 'answer': expected one of {letters} or an index below {len(choices)}, got {row['answer']!r}")
        question = _field(f"{path}:{line_no}", row, "question", str)
        options = tuple(f"({letter}){choice}" for letter, choice in zip(letters, choices))
        examples.append(Example("mc", task, str(row.get("id", f"{task}/{line_no - 1}")), question, answer, options,
                                row.get("passage") or ""))
    return examples


_READERS = {"bbh": read_bbh, "agieval": read_agieval, "gsm8k": read_gsm8k, "mc": read_mc}


def _task_files(data_dir: str, benchmark: str, suffix: str) -> tuple[str, ...]:
    folder = os.path.join(data_dir, benchmark)
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: no such directory (expected {benchmark}/<task>{suffix} in --data_dir)")
    return tuple(sorted(f[: -len(suffix)] for f in os.listdir(folder) if f.endswith(suffix)))


def available_tasks(data_dir: str, benchmark: str) -> tuple[str, ...]:
    """BBH and generic MC: every task file present (the 27 official BBH tasks, or e.g. the
    quickstart's synthetic sets in BBH layout); AGIEval: the English MC subsets and math."""
    if benchmark == "agieval":
        return AGIEVAL_TASKS
    if benchmark == "gsm8k":
        return ("test",)
    return _task_files(data_dir, benchmark, ".json" if benchmark == "bbh" else ".jsonl")


def parse_specs(data_dir: str, specs: str | list[str]) -> list[tuple[str, str]]:
    """'bbh,agieval:lsat-ar' -> [(benchmark, task), ...], validated against the data dir."""
    if not os.path.isdir(data_dir):
        raise UserError(f"--data_dir {data_dir}: no such directory")
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    pairs = []
    for spec in specs:
        benchmark, _, task = spec.strip().partition(":")
        if benchmark not in _READERS:
            raise UserError(f"unknown benchmark '{benchmark}' (known: {', '.join(BENCHMARKS)})")
        tasks = available_tasks(data_dir, benchmark)
        if task and task not in tasks:
            raise UserError(f"unknown {benchmark} task '{task}' (known: {', '.join(tasks)})")
        pairs += [(benchmark, t) for t in ([task] if task else tasks) if (benchmark, t) not in pairs]
    return pairs


def load_examples(data_dir: str, specs: str | list[str], limit: int | None = None) -> list[Example]:
    """All examples of the given specs; `limit` keeps the first N of each task."""
    examples = []
    for benchmark, task in parse_specs(data_dir, specs):
        try:
            task_examples = _READERS[benchmark](data_dir, task)
        except FileNotFoundError as e:
            raise UserError(f"{e.filename}: missing ({benchmark} task '{task}' in --data_dir {data_dir})") from None
        examples += task_examples[:limit] if limit is not None else task_examples
    return examples
