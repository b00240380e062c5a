"""Evaluation outputs: predictions.jsonl and the paper-style summary (JSON, Markdown, CSV)."""

import csv
import io
import json
import os

_NAMES = {"bbh": "BIG-Bench Hard", "agieval": "AGIEval", "gsm8k": "GSM8K", "mc": "Multiple choice"}
_AVERAGE_NOTE = {"agieval": "average (English MC)", "bbh": "average (over tasks)"}


def _pct(value: float) -> str:
    return f"{value:.2f}"


def summary_markdown(summary: dict) -> str:
    lines = ["| benchmark | average |", "| --- | --- |"]
    lines += [f"| {_NAMES.get(b, b)} | {_pct(s['average'])} |" for b, s in summary.items()]
    for benchmark, entry in summary.items():
        flexible = "average_flexible" in entry
        header = "| task | n | accuracy | format OK |" + (" flexible accuracy |" if flexible else "")
        lines += ["", f"### {_NAMES.get(benchmark, benchmark)}", "", header, "| --- | --- | --- | --- |" + (" --- |" if flexible else "")]
        for task, t in entry["tasks"].items():
            row = f"| {task} | {t['n']} | {_pct(t['accuracy'])} | {_pct(t['format_ok'])} |"
            lines.append(row + (f" {_pct(t['accuracy_flexible'])} |" if flexible else ""))
        total = sum(t["n"] for t in entry["tasks"].values())
        row = f"| **{_AVERAGE_NOTE.get(benchmark, 'average')}** | {total} | **{_pct(entry['average'])}** | |"
        lines.append(row + (f" **{_pct(entry['average_flexible'])}** |" if flexible else ""))
    return "\n".join(lines) + "\n"


def summary_csv(summary: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["benchmark", "task", "n", "accuracy", "format_ok", "accuracy_flexible"])
    for benchmark, entry in summary.items():
        for task, t in entry["tasks"].items():
            writer.writerow([benchmark, task, t["n"], t["accuracy"], t["format_ok"], t.get("accuracy_flexible", "")])
        writer.writerow([benchmark, "average", sum(t["n"] for t in entry["tasks"].values()), entry["average"], "", entry.get("average_flexible", "")])
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
