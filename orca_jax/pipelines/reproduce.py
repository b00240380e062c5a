"""The papers' ablations in miniature, on the synthetic world, over several seeds.

Conditions (every one trains the same student from scratch for the same number of
steps and is evaluated under Orca 2's cautious system message, as Orca 2 evaluates, on new
instances at the training difficulty, the headline, and on harder held-out ones):

- shallow: answers only (imitating style, not reasoning);
- progressive: teacher-assistant traces, then strong-teacher traces, strategy
  prompts erased (Orca 1's progressive learning with Orca 2's prompt erasing);
- strong_only: strong-teacher traces (erased) for all steps;
- mixed: assistant and strong traces sampled together in proportion to their sizes;
- prompts_kept: progressive, but the strong teacher's strategy prompts are kept.

With `distill`, two more runs per seed (neither paper distils logits; this is the
project's option):
- large_teacher: a wider, deeper model trained like `progressive` (reported, not a student);
- distilled: `progressive`, with cross-entropy mixed with forward KL to large_teacher's
  logits on the same tokens (online distillation).

Each seed changes the instances, the teacher assistant's slips and the initialisation;
within a seed every condition shares them, so each claim is judged on its per-seed paired
differences (`paired_statistics`): "appears" only when their 95% t interval excludes 0 in
the paper's direction.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time

from orca_jax.pipelines import synthetic_experiment as exp

SUITES = {
    # The quickstart's size per condition, without accuracy curves (the quickstart draws them)
    "mini": exp.ExperimentConfig(eval_every_steps=0),
    # For CI: the same suite at a size a test can afford.
    "ci": exp.ExperimentConfig(assistant_per_family=16, strong_per_family=8, eval_per_family=3, stage_steps=(3, 3),
                               batch_size=4, sequence_length=512, vocab_size=400, hidden_size=32, num_layers=1,
                               max_new_tokens=48, teacher_hidden_size=48, teacher_num_layers=2, eval_every_steps=0),
}
CONDITIONS = ("shallow", "progressive", "strong_only", "mixed", "prompts_kept")
DISTILL_CONDITIONS = ("large_teacher", "distilled")
MIXED = "mixed_assistant_strong"
BY_CONSTRUCTION, OPEN = "expected by construction", "open question"
# (claim, paper, better condition, worse condition, status before measuring)
CLAIMS = (
    ("explanation tuning beats shallow imitation", "Orca 1", "progressive", "shallow", BY_CONSTRUCTION),
    ("progressive learning (assistant first) beats strong-teacher data alone", "Orca 1", "progressive", "strong_only",
     OPEN),
    ("progressive learning beats mixing both teachers' data", "Orca 1", "progressive", "mixed", OPEN),
    ("prompt erasing beats keeping strategy prompts (generic prompt at test)", "Orca 2", "progressive", "prompts_kept",
     OPEN),
)
# Per seed, each finished condition's accuracies (what a rerun reuses)
SEED_RESULTS = "seed_results.json"
DISTILL_CLAIM = ("logit distillation from a larger local teacher adds to explanation tuning", "neither (option)",
                 "distilled", "progressive", OPEN)


def _stages(cfg: exp.ExperimentConfig, condition: str) -> list:
    first, second = cfg.stage_steps
    total = first + second
    assistant = exp.stage(cfg, "assistant", "traces_assistant_orca1", first)
    progressive = [assistant, exp.stage(cfg, "strong", "traces_strong_orca2", second)]
    return {
        "shallow": [exp.stage(cfg, "answers_only", "traces_answers_only", total)],
        "progressive": progressive,
        "large_teacher": progressive,
        "distilled": progressive,
        "strong_only": [exp.stage(cfg, "strong", "traces_strong_orca2", total)],
        "mixed": [exp.stage(cfg, "mixed", MIXED, total)],
        "prompts_kept": [assistant, exp.stage(cfg, "strong_kept", "traces_strong_orca2_kept", second)],
    }[condition]


def conditions(distill: bool) -> tuple[str, ...]:
    return CONDITIONS + (DISTILL_CONDITIONS if distill else ())


def claims(distill: bool) -> tuple[tuple[str, str, str, str, str], ...]:
    return CLAIMS + ((DISTILL_CLAIM,) if distill else ())


def run_seed(out_dir: str, cfg: exp.ExperimentConfig, log=print, distill: bool = False) -> None:
    """Trains and evaluates all conditions for one seed in `out_dir`. The large teacher
    trains before the student distilled from it.

    Resumable: each finished condition's accuracies go to `SEED_RESULTS` at once (`saved_seed`
    reads them), and a
    rerun with the same configuration trains only the conditions missing there (the one
    that was training when a run stopped resumes from its last checkpoint)."""
    saved = saved_seed(out_dir, cfg)
    done, seconds = saved["conditions"], saved["seconds"]
    todo = [c for c in conditions(distill) if c not in done]
    if not todo:
        log(f"[reproduce] seed {cfg.seed}: every condition already in {os.path.join(out_dir, SEED_RESULTS)}")
        return
    traces = exp.trace_sets(cfg)
    # The same strong traces under a task whose prompts are not erased.
    traces["strong_orca2_kept"] = traces["strong_orca2"]
    exp.write_traces(out_dir, traces)
    # A resumed seed keeps its tokenizer: its checkpoints' embeddings index that vocabulary.
    tokenizer = exp.saved_tokenizer(out_dir) if done else exp.train_tokenizer(out_dir, cfg)
    mixture = {"traces_assistant_orca1": len(traces["assistant_orca1"]),
               "traces_strong_orca2": len(traces["strong_orca2"])}
    exp.prepare_tasks(out_dir, cfg, [f"traces_{stem}" for stem in traces] + [MIXED], {MIXED: mixture})
    model = exp.student_config(cfg, tokenizer.vocab_size)
    runs = {"large_teacher": dict(model=exp.teacher_config(cfg, tokenizer.vocab_size)),
            "distilled": dict(model=model, loss=exp.distillation_loss(cfg), teacher="large_teacher")}
    examples = exp.evaluation_examples(out_dir, cfg)
    periodic = exp.curve_eval(out_dir, cfg)
    for condition in todo:
        log(f"[reproduce] seed {cfg.seed}: {condition}")
        start = time.perf_counter()
        exp.train_run(out_dir, cfg, condition, _stages(cfg, condition), periodic_eval=periodic,
                      **runs.get(condition, dict(model=model)))
        done[condition] = {split: exp.accuracies(exp.evaluate_run(out_dir, cfg, condition, examples[split],
                                                                  f"{condition}/{split}"))
                           for split in exp.EVALUATION_SETS}
        seconds[condition] = round(time.perf_counter() - start, 1)
        _write_json(os.path.join(out_dir, SEED_RESULTS), {"config": _as_json(cfg), "conditions": done,
                                                         "seconds": seconds})


def saved_seed(seed_dir: str, cfg: exp.ExperimentConfig) -> dict:
    """What earlier runs of this configuration finished in `seed_dir`, as `SEED_RESULTS` holds
    it: `conditions` (condition -> split -> accuracies) and `seconds` (condition -> seconds
    its training and evaluation took); both empty when nothing is there. Results of another
    configuration are an error."""
    from orca_jax.errors import UserError

    path = os.path.join(seed_dir, SEED_RESULTS)
    if not os.path.isfile(path):
        return {"conditions": {}, "seconds": {}}
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    expected = _as_json(cfg)
    differing = sorted(k for k in set(expected) | set(saved["config"]) if saved["config"].get(k) != expected.get(k))
    if differing:
        raise UserError(f"{path}: written by a run with another configuration (differs in "
                        f"{', '.join(differing)}); use another --out, or delete {seed_dir} to rerun that seed")
    return saved


def _as_json(cfg: exp.ExperimentConfig) -> dict:
    """The configuration as its JSON file holds it (tuples as lists), for comparison."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _write_json(path: str, value) -> None:
    """Written whole or not at all: a run killed while writing leaves the previous file."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def run_reproduce(out_dir: str, suite: str = "mini", seeds: int = 5, distill: bool = False, log=print,
                  only_seeds: list[int] | None = None) -> dict | None:
    """Runs seeds 0..seeds-1 (or, with `only_seeds`, those of them) into out_dir/seed_<k>,
    reusing what earlier runs finished there; once every seed is finished, judges the claims
    and writes results.{json,md} and ablations.png and returns the results, else None."""
    from orca_jax.errors import UserError
    from orca_jax.pipelines.report import plot_bars

    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {sorted(SUITES)}")
    outside = sorted(set(only_seeds or ()) - set(range(seeds)))
    if outside:
        raise UserError(f"--only_seeds {outside}: the reproduction's seeds are 0..{seeds - 1} (--seeds {seeds})")
    base, start = SUITES[suite], time.perf_counter()
    per_seed, seconds, missing = {}, {}, []
    for seed in range(seeds):
        cfg, seed_dir = dataclasses.replace(base, seed=seed), os.path.join(out_dir, f"seed_{seed}")
        if only_seeds is None or seed in only_seeds:
            run_seed(seed_dir, cfg, log, distill)
        saved = saved_seed(seed_dir, cfg)
        if all(c in saved["conditions"] for c in conditions(distill)):
            per_seed[seed] = {c: saved["conditions"][c] for c in conditions(distill)}
            seconds[seed] = saved["seconds"]
        else:
            missing.append(seed)
    if missing:
        log(f"[reproduce] seeds finished: {sorted(per_seed)}; not yet: {missing}. The claims are judged once "
            f"all {seeds} are: run the missing ones (--only_seeds, on other machines if you like, copying their "
            f"seed_<k> folders here), then this command again with the same --out.")
        return None
    tasks = list(per_seed[0]["shallow"]["in_distribution"])
    summary = {split: {c: {t: mean_std([per_seed[s][c][split][t] for s in per_seed]) for t in tasks}
                       for c in conditions(distill)} for split in exp.EVALUATION_SETS}
    verdicts = [_claim(per_seed, *claim) for claim in claims(distill)]
    results = {"suite": suite, "seeds": seeds, "distill": distill, "config": dataclasses.asdict(base),
               "machine": exp.machine(), "seconds": round(time.perf_counter() - start, 1),
               # training and evaluation per condition, in whichever invocation ran it
               "condition_seconds": seconds,
               "per_seed": per_seed,
               "summary": summary, "claims": verdicts}
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(_markdown(results, tasks))
    plot_bars({c: summary["in_distribution"][c]["average"] for c in summary["in_distribution"]},
              os.path.join(out_dir, "ablations.png"),
              title=f"accuracy at the training difficulty (%), mean and std over {seeds} seeds")
    log(_table(summary["in_distribution"], tasks))
    return results


def _claim(per_seed: dict, text: str, paper: str, better: str, worse: str, status: str) -> dict:
    """The claim judged on the headline (in-distribution) average, paired by seed."""
    from orca_jax.pipelines.paired_statistics import paired_difference, verdict

    values = {c: [per_seed[s][c]["in_distribution"]["average"] for s in sorted(per_seed)] for c in (better, worse)}
    paired = paired_difference(values[better], values[worse])
    return {"claim": text, "paper": paper, "better": better, "worse": worse, "status": status, **paired,
            "verdict": verdict(paired["ci95"])}


def _table(summary: dict, tasks: list[str]) -> str:
    lines = ["| condition | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for condition, row in summary.items():
        lines.append(f"| {condition} | " + " | ".join(f"{row[t]['mean']:.1f} ± {row[t]['std']:.1f}" for t in tasks) + " |")
    return "\n".join(lines)


def _distill_note(results: dict) -> str:
    if not results["distill"]:
        return ""
    cfg = results["config"]
    return f"""

large_teacher is not a student: a {cfg['teacher_num_layers']}-layer model of hidden
{cfg['teacher_hidden_size']}, trained like progressive; distilled is progressive with
{1 - cfg['kd_alpha']:g} x cross-entropy + {cfg['kd_alpha']:g} x forward KL to large_teacher's
logits (temperature {cfg['kd_temperature']:g})."""


def _markdown(results: dict, tasks: list[str]) -> str:
    cfg, machine = results["config"], results["machine"]

    def interval(c):
        return "n/a (one seed)" if c["ci95"] is None else f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]"

    claim_rows = "\n".join(f"| {c['claim']} | {c['paper']} | {c['status']} | {c['difference']:+.1f} | {interval(c)} | "
                           f"{c['verdict']} |" for c in results["claims"])
    return f"""# Mini reproduction ({results['suite']})

Accuracy (%), mean ± standard deviation over {results['seeds']} seeds, answered under Orca 2's
cautious system message. Every condition trains the same student ({cfg['num_layers']} layers, hidden
{cfg['hidden_size']}) from scratch for {sum(cfg['stage_steps'])} steps of {cfg['batch_size']} x
{cfg['sequence_length']} packed tokens.{_distill_note(results)}

New instances at the training difficulty (the headline):

{_table(results['summary']['in_distribution'], tasks)}

Harder instances (length generalisation):

{_table(results['summary']['held_out'], tasks)}

Claims, judged on the headline average: the mean of the per-seed paired differences (better -
worse, both conditions sharing the seed's data and initialisation) and its 95% t interval.
"appears": the interval excludes 0 in the paper's direction; "reversed": it excludes 0 the
other way; otherwise "inconclusive".

| paper's claim | paper | before measuring | difference (points) | 95% CI | here |
|---|---|---|---|---|---|
{claim_rows}

Time: {results['seconds']} s on {machine['processor']}, {machine['cpu_count']} CPUs visible,
JAX backend {machine['jax_backend']}.
"""
