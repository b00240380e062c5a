"""The quickstart: the whole Orca pipeline on a CPU in minutes, on the synthetic world.

1. Teachers write explanation traces: the teacher assistant (brief, sometimes wrong)
   answers under Orca 1's chain-of-thought system messages, the strong teacher under
   each family's Orca 2 strategy instruction; for the baseline, the strong teacher's
   answers alone.
2. A BPE tokenizer is trained on the traces.
3. Each trace file becomes a seqio Task, prepared once into the token cache; the
   strong teacher's strategy prompts are erased to Orca 2's cautious system message.
4. A tiny student is trained from scratch through the progressive curriculum
   (assistant traces, then strong traces); the shallow-imitation baseline is trained
   on answers only to the same questions for as many steps.
5. Both answer held-out instances, harder than any seen in training, and new instances at
   the training difficulty, under the cautious system message; BBH's answer extraction
   scores them.

Writes into `out_dir` (see `synthetic_experiment`) plus results.json, results.md and
training_curves.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from orca_jax.pipelines import synthetic_experiment as exp

QuickstartConfig = exp.ExperimentConfig
PRESETS = {
    "full": QuickstartConfig(),
    # For CI: the same pipeline, small enough for a test of a few minutes.
    "ci": QuickstartConfig(assistant_per_family=24, strong_per_family=12, eval_per_family=4, stage_steps=(6, 6),
                           batch_size=4, vocab_size=600, hidden_size=32, num_layers=1, max_new_tokens=160),
}
STUDENT, SHALLOW = "explanation tuning (progressive, prompts erased)", "shallow imitation (answers only)"


def run_quickstart(out_dir: str, cfg: QuickstartConfig = PRESETS["full"], log=print) -> dict:
    """Runs every step into `out_dir`; returns what it writes to results.json."""
    from orca_jax.pipelines.report import accuracy_table, plot_curves, read_scalars

    os.makedirs(out_dir, exist_ok=True)
    seconds, start = {}, time.perf_counter()

    def timed(step, fn, *args):
        t = time.perf_counter()
        log(f"[quickstart] {step} ...")
        value = fn(*args)
        seconds[step] = round(time.perf_counter() - t, 1)
        return value

    traces = timed("traces", lambda: exp.write_traces(out_dir, exp.trace_sets(cfg)))
    tokenizer = timed("tokenizer", exp.train_tokenizer, out_dir, cfg)
    caches = timed("prepare", exp.prepare_tasks, out_dir, cfg, [f"traces_{stem}" for stem in traces])
    model = exp.student_config(cfg, tokenizer.vocab_size)
    first, second = cfg.stage_steps
    runs = {
        "student": [exp.stage(cfg, "assistant", "traces_assistant_orca1", first),
                    exp.stage(cfg, "strong", "traces_strong_orca2", second)],
        "shallow": [exp.stage(cfg, "answers_only", "traces_answers_only", first + second)],
    }
    training = timed("train", lambda: {name: exp.train_run(out_dir, cfg, name, stages, model)
                                       for name, stages in runs.items()})
    example_sets = {"held_out": exp.held_out_examples(out_dir, cfg),
                    "in_distribution": exp.in_distribution_examples(out_dir, cfg)}
    # eval/<run>/ for the held-out set (the table's), eval/<run>_in_distribution/ for the other
    suffix = {"held_out": "", "in_distribution": "_in_distribution"}
    evaluation = timed("evaluate", lambda: {
        split: {name: exp.evaluate_run(out_dir, cfg, name, examples, name + suffix[split]) for name in runs}
        for split, examples in example_sets.items()})
    seconds["total"] = round(time.perf_counter() - start, 1)

    columns = {split: {SHALLOW: exp.accuracies(by_run["shallow"]), STUDENT: exp.accuracies(by_run["student"])}
               for split, by_run in evaluation.items()}
    curves = {name: read_scalars(os.path.join(out_dir, "runs", name, "tensorboard")) for name in runs}
    plot_curves(curves, os.path.join(out_dir, "training_curves.png"),
                boundaries={name: s["stage_ends"][:-1] for name, s in training.items()})
    results = {
        "config": dataclasses.asdict(cfg),
        "machine": exp.machine(),
        "seconds": seconds,
        "traces": traces,
        "caches": {task: {k: meta[k] for k in ("num_examples", "num_tokens", "num_loss_tokens", "skipped")}
                   for task, meta in caches.items()},
        "training": {name: {k: s[k] for k in ("final_step", "final_loss", "tokens_seen", "wall_seconds",
                                              "params_sha256", "stage_ends")} for name, s in training.items()},
        "held_out_accuracy": columns["held_out"],
        "in_distribution_accuracy": columns["in_distribution"],
        "format_ok": {name: exp.accuracies(evaluation["held_out"][name], "format_ok") for name in runs},
        "student_beats_shallow": columns["held_out"][STUDENT]["average"] > columns["held_out"][SHALLOW]["average"],
    }
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    table, in_distribution_table = accuracy_table(columns["held_out"]), accuracy_table(columns["in_distribution"])
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(_markdown(results, table, in_distribution_table))
    log(table)
    return results


def _markdown(results: dict, table: str, in_distribution_table: str) -> str:
    cfg, seconds, machine = results["config"], results["seconds"], results["machine"]
    verdict = "beats" if results["student_beats_shallow"] else "does NOT beat"
    teacher_lines = "\n".join(f"- `{stem}`: {s['traces']} traces, teacher accuracy {s['teacher_accuracy']:.1f}%"
                              for stem, s in results["traces"].items())
    return f"""# Quickstart results

Held-out accuracy (%) on {cfg['eval_per_family']} instances per task family, harder than any
training instance (more steps, longer numbers), answered zero-shot under Orca 2's cautious
system message and scored with BIG-Bench Hard's answer extraction. The explanation-tuned
student {verdict} the shallow-imitation baseline on average.

{table}

For comparison, new instances at the training difficulty (no prompt of them in any trace):

{in_distribution_table}

Traces:
{teacher_lines}

Student: {cfg['num_layers']} layers, hidden {cfg['hidden_size']}, vocabulary {cfg['vocab_size']}, trained from
scratch for {cfg['stage_steps'][0]} + {cfg['stage_steps'][1]} steps of {cfg['batch_size']} x {cfg['sequence_length']}
packed tokens; the baseline for {sum(cfg['stage_steps'])} steps on the same questions.

Time: {seconds['total']} s in total ({', '.join(f'{k} {v} s' for k, v in seconds.items() if k != 'total')})
on {machine['processor']}, {machine['cpu_count']} CPUs visible, JAX backend {machine['jax_backend']}.
"""
