"""`train`: a run is a curriculum of one or more stages (Orca's progressive learning).

Each stage names its data, its length and its learning-rate schedule, and whether the
Adam moments carry over. Stage k+1 starts from stage k's final weights. Steps count
globally across stages, so a killed run resumes from the latest checkpoint in the right
stage at the right step, with that stage's data-loader state.

Outputs in MODEL_DIR: checkpoints/<step>/..., model_config.json, config.gin (operative),
tensorboard/, stages/<k>-<name>/summary.json per stage and summary.json for the run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import TYPE_CHECKING, Callable, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from orca_jax import partitioning
from orca_jax.data.loader import Prefetcher
from orca_jax.data.chat import ensure_template_tokens, run_chat_template
from orca_jax.data.tokenizer import load_tokenizer
from orca_jax.errors import UserError
from orca_jax.model import decoder, orbax_io
from orca_jax.model.config import DecoderConfig, get_preset
from orca_jax.train import trainer
from orca_jax.train.checkpoints import Checkpointer, abstract_like
from orca_jax.train.monitor import Monitor, train_flops_per_token
from orca_jax.train.optimizer import adamw_direction, learning_rate_schedule
from orca_jax.train.summary import params_sha256, write_summary

if TYPE_CHECKING:  # gin_setup imports it at run time, registering it with gin
    from orca_jax.evaluation.periodic import PeriodicEval


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Stage:
    """One curriculum stage. Schedule fields left None take learning_rate_schedule's gin values."""
    name: str
    mixture_or_task_name: str
    train_steps: int | None = None
    epochs: float | None = None
    peak_lr: float | None = None
    warmup_steps: int | None = None
    decay: str | None = None
    final_lr_fraction: float | None = None
    carry_optimizer_state: bool = True

    def schedule(self, steps: int):
        given = {k: getattr(self, k) for k in ("peak_lr", "warmup_steps", "decay", "final_lr_fraction")
                 if getattr(self, k) is not None}
        return learning_rate_schedule(steps, **given)


@gin.configurable
def model_config(preset: str = "tiny", **overrides) -> DecoderConfig:
    """A named preset with field overrides, e.g. model_config.num_layers = 4 in gin."""
    return get_preset(preset).replace(**overrides)


@gin.configurable
def data_loader(mixture_or_task_name: str, *, seq_len: int, global_batch_size: int, seed: int,
                process_index: int, process_count: int, num_epochs: int | None = None,
                cache_root: str | None = None):
    """The project's prepared-cache loader (data issue), with `orca-jax prepare`'s default
    cache root when `cache_root` is None; replace via train.loader_fn."""
    from orca_jax.data.loader import make_loader
    return make_loader(mixture_or_task_name, cache_root=cache_root, seq_len=seq_len,
                       global_batch_size=global_batch_size, seed=seed, process_index=process_index,
                       process_count=process_count, num_epochs=num_epochs)


def stage_loader(stage: Stage, make: Callable[..., object]):
    """(loader, steps) for a stage. The loader repeats its data; with `epochs` the stage runs
    round(epochs * steps_per_epoch) steps, the loader's own count of the global batches one
    pass over its examples fills (the packer decides how many rows that is)."""
    if (stage.train_steps is None) == (stage.epochs is None):
        raise UserError(f"stage {stage.name!r}: give exactly one of train_steps or epochs")
    loader = make(num_epochs=None)
    if stage.train_steps is not None:
        return loader, int(stage.train_steps)
    if stage.epochs <= 0:
        raise UserError(f"stage {stage.name!r}: epochs must be positive, got {stage.epochs}")
    if not hasattr(loader, "steps_per_epoch"):
        raise UserError(f"stage {stage.name!r}: epochs need a loader with steps_per_epoch; give train_steps")
    return loader, max(1, round(stage.epochs * loader.steps_per_epoch))


def _check_compatible(name: str, config: DecoderConfig, expected: DecoderConfig) -> None:
    fields = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
              "head_dim", "tie_word_embeddings", "attention_bias")
    diff = {f: (getattr(config, f), getattr(expected, f)) for f in fields if getattr(config, f) != getattr(expected, f)}
    if diff:
        raise UserError(f"{name}: model shape differs from the configured model: "
                        + ", ".join(f"{f} {a} vs {b}" for f, (a, b) in diff.items()))


def _load_params(path: str, expected: DecoderConfig, shardings, what: str, seed: int = 0):
    from orca_jax.model.hf_convert import resize_vocab
    from orca_jax.model.loading import load_model  # HF folder, GGUF, orbax folder or MODEL_DIR
    loaded = load_model(path)
    config, params = loaded.config, loaded.params
    if config.vocab_size < expected.vocab_size:
        # Orca's added tokens ([PAD], <|im_start|>, <|im_end|>): grow embeddings and head to the run's vocabulary
        config, params = resize_vocab(config, params, expected.vocab_size, jax.random.key(seed))
    _check_compatible(f"{what} {path}", config, expected)
    return loaded, jax.device_put(params, shardings)


def _data_tokenizer(loaders, model: DecoderConfig, tokenizer_path: str | None):
    """The tokenizer the prepared data was made with (or `tokenizer_path`), with the tokens and
    the chat template the data was rendered with (saved into MODEL_DIR, so evaluation prompts
    the model as training did), after checking that the model has a row for every token id
    the data can hold."""
    records = [t for loader in loaders for t in getattr(loader, "tokenizers", [])]
    for record in records:
        if record["vocab_size"] > model.vocab_size:
            raise UserError(f"the data was tokenized with {record['path']} ({record['vocab_size']} tokens) but the "
                            f"model has {model.vocab_size} rows: set model_config.vocab_size = {record['vocab_size']} "
                            f"(or prepare the data with the model's tokenizer)")
    templates = sorted({r["template"] for r in records if r.get("template")})
    if len(templates) > 1:
        raise UserError(f"the stages' data were prepared with different chat templates ({', '.join(templates)}); "
                        "prepare every stage with one template, the one the model will be prompted with")
    path = tokenizer_path or (records[0]["path"] if records else None)
    if path is None:
        return None
    tokenizer = load_tokenizer(path)
    if templates:
        ensure_template_tokens(tokenizer, templates[0])  # as prepare added them: same ids, same order
        tokenizer.chat_template = run_chat_template(templates[0], tokenizer)
    return tokenizer


def _load_teacher(path: str | None, student: DecoderConfig, mesh, rules):
    """(config, sharded params, shardings) of a frozen teacher with the student's vocabulary,
    computing in the student's dtype."""
    if path is None:
        raise UserError("LossConfig.kd_source = 'online' needs train.teacher_path")
    from orca_jax.model.loading import load_model
    teacher = load_model(path, dtype=student.dtype)
    if teacher.config.vocab_size != student.vocab_size:
        raise UserError(f"teacher {path} has vocabulary {teacher.config.vocab_size}, the student "
                        f"{student.vocab_size}: logit distillation needs the same vocabulary")
    _, shardings = trainer.param_shardings(teacher.config, mesh, rules)
    return teacher.config, jax.device_put(teacher.params, shardings), shardings


@gin.configurable
def train(model_dir: str, *, model: DecoderConfig = gin.REQUIRED, sequence_length: int = gin.REQUIRED,
          batch_size: int = gin.REQUIRED, stages: Sequence[Stage] | None = None,
          mixture_or_task_name: str | None = None, train_steps: int | None = None, epochs: float | None = None,
          seed: int = 0, initial_checkpoint_path: str | None = None, loader_fn: Callable = data_loader,
          num_microbatches: int = 1, loss: trainer.LossConfig | None = None, teacher_path: str | None = None,
          skip_nonfinite: bool = False, eval_fn: Callable | None = None, eval_every: int | None = None,
          periodic_eval: PeriodicEval | None = None, tokenizer_path: str | None = None,
          metrics_every_steps: int = 10) -> dict:
    """Run every stage to its end (or until SIGTERM). Returns the run's summary dict.

    `metrics_every_steps`: read the step metrics back to the host this often (and at every
    Monitor.log_every step, checkpoint, eval and stage end). Not every step, as t5x does not:
    a host waiting on each step's metrics stalls the device between steps. Nothing is lost
    by it (every step still reaches TensorBoard; a non-finite loss still stops the run naming
    its step, before any later checkpoint); only the progress bar moves in bursts.

    The tokenizer saved into MODEL_DIR (so `orca-jax generate --model MODEL_DIR` works) comes
    from `tokenizer_path`, else from the prepared data's metadata, else from the initial checkpoint.

    `periodic_eval` (gin: `train.periodic_eval = @PeriodicEval()`) builds `eval_fn` and
    `eval_every` from benchmark settings, writing to MODEL_DIR/eval/. Every evaluation, from
    either, is also appended to MODEL_DIR/eval/curve.jsonl."""
    wall_start = time.perf_counter()
    loss = loss or trainer.LossConfig()
    if metrics_every_steps < 1:
        raise UserError(f"train.metrics_every_steps = {metrics_every_steps}: expected a positive number of steps")
    if periodic_eval is not None and eval_fn is not None:
        raise UserError("give train.periodic_eval or train.eval_fn, not both")
    if stages is None:
        if mixture_or_task_name is None:
            raise UserError("give MIXTURE_OR_TASK_NAME (or a curriculum in train.stages)")
        stages = [Stage("main", mixture_or_task_name, train_steps=train_steps, epochs=epochs)]
    stages = list(stages)
    mesh = partitioning.make_mesh()
    rules = partitioning.logical_axis_rules()
    trainer.check_batch_divisible(batch_size, num_microbatches, mesh, rules)

    # Loaders first: missing data must fail before anything compiles.
    loaders, lengths = zip(*[
        stage_loader(s, functools.partial(loader_fn, s.mixture_or_task_name, seq_len=sequence_length,
                                          global_batch_size=batch_size, seed=seed + k,
                                          process_index=jax.process_index(), process_count=jax.process_count()))
        for k, s in enumerate(stages)])
    tokenizer = _data_tokenizer(loaders, model, tokenizer_path)
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]

    teacher_config = teacher_params = teacher_shardings = None
    if loss.kd_source == "online":
        teacher_config, teacher_params, teacher_shardings = _load_teacher(teacher_path, model, mesh, rules)

    optimizer = adamw_direction()
    abstract, shardings = trainer.state_shardings(model, optimizer, mesh, rules)
    os.makedirs(model_dir, exist_ok=True)
    checkpointer = Checkpointer(model_dir)
    keys = trainer.BATCH_KEYS + (trainer.TOPK_KEYS if loss.kd_source == "offline" else ())

    # Restore order: latest checkpoint in MODEL_DIR, else the initial checkpoint, else random.
    latest = checkpointer.latest_step()
    loader_state, stage_tokens = None, 0
    if latest is not None:
        params, opt_state, progress = checkpointer.restore(
            latest, abstract_like(abstract.params, shardings.params),
            abstract_like(abstract.opt_state, shardings.opt_state))
        stage_index = progress["stage"]
        if latest >= ends[stage_index]:  # saved at the very end of a stage: the next one starts fresh
            stage_index += 1
        else:
            loader_state, stage_tokens = progress["loader"], progress["stage_tokens"]
        step = latest
    else:
        if initial_checkpoint_path:
            initial, params = _load_params(initial_checkpoint_path, model, shardings.params, "initial checkpoint",
                                           seed)
            tokenizer = tokenizer or initial.tokenizer
        else:
            params = jax.jit(decoder.init_params, static_argnums=0, out_shardings=shardings.params)(
                model, jax.random.key(seed))
        opt_state = jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)
        stage_index, step = 0, 0
    state = trainer.TrainState(step=jax.device_put(jnp.asarray(step, jnp.int32), shardings.step),
                               params=params, opt_state=opt_state)
    # built here, where the tokenizer is final (an initial checkpoint may have supplied it)
    if periodic_eval is not None:
        if tokenizer is None:
            raise UserError("train.periodic_eval needs a tokenizer: set train.tokenizer_path "
                            "(neither the prepared data nor a checkpoint gave one)")
        eval_fn = periodic_eval.make_eval_fn(model, tokenizer, os.path.join(model_dir, "eval"))
        eval_every = periodic_eval.every_steps
    _write_model_files(model_dir, model, tokenizer)
    if eval_fn is not None:
        eval_fn = _recording_curve(eval_fn, os.path.join(model_dir, "eval", "curve.jsonl"))
    _write_operative_config(model_dir)  # again after each stage, when every configurable has run

    stop = trainer.GracefulStop()
    result = None
    with stop:
        for k in range(stage_index, len(stages)):
            stage, loader = stages[k], loaders[k]
            fresh = loader_state is None
            if fresh and k > 0 and not stage.carry_optimizer_state:
                state = state.replace(opt_state=jax.jit(optimizer.init, out_shardings=shardings.opt_state)(
                    state.params))
            if not fresh:
                loader.restore(loader_state)
                loader_state = None
            # per-source losses where the loader names its sources (a train.loader_fn may not)
            source_names = getattr(loader, "source_names", [])
            stage_keys = keys + (trainer.SOURCE_KEYS if source_names else ())
            step_fn = trainer.ShardedStep(
                trainer.make_train_step(model, optimizer, stage.schedule(ends[k] - starts[k]), loss, mesh=mesh,
                                        rules=rules, num_microbatches=num_microbatches,
                                        stage_start_step=starts[k], teacher_config=teacher_config,
                                        source_names=source_names),
                shardings, stage_keys, mesh, rules, teacher_shardings)
            monitor = Monitor(os.path.join(model_dir, "tensorboard"), first_step=step, last_step=ends[k],
                              flops_per_token=train_flops_per_token(model, sequence_length),
                              description=f"stage {k + 1}/{len(stages)} {stage.name}")
            # packs ahead on a thread; its state() is that of the batches handed out so far
            feed = Prefetcher(loader)
            try:
                result = trainer.run_steps(
                    step_fn, state, feed, first_step=step, last_step=ends[k], keys=stage_keys,
                    teacher_params=teacher_params, checkpointer=checkpointer,
                    progress=lambda tokens: {"stage": k, "loader": feed.state(), "stage_tokens": tokens},
                    monitor=monitor, tokens_before=stage_tokens,
                    skip_nonfinite=skip_nonfinite, eval_fn=eval_fn, eval_every=eval_every, stop=stop,
                    metrics_every_steps=metrics_every_steps)
            finally:
                feed.close()
                monitor.close()
            state, step, stage_tokens = result.state, int(result.state.step), 0
            _write_operative_config(model_dir)
            if result.preempted:
                checkpointer.close()
                return {"preempted": True, "final_step": step}
            # Summary first: killed before the stage-end checkpoint, the stage reruns its last
            # steps after a restart and rewrites the same summary.
            summary = {"stage": stage.name, "stage_index": k, "final_step": step, "stage_steps": ends[k] - starts[k],
                       "final_loss": result.last_metrics.get("loss"), "tokens_seen": result.tokens_seen,
                       "wall_seconds": result.wall_seconds, "skipped_steps": result.skipped_steps,
                       "params_sha256": params_sha256(state.params)}
            write_summary(_stage_dir(model_dir, k, stage), summary)
            checkpointer.save(step, state.params, state.opt_state,
                              {"stage": k, "loader": feed.state(), "stage_tokens": result.tokens_seen}, force=True)
    checkpointer.wait()
    checkpointer.close()
    summaries = [_stage_summary(model_dir, k, stage) for k, stage in enumerate(stages)]
    run_summary = {"final_step": step, "final_loss": (summaries[-1] or {}).get("final_loss"),
                   "tokens_seen": sum(s["tokens_seen"] for s in summaries if s),
                   "wall_seconds": time.perf_counter() - wall_start,
                   "params_sha256": params_sha256(state.params), "stages": summaries}
    write_summary(model_dir, run_summary)
    return run_summary


def _recording_curve(eval_fn: Callable, path: str) -> Callable:
    """`eval_fn` that also appends `{"step": step, **scalars}` to `path` (process 0), so eval
    curves can be read without TensorBoard. A resumed run appends to the same file, so a step
    evaluated again after a restart (past the last checkpoint) appears twice, the later line last."""

    def recorded(params, step: int) -> dict[str, float]:
        scalars = eval_fn(params, step)
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")
        return scalars

    return recorded


def _stage_dir(model_dir: str, k: int, stage: Stage) -> str:
    return os.path.join(model_dir, "stages", f"{k}-{stage.name}")


def _stage_summary(model_dir: str, k: int, stage: Stage) -> dict | None:
    """A finished stage's summary (stages finished before a restart included)."""
    path = os.path.join(_stage_dir(model_dir, k, stage), "summary.json")
    if not os.path.isfile(path):  # another host's disk in a multi-host run
        return None
    with open(path) as f:
        return json.load(f)


def _write_model_files(model_dir: str, model: DecoderConfig, tokenizer) -> None:
    """model_config.json (+ tokenizer/) in the layout `load_model(MODEL_DIR)` reads."""
    if jax.process_index() != 0:
        return
    if tokenizer is not None:
        orbax_io.write_model_metadata(model_dir, model, tokenizer)
    else:
        with open(os.path.join(model_dir, orbax_io.CONFIG_FILE), "w") as f:
            json.dump(model.to_hf_config(), f, indent=2)


def _write_operative_config(model_dir: str) -> None:
    if jax.process_index() == 0:
        with open(os.path.join(model_dir, "config.gin"), "w") as f:
            f.write(gin.operative_config_str())
