"""Building blocks of experiments on the synthetic world, shared by the quickstart and
the mini reproduction. Each step goes through the project's real pipeline:

traces (the data layer's JSONL writer) -> a BPE tokenizer trained on them -> one seqio
Task per trace file (`tasks/`), prepared once into the token cache with the configured
prompt erasing -> the gin-configurable curriculum trainer -> held-out instances in
BIG-Bench Hard's layout, answered by KV-cache generation and scored by the BBH rules.

Layout under `out_dir`: traces/, tokenizer/, cache/, runs/<run>/ (checkpoints,
TensorBoard logs, summaries), eval/data/bbh/ and eval/<run>/ (predictions, summaries); the
quickstart also eval/data_in_distribution/bbh/ and eval/<run>_in_distribution/.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE
from orca_jax.synthetic.teachers import strong_teacher, teacher_assistant

# Trace files whose teacher system message is erased to the cautious one before
# tokenization (Orca 2's prompt erasing; the baseline's empty message likewise, so
# every model is evaluated under the system message it was trained with).
ERASED = ("strong_orca2", "answers_only")
# The evaluation sets, in BBH's layout, each with its reference steps: the headline set first
IN_DISTRIBUTION_DATA = os.path.join("eval", "data_in_distribution")
HELD_OUT_DATA = os.path.join("eval", "data")
EVALUATION_SETS = {"in_distribution": IN_DISTRIBUTION_DATA, "held_out": HELD_OUT_DATA}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    assistant_per_family: int = 600  # stage 1: teacher-assistant traces per family
    strong_per_family: int = 2000  # stage 2: strong-teacher traces per family
    # Each family's traces (in every file) are this multiple of the counts above. The two
    # families whose step the student learns last get three times as many, sorting twice:
    # alone, swaps needed about 8,000 strong traces seen (15% after 190 steps, 87% after 380),
    # and at equal shares the mixture learned swaps or arithmetic, never both (see the README)
    family_weights: tuple[tuple[str, int], ...] = (("tracking_shuffled_objects", 3), ("modular_arithmetic", 3),
                                                   ("digit_sorting", 2))
    assistant_error_rate: float = 0.2
    eval_per_family: int = 50  # instances per family in each evaluation set
    # a sixth on the assistant's traces, then the strong teacher's; single-stage runs
    # train for the sum (chosen from learning curves: see the README)
    stage_steps: tuple[int, int] = (250, 1250)
    batch_size: int = 8
    sequence_length: int = 512  # packing fills rows with 2-4 traces
    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    # The larger local teacher of the reproduction's optional logit-distillation condition
    teacher_hidden_size: int = 192
    teacher_num_layers: int = 4
    kd_alpha: float = 0.5
    kd_temperature: float = 1.0
    peak_lr: float = 2e-3
    warmup_steps: int = 30
    max_new_tokens: int = 128
    eval_batch_size: int = 100
    # Accuracy during training: the first curve_per_family in-distribution instances per
    # family, every eval_every_steps steps (0: no curve)
    eval_every_steps: int = 100
    curve_per_family: int = 10
    seed: int = 0


def family_counts(cfg: ExperimentConfig, per_family: int) -> dict[str, int]:
    """Family -> traces in a file of `per_family` traces per family before `family_weights`."""
    from orca_jax.synthetic.families import FAMILIES

    weights = dict(cfg.family_weights)
    unknown = set(weights) - set(FAMILIES)
    if unknown:
        raise ValueError(f"family_weights names unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    return {name: per_family * weights.get(name, 1) for name in FAMILIES}


def trace_sets(cfg: ExperimentConfig) -> dict[str, list]:
    """File stem -> traces."""
    from orca_jax.synthetic.trace_generation import synthetic_traces

    def traces(teacher, recipe, per_family, seed):
        return [trace for name, n in family_counts(cfg, per_family).items()
                for trace in synthetic_traces(teacher, recipe, "train", n, seed, (name,))]

    assistant, strong = teacher_assistant(cfg.assistant_error_rate), strong_teacher()
    stage1_seed, stage2_seed = cfg.seed * 1000 + 1, cfg.seed * 1000 + 2
    return {
        "assistant_orca1": traces(assistant, "orca1", cfg.assistant_per_family, stage1_seed),
        "strong_orca2": traces(strong, "orca2", cfg.strong_per_family, stage2_seed),
        # The baseline sees the same questions as the student, answered without explanation.
        "answers_only": (traces(strong, "answers_only", cfg.assistant_per_family, stage1_seed)
                         + traces(strong, "answers_only", cfg.strong_per_family, stage2_seed)),
    }


def write_traces(out_dir: str, traces: dict[str, list]) -> dict[str, dict]:
    """Writes traces/<stem>.jsonl; returns per-file counts and the teachers' accuracy."""
    from orca_jax.data.traces import write_traces as write_jsonl

    os.makedirs(os.path.join(out_dir, "traces"), exist_ok=True)
    stats = {}
    for stem, items in traces.items():
        write_jsonl(os.path.join(out_dir, "traces", f"{stem}.jsonl"), items)
        stats[stem] = {"traces": len(items),
                       "teacher_accuracy": 100.0 * sum(t.metadata["teacher_correct"] for t in items) / len(items)}
    return stats


def train_tokenizer(out_dir: str, cfg: ExperimentConfig):
    """Trains on every trace file read back from traces/, with each system message as training
    will see it (the cautious message in the erased files), so the merges follow what the
    student reads; saved to tokenizer/."""
    from orca_jax.data.traces import read_traces
    from orca_jax.synthetic.tokenizer import train_tokenizer as train_bpe

    texts = [CAUTIOUS_SYSTEM_MESSAGE]  # evaluation's message, whatever is erased
    folder = os.path.join(out_dir, "traces")
    for name in sorted(os.listdir(folder)):
        erased = name.removesuffix(".jsonl") in ERASED
        for trace in read_traces(os.path.join(folder, name)):
            texts += [CAUTIOUS_SYSTEM_MESSAGE if erased else trace.system] + [turn["content"] for turn in trace.turns]
    tokenizer = train_bpe(texts, cfg.vocab_size)
    tokenizer.save(os.path.join(out_dir, "tokenizer"))
    return tokenizer


def saved_tokenizer(out_dir: str):
    """The tokenizer `train_tokenizer` saved under out_dir/tokenizer."""
    from orca_jax.data.tokenizer import load_tokenizer

    return load_tokenizer(os.path.join(out_dir, "tokenizer"))


def prepare_tasks(out_dir: str, cfg: ExperimentConfig, names: list[str],
                  mixtures: dict[str, dict[str, float]] | None = None) -> dict[str, dict]:
    """Registers a seqio Task per trace file (and the given Mixtures) and prepares `names`
    into cache/; returns each prepared task's cache metadata."""
    import gin

    from orca_jax.data.prepare import prepare
    from tasks.traces import register_trace_mixtures, register_trace_tasks

    with gin.unlock_config():
        gin.bind_parameter("erasing_policy.per_task", {f"traces_{stem}": "cautious" for stem in ERASED})
    register_trace_tasks(data_dir=os.path.join(out_dir, "traces"), tokenizer_path=os.path.join(out_dir, "tokenizer"))
    register_trace_mixtures(mixtures or {})
    metadata = {}
    for name in names:
        metadata.update(prepare(name, os.path.join(out_dir, "cache"), max_length=cfg.sequence_length))
    return metadata


def student_config(cfg: ExperimentConfig, vocab_size: int):
    return _decoder_config(cfg, vocab_size, cfg.hidden_size, cfg.num_layers)


def teacher_config(cfg: ExperimentConfig, vocab_size: int):
    """The larger local teacher: the student's architecture, wider and deeper."""
    return _decoder_config(cfg, vocab_size, cfg.teacher_hidden_size, cfg.teacher_num_layers)


def _decoder_config(cfg: ExperimentConfig, vocab_size: int, hidden_size: int, num_layers: int):
    from orca_jax.model.config import get_preset

    return get_preset("tiny").replace(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=3 * hidden_size,
        num_layers=num_layers, num_heads=cfg.num_heads, num_kv_heads=cfg.num_heads,
        head_dim=hidden_size // cfg.num_heads,  # the preset's own head_dim would not follow hidden_size
        max_position_embeddings=cfg.sequence_length + cfg.max_new_tokens)


def distillation_loss(cfg: ExperimentConfig):
    """Cross-entropy on the traces plus forward KL to the online teacher's logits."""
    from orca_jax.train.trainer import LossConfig

    return LossConfig(kd_source="online", kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature)


def stage(cfg: ExperimentConfig, name: str, task: str, steps: int):
    from orca_jax.train.curriculum import Stage

    return Stage(name, task, train_steps=steps, peak_lr=cfg.peak_lr, warmup_steps=cfg.warmup_steps, decay="cosine",
                 final_lr_fraction=0.1)


def curve_eval(out_dir: str, cfg: ExperimentConfig):
    """The trainer's periodic evaluation on the in-distribution set (`in_distribution_examples`
    writes it), under the evaluation's system message; None when `eval_every_steps` is 0."""
    from orca_jax.evaluation.periodic import PeriodicEval

    if not cfg.eval_every_steps:
        return None
    return PeriodicEval(every_steps=cfg.eval_every_steps, data_dir=os.path.join(out_dir, IN_DISTRIBUTION_DATA),
                        max_per_task=cfg.curve_per_family, system="cautious", batch_size=cfg.eval_batch_size,
                        max_new_tokens=cfg.max_new_tokens)


def read_curve(out_dir: str, name: str) -> list[dict]:
    """runs/<name>'s evaluations during training: `{"step", "bbh/average", "bbh/<task>"}` each."""
    from orca_jax.data.jsonl import read_jsonl

    path = os.path.join(out_dir, "runs", name, "eval", "curve.jsonl")
    return [record for _, record in read_jsonl(path)] if os.path.isfile(path) else []


def train_run(out_dir: str, cfg: ExperimentConfig, name: str, stages: list, model, loss=None,
              teacher: str | None = None, periodic_eval=None) -> dict:
    """Trains runs/<name> through `stages` from scratch (with `loss`, distilling from
    runs/<teacher> when given; evaluating as `periodic_eval` says); returns the trainer's
    summary plus `stage_ends` (the last step of each stage)."""
    from orca_jax.train.curriculum import data_loader, train

    from orca_jax.errors import UserError

    model_dir = os.path.join(out_dir, "runs", name)
    summary = train(model_dir, model=model, sequence_length=cfg.sequence_length,
                    batch_size=cfg.batch_size, stages=stages, seed=cfg.seed,
                    loader_fn=functools.partial(data_loader, cache_root=os.path.join(out_dir, "cache")),
                    tokenizer_path=os.path.join(out_dir, "tokenizer"), loss=loss,
                    teacher_path=teacher and os.path.join(out_dir, "runs", teacher), periodic_eval=periodic_eval)
    if summary.get("preempted"):  # the trainer checkpointed and returned early
        raise UserError(f"run {name} stopped by SIGTERM at step {summary['final_step']} (checkpoint in {model_dir})")
    summary["stage_ends"] = [s["final_step"] for s in summary["stages"]]
    return summary


def held_out_examples(out_dir: str, cfg: ExperimentConfig) -> list:
    """Held-out instances (the test split: harder than any training instance), written in
    BBH's layout under eval/data and read back with the BBH reader."""
    return _bbh_examples(os.path.join(out_dir, HELD_OUT_DATA), "test", cfg.eval_per_family, cfg.seed * 1000 + 100)


def in_distribution_examples(out_dir: str, cfg: ExperimentConfig) -> list:
    """New instances at the training difficulty (the train split's levels) whose prompt is in
    no trace under traces/, written under eval/data_in_distribution: whether a student learned
    its training tasks at all, apart from generalising to harder ones."""
    from orca_jax.data.traces import read_traces
    from orca_jax.evaluation.prompts import user_message
    from orca_jax.synthetic.trace_generation import eval_example

    folder = os.path.join(out_dir, "traces")
    seen = {t.turns[0]["content"] for name in os.listdir(folder) for t in read_traces(os.path.join(folder, name))}
    return _bbh_examples(os.path.join(out_dir, IN_DISTRIBUTION_DATA), "train", cfg.eval_per_family,
                         cfg.seed * 1000 + 200, keep=lambda x: user_message(eval_example(x)) not in seen)


def evaluation_examples(out_dir: str, cfg: ExperimentConfig) -> dict[str, list]:
    """Both evaluation sets by `EVALUATION_SETS` name, written (with their reference steps) and
    read back; before training, since the in-distribution set also serves the accuracy curves."""
    return {"in_distribution": in_distribution_examples(out_dir, cfg), "held_out": held_out_examples(out_dir, cfg)}


def _bbh_examples(data_dir: str, split: str, n_per_family: int, seed: int, keep=None) -> list:
    from orca_jax.evaluation.benchmarks import read_bbh
    from orca_jax.synthetic.eval_sets import write_bbh_layout

    tasks = write_bbh_layout(data_dir, split, n_per_family, seed, keep=keep)
    return [e for task in tasks for e in read_bbh(data_dir, task)]


def evaluate_run(out_dir: str, cfg: ExperimentConfig, name: str, examples: list, folder: str | None = None) -> dict:
    """Greedy answers of runs/<name> under the cautious system message (as Orca 2
    evaluates), scored by BBH's rules; writes eval/<folder or name>/; returns the BBH summary."""
    from orca_jax.evaluation.runner import predict
    from orca_jax.evaluation.scoring import summarize
    from orca_jax.evaluation.tables import write_predictions, write_summary
    from orca_jax.model.loading import load_model

    loaded = load_model(os.path.join(out_dir, "runs", name))
    records = predict(loaded.config, loaded.params, loaded.tokenizer, examples, system=CAUTIOUS_SYSTEM_MESSAGE,
                      batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens, progress=False)
    summary = summarize(records)
    folder = os.path.join(out_dir, "eval", folder or name)
    os.makedirs(folder, exist_ok=True)
    write_predictions(os.path.join(folder, "predictions.jsonl"), records)
    write_summary(folder, summary)
    return summary["bbh"]


def step_summary(out_dir: str, folder: str, data: str) -> dict[str, dict]:
    """Step diagnostics (`step_diagnostics.summarize_steps`) of eval/<folder>'s predictions
    against the reference steps of the evaluation set under `data`."""
    from orca_jax.evaluation.scoring import read_predictions
    from orca_jax.synthetic.step_diagnostics import summarize_steps

    records = read_predictions(os.path.join(out_dir, "eval", folder, "predictions.jsonl"))
    return summarize_steps(records, os.path.join(out_dir, data))


def accuracies(bbh_summary: dict, field: str = "accuracy") -> dict[str, float]:
    """Task -> percent, plus the unweighted average over tasks (BBH's convention)."""
    values = {task: row[field] for task, row in bbh_summary["tasks"].items()}
    values["average"] = sum(values.values()) / len(values)
    return values


def machine() -> dict:
    import platform

    import jax

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "jax_backend": jax.default_backend()}
