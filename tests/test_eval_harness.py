"""lm-evaluation-harness as a backend: `orca-jax eval --harness` on local task YAMLs (json data
files) with the hub switched off; accuracy checked against our own per-sequence scorer, and
(slow) lm-eval's Hugging Face backend on SmolLM2 giving the same numbers and outputs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from eval_tiny_model import tiny_model  # noqa: E402
from orca_jax.cli import main  # noqa: E402
from orca_jax.model.hf_convert import save_hf_folder  # noqa: E402
from orca_jax.model.scoring import token_logprobs  # noqa: E402

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mc_items(n: int) -> list[dict]:
    """Small arithmetic questions with four choices, the right one at a varying index."""
    items = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        right = a + b
        choices = [str(right + d) for d in (-1, 0, 1, 2)]
        items.append({"question": f"What is {a} plus {b}?", "choices": choices, "answer": 1})
    return items


GEN_ITEMS = [{"question": "Say yes or no: is the sky green?", "answer": "no"},
             {"question": "Count to three:", "answer": "1 2 3"},
             {"question": "The opposite of hot is", "answer": "cold"}]


def write_tasks(root, mc_n: int) -> str:
    """Task YAMLs over local JSON Lines files: a multiple-choice task and a generation task."""
    os.makedirs(root, exist_ok=True)
    for name, rows in (("mc", mc_items(mc_n)), ("gen", GEN_ITEMS)):
        with open(os.path.join(root, f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    (root / "local_mc.yaml").write_text(textwrap.dedent(f"""\
        task: local_mc
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {root / "mc.jsonl"}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
        doc_to_choice: choices
        doc_to_target: answer
        metric_list:
          - metric: acc
        """))
    (root / "local_gen.yaml").write_text(textwrap.dedent(f"""\
        task: local_gen
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {root / "gen.jsonl"}
        test_split: test
        output_type: generate_until
        doc_to_text: "{{{{question}}}}"
        doc_to_target: "{{{{answer}}}}"
        generation_kwargs:
          until: ["\\n\\n"]
          max_gen_toks: 12
          do_sample: false
        metric_list:
          - metric: exact_match
        """))
    return str(root)


def reference_accuracy(config, params, tokenizer, items) -> float:
    """lm-eval's multiple-choice rule computed here: log p(" choice" | "Question: ...\\nAnswer:"),
    one sequence at a time through `token_logprobs`, argmax against the gold index."""
    right = 0
    for item in items:
        context = f"Question: {item['question']}\nAnswer:"
        scores = []
        for choice in item["choices"]:
            whole, ctx = tokenizer.encode(context + " " + choice), tokenizer.encode(context)
            scores.append(float(token_logprobs(config, params, whole)[len(ctx) - 1:].sum()))
        right += int(np.argmax(scores)) == item["answer"]
    return right / len(items)


def test_harness_tasks_offline_beside_builtin_tables(tmp_path):
    config, params, tokenizer = tiny_model()
    model_dir = str(tmp_path / "model")
    save_hf_folder(model_dir, config, params)
    tokenizer.save(model_dir)
    tasks = write_tasks(tmp_path / "tasks", 6)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "orca_jax.cli", "eval", "--model", model_dir, "--harness", "local_mc,local_gen",
         "--harness_include", tasks, "--out", str(out), "--batch_size", "4"],
        cwd=ROOT, env=dict(os.environ, **OFFLINE), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    harness = summary["lm_eval"]["tasks"]
    assert harness["local_mc"]["n"] == 6 and harness["local_gen"]["n"] == 3
    assert harness["local_mc"]["metrics"]["acc"] == reference_accuracy(config, params, tokenizer, mc_items(6))
    assert "exact_match" in harness["local_gen"]["metrics"]
    assert "| local_mc | 6 | acc |" in (out / "summary.md").read_text()
    assert "lm_eval,local_mc,6,,,,,acc," in (out / "summary.csv").read_text()


@pytest.mark.slow  # an unknown name makes lm-eval index its ~15k task YAMLs: about 15 s on a quiet core
def test_unknown_harness_task_is_one_clear_line(tmp_path, capsys):
    args = ["eval", "--model", "unused", "--harness", "local_mc,no_such_task",
            "--harness_include", write_tasks(tmp_path / "tasks", 2), "--out", str(tmp_path / "out")]
    assert main(args) == 2  # before the (missing) model is loaded
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"lm-eval knows no task 'no_such_task' (nor does --harness_include {tmp_path / 'tasks'})")
    assert len(err.splitlines()) == 1


PARITY_SCRIPT = r"""
import json, os, sys
import lm_eval
from lm_eval.tasks import TaskManager
from orca_jax.evaluation.harness import OrcaJaxLM
from orca_jax.model.loading import load_model

gguf, tasks = sys.argv[1], sys.argv[2]
runs = {}
for name, model, args in (
        ("orca", OrcaJaxLM(pretrained=gguf, batch_size=16), None),
        ("hf", "hf", f"pretrained={os.path.dirname(gguf)},gguf_file={os.path.basename(gguf)},"
                     "dtype=float32,device=cpu")):
    out = lm_eval.simple_evaluate(model=model, model_args=args, tasks=["local_mc", "local_gen"],
                                  task_manager=TaskManager(include_path=tasks), log_samples=True, batch_size=16)
    runs[name] = {"acc": out["results"]["local_mc"]["acc,none"],
                  "mc": [[r[0][0] for r in s["resps"]] for s in out["samples"]["local_mc"]],
                  "gen": [s["resps"][0][0] for s in out["samples"]["local_gen"]]}
print(json.dumps(runs))
"""


@pytest.mark.slow  # SmolLM2 through both backends on 50 x 4 choices and 3 generations: minutes on 2 cores
def test_agrees_with_lm_evals_hf_backend_on_smollm2(smollm2_gguf, tmp_path):
    pytest.importorskip("torch")
    tasks = write_tasks(tmp_path / "tasks", 50)
    result = subprocess.run([sys.executable, "-c", PARITY_SCRIPT, smollm2_gguf, tasks], cwd=ROOT,
                            env=dict(os.environ, **OFFLINE), capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    ours, theirs = runs["orca"], runs["hf"]
    assert ours["acc"] == theirs["acc"]
    np.testing.assert_allclose(np.array(ours["mc"]), np.array(theirs["mc"]), atol=1e-3)
    assert ours["gen"] == theirs["gen"]


def test_rolling_and_empty_context_loglikelihoods_match_token_logprobs():
    from lm_eval.api.instance import Instance

    from orca_jax.evaluation.harness import OrcaJaxLM
    from orca_jax.model.loading import LoadedModel

    config, params, tokenizer = tiny_model()
    lm = OrcaJaxLM(model=LoadedModel(config, params, tokenizer, "hf", "tiny"), batch_size=2)
    text = "Sort the following words alphabetically: List: cherry apple banana"
    ids = tokenizer.encode(text)
    prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id  # as lm-eval's HF backend
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True)
    # one window: every token scored once, the first after the prefix token
    assert rolling[0] == pytest.approx(float(token_logprobs(config, params, [prefix] + ids).sum()), abs=1e-4)
    (logprob, _), = lm.loglikelihood([Instance("loglikelihood", {}, ("", text), 0)], disable_tqdm=True)
    assert logprob == pytest.approx(rolling[0], abs=1e-4)  # an empty context is the prefix token too
