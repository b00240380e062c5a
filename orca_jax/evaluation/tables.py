"""Evaluation outputs: predictions.jsonl and the paper-style summary (JSON, Markdown, CSV).

A summary is `scoring.summarize`'s per-benchmark dict; `eval` adds the keys of `META_KEYS`:
the protocol it followed and the data files it read (shown as a header), and `lm_eval`, the
lm-evaluation-harness tasks' metrics as lm-eval reports them (`evaluation.harness`)."""

import csv
import io
import json
import os

from orca_jax.evaluation.scoring import SECOND_RULES

META_KEYS = ("protocol", "data", "lm_eval")
_NAMES = {"bbh": "BIG-Bench Hard", "agieval": "AGIEval", "gsm8k": "GSM8K", "mc": "Multiple choice"}
_AVERAGE_NOTE = {"agieval": "English MC"}
_RULE_TITLES = {"lenient": "lenient accuracy", "few_shot_rule": "few-shot-rule accuracy",
                "flexible": "flexible accuracy"}
# What each column means; written under the tables so that a reader need not open the code.
_EXPLANATIONS = {
    "bbh": "accuracy: BBH's official rule, exact match of the text after the last \"the answer is\" "
           "(else the whole reply). lenient: the option or word the reply names, however written "
           "(\"(A)\", \"A\", \"**(A)**\", \"(A) Yes\", the option's text; \"Valid\" for \"valid\"). "
           "format OK: the reply contains \"the answer is\", so the official rule read an answer sentence "
           "rather than the whole reply.",
    "agieval": "accuracy: AGIEval's official zero-shot rule, the first capital A-F anywhere in the reply "
               "(math: AGIEval's parse_math_answer and MATH equivalence). few-shot rule: AGIEval's few-shot-CoT "
               "rule, \"answer is\" then a letter on the last line, else the first capital A-F. "
               "format OK: the reply opens with its option letter, where the zero-shot prompt "
               "(\"... the answer is\") asks for it (math: the answer is in \\boxed{}); below 100 the official "
               "rule may have read a stray capital.",
    "gsm8k": "accuracy: GSM8K's strict rule, the number after \"#### \". flexible: the last number in the reply. "
             "format OK: the reply has a \"#### N\" line.",
    "mc": "accuracy: the option letter after \"answer is\" on the last line, else the first option letter. "
          "format OK: the reply has that \"answer is\" line.",
}


def _pct(value: float) -> str:
    return f"{value:.2f}"


def benchmark_entries(summary: dict) -> dict:
    return {b: e for b, e in summary.items() if b not in META_KEYS}


def _header(summary: dict) -> list[str]:
    lines = []
    protocol = summary.get("protocol")
    if protocol:
        lines += [f"Protocol **{protocol['name']}**: {protocol['source']}. System message: {protocol['system']}; "
                  f"prompt variant: {protocol['variant']}. The papers' numbers compare with: "
                  + ", ".join(f"{_NAMES.get(b, b)} {field}" for b, field in protocol["compare"].items()) + ".", ""]
    data = summary.get("data")
    if data:
        lines += [f"Data: {data['dir']}", "", "| file | sha256 | source |", "| --- | --- | --- |"]
        lines += [f"| {path} | {f['sha256'][:16]}... | {f.get('source', 'local')} |" for path, f in data["files"].items()]
        lines.append("")
    return lines


def summary_markdown(summary: dict) -> str:
    entries = benchmark_entries(summary)
    lines = _header(summary)
    if entries:
        lines += ["| benchmark | average |", "| --- | --- |"]
        lines += [f"| {_NAMES.get(b, b)} | {_pct(s['average'])} |" for b, s in entries.items()]
    for benchmark, entry in entries.items():
        rule = SECOND_RULES.get(benchmark)
        second = rule if rule and f"average_{rule}" in entry else None
        header = "| task | n | accuracy | format OK |" + (f" {_RULE_TITLES[second]} |" if second else "")
        lines += ["", f"### {_NAMES.get(benchmark, benchmark)}", "", header, "| --- | --- | --- | --- |" + (" --- |" if second else "")]
        for task, t in entry["tasks"].items():
            row = f"| {task} | {t['n']} | {_pct(t['accuracy'])} | {_pct(t['format_ok'])} |"
            rule_cell = _pct(t[f"accuracy_{second}"]) if second and f"accuracy_{second}" in t else ""  # math has none
            lines.append(row + (f" {rule_cell} |" if second else ""))
        label = f"average over {len(entry['averaged_tasks'])} tasks" + (
            f" ({_AVERAGE_NOTE[benchmark]})" if benchmark in _AVERAGE_NOTE else "")
        row = f"| **{label}** | {entry['n']} | **{_pct(entry['average'])}** | {_pct(entry['format_ok'])} |"
        lines.append(row + (f" **{_pct(entry[f'average_{second}'])}** |" if second else ""))
        if benchmark in _EXPLANATIONS:
            lines += ["", _EXPLANATIONS[benchmark]]
    harness = summary.get("lm_eval")
    if harness:
        lines += ["", f"### lm-evaluation-harness {harness['lm_eval_version']}", "", "| task | n | metric | value |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {task} | {t['n']} | {metric} | {value:.4f} |" for task, t in harness["tasks"].items()
                  for metric, value in t["metrics"].items()]
        lines += ["", "Metrics as lm-eval computes them (fractions, not percent), with each task's own prompt and scoring."]
    return "\n".join(lines) + "\n"


def summary_csv(summary: dict) -> str:
    """One row per task and one per benchmark average (n and format OK over the averaged tasks);
    lm-eval tasks one row per metric, in the last two columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["benchmark", "task", "n", "accuracy", "format_ok", "second_rule", "accuracy_second_rule",
                     "lm_eval_metric", "lm_eval_value"])
    for benchmark, entry in benchmark_entries(summary).items():
        rule = SECOND_RULES.get(benchmark, "")
        for task, t in entry["tasks"].items():
            writer.writerow([benchmark, task, t["n"], t["accuracy"], t["format_ok"], rule if f"accuracy_{rule}" in t else "",
                             t.get(f"accuracy_{rule}", "")])
        writer.writerow([benchmark, f"average over {len(entry['averaged_tasks'])} tasks", entry["n"], entry["average"],
                         entry["format_ok"], rule if f"average_{rule}" in entry else "", entry.get(f"average_{rule}", "")])
    for task, t in summary.get("lm_eval", {}).get("tasks", {}).items():
        for metric, value in t["metrics"].items():
            writer.writerow(["lm_eval", task, t["n"], "", "", "", "", metric, value])
    return buffer.getvalue()


def write_predictions(path: str, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_summary(out_dir: str, summary: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(summary_markdown(summary))
    with open(os.path.join(out_dir, "summary.csv"), "w", encoding="utf-8") as f:
        f.write(summary_csv(summary))
