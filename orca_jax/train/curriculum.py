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
import json
import os
import time
from typing import TYPE_CHECKING, Callable, Sequence

import gin
import jax
import jax.numpy as jnp

from orca_jax.data.loader import Prefetcher
from orca_jax.errors import UserError
from orca_jax.model import decoder, orbax_io
from orca_jax.model.config import DecoderConfig, get_preset
from orca_jax.train import run_build, trainer
from orca_jax.train.checkpoints import Checkpointer, abstract_like
from orca_jax.train.monitor import Monitor
from orca_jax.train.optimizer import learning_rate_schedule
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


@gin.configurable("train")
@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What gin binds as `train.*` (`train.model = @model_config()`, ...), checked; `train`
    runs it and `plan` compiles it, both through `run_build`.

    A run is `stages`, or one stage from `mixture_or_task_name` with `train_steps` or `epochs`.

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
    model_dir: str = gin.REQUIRED
    _: dataclasses.KW_ONLY
    model: DecoderConfig = gin.REQUIRED
    sequence_length: int = gin.REQUIRED
    batch_size: int = gin.REQUIRED
    stages: Sequence[Stage] | None = None
    mixture_or_task_name: str | None = None
    train_steps: int | None = None
    epochs: float | None = None
    seed: int = 0
    initial_checkpoint_path: str | None = None
    loader_fn: Callable = data_loader
    num_microbatches: int = 1
    loss: trainer.LossConfig | None = None
    teacher_path: str | None = None
    skip_nonfinite: bool = False
    eval_fn: Callable | None = None
    eval_every: int | None = None
    periodic_eval: PeriodicEval | None = None
    tokenizer_path: str | None = None
    metrics_every_steps: int = 10

    def __post_init__(self):
        if self.metrics_every_steps < 1:
            raise UserError(f"train.metrics_every_steps = {self.metrics_every_steps}: expected a positive number of steps")
        if self.periodic_eval is not None and self.eval_fn is not None:
            raise UserError("give train.periodic_eval or train.eval_fn, not both")
        if self.stages is None:
            if self.mixture_or_task_name is None:
                raise UserError("give MIXTURE_OR_TASK_NAME (or a curriculum in train.stages)")
            stages = [Stage("main", self.mixture_or_task_name, train_steps=self.train_steps, epochs=self.epochs)]
        else:
            stages = self.stages
        # resolved once here, so whoever builds the run reads the stages and loss it runs
        object.__setattr__(self, "stages", tuple(stages))
        object.__setattr__(self, "loss", self.loss or trainer.LossConfig())


def train(*args, **settings) -> dict:
    """Run every stage of the gin-configured run (`RunConfig(*args, **settings)`: given
    arguments override gin's) to its end, or until SIGTERM. Returns the run's summary dict."""
    wall_start = time.perf_counter()
    config = RunConfig(*args, **settings)
    model, model_dir = config.model, config.model_dir
    layout = run_build.Layout.build(config)
    data = run_build.stage_data(config)  # missing data fails before anything compiles
    stages, loaders, starts, ends, tokenizer = config.stages, data.loaders, data.starts, data.ends, data.tokenizer
    teacher = run_build.load_teacher(config, layout)

    optimizer = layout.optimizer
    abstract, shardings = layout.state
    os.makedirs(model_dir, exist_ok=True)
    checkpointer = Checkpointer(model_dir)

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
        if config.initial_checkpoint_path:
            initial, params = _load_params(config.initial_checkpoint_path, model, shardings.params,
                                           "initial checkpoint", config.seed)
            tokenizer = tokenizer or initial.tokenizer
        else:
            params = jax.jit(decoder.init_params, static_argnums=0, out_shardings=shardings.params)(
                model, jax.random.key(config.seed))
        opt_state = jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)
        stage_index, step = 0, 0
    state = trainer.TrainState(step=jax.device_put(jnp.asarray(step, jnp.int32), shardings.step),
                               params=params, opt_state=opt_state)
    # built here, where the tokenizer is final (an initial checkpoint may have supplied it)
    eval_fn, eval_every = config.eval_fn, config.eval_every
    if config.periodic_eval is not None:
        if tokenizer is None:
            raise UserError("train.periodic_eval needs a tokenizer: set train.tokenizer_path "
                            "(neither the prepared data nor a checkpoint gave one)")
        eval_fn = config.periodic_eval.make_eval_fn(model, tokenizer, os.path.join(model_dir, "eval"))
        eval_every = config.periodic_eval.every_steps
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
            step_fn = layout.train_step(stage.schedule(ends[k] - starts[k]), stage_start_step=starts[k],
                                        teacher=teacher, source_names=source_names)
            monitor = Monitor(os.path.join(model_dir, "tensorboard"), first_step=step, last_step=ends[k],
                              flops_per_token=layout.flops_per_token(),
                              description=f"stage {k + 1}/{len(stages)} {stage.name}")
            # packs ahead on a thread; its state() is that of the batches handed out so far
            feed = Prefetcher(loader)
            try:
                result = trainer.run_steps(
                    step_fn, state, feed, first_step=step, last_step=ends[k], keys=layout.batch_keys(source_names),
                    teacher_params=teacher.params if teacher else None, checkpointer=checkpointer,
                    progress=lambda tokens: {"stage": k, "loader": feed.state(), "stage_tokens": tokens},
                    monitor=monitor, tokens_before=stage_tokens,
                    skip_nonfinite=config.skip_nonfinite, eval_fn=eval_fn, eval_every=eval_every, stop=stop,
                    metrics_every_steps=config.metrics_every_steps)
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
