"""The quickstart: the whole Orca pipeline on a CPU in minutes, on the synthetic world.

1. Teachers write explanation traces (JSONL, the data layer's writer): the teacher
   assistant answers with Orca 1's chain-of-thought system messages, the strong
   teacher with each family's Orca 2 strategy instruction; for the baseline the
   strong teacher's answers alone.
2. A BPE tokenizer is trained on the traces.
3. Each trace file is a seqio Task (`tasks/`); `prepare` runs it once into the
   token cache, erasing the strong teacher's strategy prompts (and the baseline's
   empty one) to Orca 2's cautious system message.
4. The trainer runs the progressive curriculum (assistant traces, then strong
   traces) on a tiny student from scratch, and the shallow-imitation baseline on
   answers only for as many steps.
5. Both answer held-out instances, harder than any in training, under the cautious
   system message; the evaluation's BBH rules score them.

Everything lands in `out_dir`: traces/, tokenizer/, cache/, runs/<model>/ (checkpoints,
TensorBoard logs, summaries), eval/<model>/ (predictions, summaries), results.json,
results.md and training_curves.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time

from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE
from orca_jax.synthetic.families import FAMILIES
from orca_jax.synthetic.teachers import strong_teacher, teacher_assistant

TRACE_FILES = ("assistant_orca1", "strong_orca2", "answers_only")
# Trace files whose system message is erased to the cautious one before tokenization.
ERASED = ("strong_orca2", "answers_only")


@dataclasses.dataclass(frozen=True)
class QuickstartConfig:
    assistant_per_family: int = 300  # stage 1: teacher-assistant traces per family
    strong_per_family: int = 150  # stage 2: strong-teacher traces per family
    assistant_error_rate: float = 0.2
    eval_per_family: int = 40  # held-out (harder) instances per family
    stage_steps: tuple[int, int] = (120, 120)  # the baseline trains for their sum
    batch_size: int = 16
    sequence_length: int = 256  # every training trace fits; packing fills the rows
    vocab_size: int = 1024
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    peak_lr: float = 3e-3
    warmup_steps: int = 20
    max_new_tokens: int = 320
    eval_batch_size: int = 64
    seed: int = 0


PRESETS = {
    "full": QuickstartConfig(),
    # For CI: the same pipeline, small enough for a test of a few minutes.
    "ci": QuickstartConfig(assistant_per_family=24, strong_per_family=12, eval_per_family=4, stage_steps=(6, 6),
                           batch_size=4, sequence_length=256, vocab_size=600, hidden_size=32, num_layers=1,
                           max_new_tokens=160),
}


def _trace_sets(cfg: QuickstartConfig):
    """(file stem, traces) in training order."""
    from orca_jax.synthetic.trace_generation import synthetic_traces

    assistant, strong = teacher_assistant(cfg.assistant_error_rate), strong_teacher()
    stage1 = synthetic_traces(assistant, "orca1", "train", cfg.assistant_per_family, cfg.seed + 1)
    stage2 = synthetic_traces(strong, "orca2", "train", cfg.strong_per_family, cfg.seed + 2)
    # The baseline sees the same questions as the student, answered without explanation.
    shallow = (synthetic_traces(strong, "answers_only", "train", cfg.assistant_per_family, cfg.seed + 1)
               + synthetic_traces(strong, "answers_only", "train", cfg.strong_per_family, cfg.seed + 2))
    return {"assistant_orca1": stage1, "strong_orca2": stage2, "answers_only": shallow}


def _write_traces(out_dir: str, cfg: QuickstartConfig) -> dict[str, dict]:
    from orca_jax.data.traces import write_traces

    os.makedirs(os.path.join(out_dir, "traces"), exist_ok=True)
    stats = {}
    for stem, traces in _trace_sets(cfg).items():
        write_traces(os.path.join(out_dir, "traces", f"{stem}.jsonl"), traces)
        stats[stem] = {"traces": len(traces),
                       "teacher_accuracy": 100.0 * sum(t.metadata["teacher_correct"] for t in traces) / len(traces)}
    return stats


def _train_tokenizer(out_dir: str, cfg: QuickstartConfig):
    from orca_jax.data.traces import read_traces
    from orca_jax.synthetic.tokenizer import train_tokenizer

    texts = [CAUTIOUS_SYSTEM_MESSAGE]
    for stem in TRACE_FILES:
        for trace in read_traces(os.path.join(out_dir, "traces", f"{stem}.jsonl")):
            texts += [trace.system] + [turn["content"] for turn in trace.turns]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    tokenizer.save(os.path.join(out_dir, "tokenizer"))
    return tokenizer


def _prepare_caches(out_dir: str, cfg: QuickstartConfig) -> dict[str, dict]:
    import gin

    from orca_jax.data.prepare import prepare
    from tasks.traces import register_trace_tasks

    with gin.unlock_config():
        gin.bind_parameter("erasing_policy.per_task", {f"traces_{stem}": "cautious" for stem in ERASED})
    register_trace_tasks(data_dir=os.path.join(out_dir, "traces"), tokenizer_path=os.path.join(out_dir, "tokenizer"))
    metadata = {}
    for stem in TRACE_FILES:
        metadata.update(prepare(f"traces_{stem}", os.path.join(out_dir, "cache"), max_length=cfg.sequence_length))
    return metadata


def _train(out_dir: str, cfg: QuickstartConfig, tokenizer) -> dict[str, dict]:
    import functools

    from orca_jax.model.config import get_preset
    from orca_jax.train.curriculum import Stage, data_loader, train

    model = get_preset("tiny").replace(
        vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=3 * cfg.hidden_size,
        num_layers=cfg.num_layers, num_heads=cfg.num_heads, num_kv_heads=cfg.num_heads,
        max_position_embeddings=cfg.sequence_length + cfg.max_new_tokens)
    schedule = dict(peak_lr=cfg.peak_lr, warmup_steps=cfg.warmup_steps, decay="cosine", final_lr_fraction=0.1)
    first, second = cfg.stage_steps
    runs = {
        # Orca 2's progressive learning: assistant traces, then strong traces (prompts erased).
        "student": [Stage("assistant", "traces_assistant_orca1", train_steps=first, **schedule),
                    Stage("strong", "traces_strong_orca2", train_steps=second, **schedule)],
        # Shallow imitation: the same questions, answers only, the same number of steps.
        "shallow": [Stage("answers_only", "traces_answers_only", train_steps=first + second, **schedule)],
    }
    loader = functools.partial(data_loader, cache_root=os.path.join(out_dir, "cache"))
    summaries = {}
    for name, stages in runs.items():
        summaries[name] = train(os.path.join(out_dir, "runs", name), model=model, sequence_length=cfg.sequence_length,
                                batch_size=cfg.batch_size, stages=stages, seed=cfg.seed, loader_fn=loader,
                                tokenizer_path=os.path.join(out_dir, "tokenizer"))
        summaries[name]["stage_ends"] = [s["final_step"] for s in summaries[name]["stages"]]
    return summaries


def _evaluate(out_dir: str, cfg: QuickstartConfig) -> dict[str, dict]:
    from orca_jax.evaluation.benchmarks import read_bbh
    from orca_jax.evaluation.runner import predict
    from orca_jax.evaluation.scoring import summarize
    from orca_jax.evaluation.tables import write_predictions, write_summary
    from orca_jax.model.loading import load_model
    from orca_jax.synthetic.eval_sets import write_bbh_layout

    data_dir = os.path.join(out_dir, "eval", "data")
    # A seed no training set uses; the test split's difficulty levels never occur in training.
    tasks = write_bbh_layout(data_dir, "test", cfg.eval_per_family, cfg.seed + 100)
    examples = [e for task in tasks for e in read_bbh(data_dir, task)]
    results = {}
    for name in ("shallow", "student"):
        loaded = load_model(os.path.join(out_dir, "runs", name))
        records = predict(loaded.config, loaded.params, loaded.tokenizer, examples, system=CAUTIOUS_SYSTEM_MESSAGE,
                          batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens, progress=False)
        summary = summarize(records)
        os.makedirs(os.path.join(out_dir, "eval", name), exist_ok=True)
        write_predictions(os.path.join(out_dir, "eval", name, "predictions.jsonl"), records)
        write_summary(os.path.join(out_dir, "eval", name), summary)
        results[name] = summary["bbh"]
    return results


def run_quickstart(out_dir: str, cfg: QuickstartConfig = PRESETS["full"], log=print) -> dict:
    """Runs every step into `out_dir` and returns the results written to results.json."""
    import jax

    from orca_jax.pipelines.report import accuracy_table, plot_curves, read_scalars

    os.makedirs(out_dir, exist_ok=True)
    timings, start = {}, time.perf_counter()

    def timed(step, fn, *args):
        t = time.perf_counter()
        log(f"[quickstart] {step} ...")
        value = fn(*args)
        timings[step] = round(time.perf_counter() - t, 1)
        return value

    trace_stats = timed("traces", _write_traces, out_dir, cfg)
    tokenizer = timed("tokenizer", _train_tokenizer, out_dir, cfg)
    caches = timed("prepare", _prepare_caches, out_dir, cfg)
    training = timed("train", _train, out_dir, cfg, tokenizer)
    evaluation = timed("evaluate", _evaluate, out_dir, cfg)
    timings["total"] = round(time.perf_counter() - start, 1)

    columns = {
        "shallow imitation (answers only)": _accuracies(evaluation["shallow"]),
        "explanation tuning (progressive, prompts erased)": _accuracies(evaluation["student"]),
    }
    curves = {name: read_scalars(os.path.join(out_dir, "runs", name, "tensorboard")) for name in training}
    plot_curves(curves, os.path.join(out_dir, "training_curves.png"),
                boundaries={name: s["stage_ends"][:-1] for name, s in training.items()})
    results = {
        "config": dataclasses.asdict(cfg),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "jax_backend": jax.default_backend()},
        "seconds": timings,
        "traces": trace_stats,
        "caches": {task: {k: meta[k] for k in ("num_examples", "num_tokens", "num_loss_tokens", "skipped")}
                   for task, meta in caches.items()},
        "training": {name: {k: s[k] for k in ("final_step", "final_loss", "tokens_seen", "wall_seconds",
                                              "params_sha256", "stage_ends")} for name, s in training.items()},
        "held_out_accuracy": columns,
        "format_ok": {name: _accuracies(evaluation[name], "format_ok") for name in evaluation},
        "student_beats_shallow": columns["explanation tuning (progressive, prompts erased)"]["average"]
        > columns["shallow imitation (answers only)"]["average"],
    }
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    table = accuracy_table(columns)
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(_markdown(results, table))
    log(table)
    return results


def _accuracies(bbh_summary: dict, field: str = "accuracy") -> dict[str, float]:
    values = {task: row[field] for task, row in bbh_summary["tasks"].items()}
    values["average"] = sum(values.values()) / len(values)
    return values


def _markdown(results: dict, table: str) -> str:
    cfg, seconds, machine = results["config"], results["seconds"], results["machine"]
    verdict = ("beats" if results["student_beats_shallow"] else "does NOT beat")
    teacher_lines = "\n".join(f"- `{stem}`: {s['traces']} traces, teacher accuracy {s['teacher_accuracy']:.1f}%"
                              for stem, s in results["traces"].items())
    return f"""# Quickstart results

Held-out accuracy (%) on {cfg['eval_per_family']} instances per task family, harder than any
training instance (more steps, longer numbers), evaluated zero-shot with Orca 2's cautious
system message and BIG-Bench Hard's answer extraction. The explanation-tuned student
{verdict} the shallow-imitation baseline on average.

{table}

Traces:
{teacher_lines}

Student: {cfg['num_layers']} layers, hidden {cfg['hidden_size']}, vocabulary {cfg['vocab_size']}, trained from
scratch for {cfg['stage_steps'][0]} + {cfg['stage_steps'][1]} steps of {cfg['batch_size']} x {cfg['sequence_length']}
packed tokens; the baseline for {sum(cfg['stage_steps'])} steps on the same questions.

Time: {seconds['total']} s in total ({', '.join(f'{k} {v} s' for k, v in seconds.items() if k != 'total')})
on {machine['processor']}, {machine['cpu_count']} CPUs visible, JAX backend {machine['jax_backend']}.
"""
