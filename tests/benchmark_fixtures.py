"""Small crafted benchmark files in the official layouts (BBH's 27 task names, AGIEval's
English multiple-choice subsets and math, GSM8K's test file), one or two items each, and
the same files laid out as a GitHub mirror for the fetch tests. Nothing here is copied
from the real benchmarks."""

import json
import os

from orca_jax.evaluation.benchmarks import AGIEVAL_TASKS
from orca_jax.evaluation.data_sources import SOURCES
from orca_jax.evaluation.protocols import BBH_FREE_FORM, BBH_MULTIPLE_CHOICE


def official_files() -> dict[str, bytes]:
    """Layout path -> content, e.g. 'bbh/navigate.json'."""
    files = {}
    for i, task in enumerate(BBH_MULTIPLE_CHOICE + BBH_FREE_FORM):
        if task in BBH_FREE_FORM:
            examples = [{"input": f"Sort the words of item {i}: kiwi apple", "target": "apple kiwi"}]
        else:
            examples = [{"input": f"Question {i} about {task}?\nOptions:\n(A) red\n(B) blue", "target": "(B)"}]
        files[f"bbh/{task}.json"] = json.dumps({"examples": examples}).encode()
    for task in AGIEVAL_TASKS:
        if task == "math":
            row = {"passage": None, "question": "What is $2+3$?", "options": None, "label": None, "answer": "5"}
        else:
            row = {"passage": None, "question": f"Which colour in {task}?", "options": ["(A)red", "(B)blue", "(C)green"],
                   "label": "C", "answer": None}
        files[f"agieval/{task}.jsonl"] = (json.dumps(row) + "\n").encode()
    files["gsm8k/test.jsonl"] = (json.dumps({"question": "Ann has 2 pens and buys 3. How many?",
                                             "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}) + "\n").encode()
    return files


def write_layout(root) -> str:
    for name, content in official_files().items():
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(root, name), "wb") as f:
            f.write(content)
    return str(root)


def write_mirror(root) -> str:
    """The files where data_sources.MirrorSource looks: <owner>/<repo>/<commit>/<repo path>."""
    files = official_files()
    for source in SOURCES.values():
        for name, repo_path in source.files.items():
            path = os.path.join(root, source.repo, source.commit, repo_path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(files[name])
    return str(root)
