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
    "ci": QuickstartConfig(assistant_per_family=24, strong_per_family=12, eval_per_family=4, stage_steps=(4, 6),
                           batch_size=4, sequence_length=512, vocab_size=400, hidden_size=32, num_layers=1,
                           max_new_tokens=48, eval_every_steps=5, curve_per_family=2),
}
STUDENT, SHALLOW = "explanation tuning (progressive, prompts erased)", "shallow imitation (answers only)"
RUNS = {"student": STUDENT, "shallow": SHALLOW}
# eval/<run>/ for the held-out set, eval/<run>_in_distribution/ for the headline set
SUFFIX = {"in_distribution": "_in_distribution", "held_out": ""}


def run_quickstart(out_dir: str, cfg: QuickstartConfig = PRESETS["full"], log=print) -> dict:
    """Runs every step into `out_dir`; returns what it writes to results.json."""
    from orca_jax.pipelines.report import accuracy_table, plot_training, read_scalars, step_table
    from orca_jax.synthetic.families import CONTROL, SERIAL

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
    example_sets = exp.evaluation_examples(out_dir, cfg)
    model = exp.student_config(cfg, tokenizer.vocab_size)
    first, second = cfg.stage_steps
    runs = {
        "student": [exp.stage(cfg, "assistant", "traces_assistant_orca1", first),
                    exp.stage(cfg, "strong", "traces_strong_orca2", second)],
        "shallow": [exp.stage(cfg, "answers_only", "traces_answers_only", first + second)],
    }
    periodic = exp.curve_eval(out_dir, cfg)
    training = timed("train", lambda: {name: exp.train_run(out_dir, cfg, name, stages, model, periodic_eval=periodic)
                                       for name, stages in runs.items()})
    evaluation = timed("evaluate", lambda: {
        split: {name: exp.evaluate_run(out_dir, cfg, name, examples, name + SUFFIX[split]) for name in runs}
        for split, examples in example_sets.items()})
    seconds["total"] = round(time.perf_counter() - start, 1)

    columns = {split: {RUNS[name]: exp.accuracies(by_run[name]) for name in ("shallow", "student")}
               for split, by_run in evaluation.items()}
    headline = columns["in_distribution"]
    gains = {task: headline[STUDENT][task] - headline[SHALLOW][task] for task in headline[STUDENT]}
    curves = {name: exp.read_curve(out_dir, name) for name in runs}
    plot_training({name: read_scalars(os.path.join(out_dir, "runs", name, "tensorboard")) for name in runs}, curves,
                  os.path.join(out_dir, "training_curves.png"),
                  boundaries={name: s["stage_ends"][:-1] for name, s in training.items()},
                  loss_labels={"student": "student (explanation tokens)", "shallow": "shallow (answer tokens)"})
    results = {
        "config": dataclasses.asdict(cfg),
        "machine": exp.machine(),
        "seconds": seconds,
        "families": {"serial": list(SERIAL), "control": list(CONTROL)},
        "traces": traces,
        "caches": {task: {k: meta[k] for k in ("num_examples", "num_tokens", "num_loss_tokens", "skipped")}
                   for task, meta in caches.items()},
        "training": {name: {k: s[k] for k in ("final_step", "final_loss", "tokens_seen", "wall_seconds",
                                              "params_sha256", "stage_ends")} for name, s in training.items()},
        "in_distribution_accuracy": headline,
        "held_out_accuracy": columns["held_out"],
        "gain_in_distribution": gains,
        "format_ok": {split: {name: exp.accuracies(by_run[name], "format_ok") for name in runs}
                      for split, by_run in evaluation.items()},
        "step_diagnostics": {split: {name: exp.step_summary(out_dir, name + SUFFIX[split], data)
                                     for name in runs} for split, data in exp.EVALUATION_SETS.items()},
        "eval_curves": curves,
        "student_beats_shallow": headline[STUDENT]["average"] > headline[SHALLOW]["average"],
    }
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    tables = {split: accuracy_table(columns[split]) for split in columns}
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(_markdown(results, tables, step_table(results["step_diagnostics"]["in_distribution"]["student"])))
    log(f"Accuracy (%) on the in_distribution split ({cfg.eval_per_family} new instances per family at the training "
        f"difficulty; the harder held_out split is in results.md):\n" + tables["in_distribution"])
    log(f"Results: {os.path.join(out_dir, 'results.md')}")
    return results


def _markdown(results: dict, tables: dict[str, str], steps: str) -> str:
    cfg, seconds, machine = results["config"], results["seconds"], results["machine"]
    verdict = "beats" if results["student_beats_shallow"] else "does NOT beat"
    families = results["families"]
    teacher_lines = "\n".join(f"- `{stem}`: {s['traces']} traces, teacher accuracy {s['teacher_accuracy']:.1f}%"
                              for stem, s in results["traces"].items())
    return f"""# Quickstart results

Accuracy (%) on {cfg['eval_per_family']} new instances per task family at the training difficulty
(no prompt of them in any trace), answered zero-shot under Orca 2's cautious system message
and scored with BIG-Bench Hard's answer extraction. Serial families (steps expected to help):
{', '.join(families['serial'])}; control (no gain expected): {', '.join(families['control'])}. The
explanation-tuned student {verdict} the shallow-imitation baseline on average.

{tables['in_distribution']}

Harder instances (longer than any trained on: length generalisation, which neither is expected to have):

{tables['held_out']}

The student's explanations on the first table's instances, scored step by step against the strong
teacher's (% of instances; "first error" classes the first wrong step: its part copied from the
question wrong, its computed part wrong, steps missing, or steps beyond the last):

{steps}

Traces:
{teacher_lines}

Traces per family are weighted ({', '.join(f'{name} x{w}' for name, w in cfg['family_weights'])}, the
others x1) in every trace file.

Student: {cfg['num_layers']} layers, hidden {cfg['hidden_size']}, vocabulary {cfg['vocab_size']}, trained from
scratch for {cfg['stage_steps'][0]} + {cfg['stage_steps'][1]} steps of {cfg['batch_size']} x {cfg['sequence_length']}
packed tokens; the baseline for {sum(cfg['stage_steps'])} steps on the same questions. Accuracy during
training (first {cfg['curve_per_family']} instances per family, every {cfg['eval_every_steps']} steps) is in
training_curves.png and results.json (`eval_curves`).

Time: {seconds['total']} s in total ({', '.join(f'{k} {v} s' for k, v in seconds.items() if k != 'total')})
on {machine['processor']}, {machine['cpu_count']} CPUs visible, JAX backend {machine['jax_backend']}.
"""
