"""One way to build a run: from a `curriculum.RunConfig` (what gin binds as `train.*`) to the
pieces `train` executes and `plan` compiles ahead of time, so both see the same mesh, state
shardings, batch keys and train step.

    Layout.build(config, model=None)   mesh, sharding rules, optimizer (checks the batch splits)
    Layout.state                       (abstract TrainState, its shardings)
    Layout.train_step(schedule, ...)   one stage's trainer.ShardedStep
    Layout.flops_per_token()           the model FLOPs MFU and the plan's step time count
    stage_data(config)                 each stage's loader, its steps and the data's tokenizer
    load_teacher(config, layout)       the frozen teacher of online distillation
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Callable

import jax
import numpy as np

from orca_jax import partitioning
from orca_jax.data.chat import ensure_template_tokens, run_chat_template
from orca_jax.data.tokenizer import load_tokenizer
from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig
from orca_jax.train import trainer
from orca_jax.train.monitor import train_flops_per_token
from orca_jax.train.optimizer import adamw_direction

if TYPE_CHECKING:  # curriculum imports this module to run what it builds
    from orca_jax.train.curriculum import RunConfig, Stage


@dataclasses.dataclass
class Teacher:
    config: DecoderConfig
    params: object
    shardings: object


@dataclasses.dataclass
class Layout:
    """Where a run's state lives and the step that updates it."""
    config: RunConfig
    model: DecoderConfig  # config.model, or the plan's CPU-compilable stand-in
    mesh: jax.sharding.Mesh
    rules: tuple
    optimizer: object

    @classmethod
    def build(cls, config: RunConfig, model: DecoderConfig | None = None) -> Layout:
        """The configured mesh and rules; fails at once on a batch the mesh cannot split."""
        mesh, rules = partitioning.make_mesh(), partitioning.logical_axis_rules()
        trainer.check_batch_divisible(config.batch_size, config.num_microbatches, mesh, rules)
        return cls(config, model or config.model, mesh, rules, adamw_direction())

    @functools.cached_property
    def state(self) -> tuple[trainer.TrainState, trainer.TrainState]:
        """(abstract TrainState, TrainState of shardings). Traces the model's init, so `train`
        asks for it only after the data checks."""
        return trainer.state_shardings(self.model, self.optimizer, self.mesh, self.rules)

    def batch_keys(self, source_names=()) -> tuple[str, ...]:
        """The arrays a batch carries: top-k for offline distillation, source ids where the
        loader names its sources."""
        return (trainer.BATCH_KEYS + (trainer.TOPK_KEYS if self.config.loss.kd_source == "offline" else ())
                + (trainer.SOURCE_KEYS if source_names else ()))

    def train_step(self, schedule: Callable, *, stage_start_step: int = 0, teacher: Teacher | None = None,
                   source_names=()) -> trainer.ShardedStep:
        return trainer.ShardedStep(
            trainer.make_train_step(self.model, self.optimizer, schedule, self.config.loss, mesh=self.mesh,
                                    rules=self.rules, num_microbatches=self.config.num_microbatches,
                                    stage_start_step=stage_start_step,
                                    teacher_config=teacher.config if teacher else None, source_names=source_names),
            self.state[1], self.batch_keys(source_names), self.mesh, self.rules,
            teacher.shardings if teacher else None)

    def flops_per_token(self) -> float:
        return train_flops_per_token(self.model, self.config.sequence_length)


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


@dataclasses.dataclass
class StageData:
    loaders: tuple
    starts: list[int]  # each stage's first global step
    ends: list[int]  # and its last
    tokenizer: object  # None when neither the data nor train.tokenizer_path names one


def stage_data(config: RunConfig) -> StageData:
    """Every stage's loader and step count. Built before anything traces the model: missing
    data fails first."""
    loaders, lengths = zip(*[
        stage_loader(s, functools.partial(config.loader_fn, s.mixture_or_task_name, seq_len=config.sequence_length,
                                          global_batch_size=config.batch_size, seed=config.seed + k,
                                          process_index=jax.process_index(), process_count=jax.process_count()))
        for k, s in enumerate(config.stages)])
    ends = np.cumsum(lengths).tolist()
    return StageData(loaders, [0] + ends[:-1], ends, _data_tokenizer(loaders, config.model, config.tokenizer_path))


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


def load_teacher(config: RunConfig, layout: Layout) -> Teacher | None:
    """The frozen teacher of online distillation (None otherwise), with the student's
    vocabulary, computing in the student's dtype."""
    if config.loss.kd_source != "online":
        return None
    if config.teacher_path is None:
        raise UserError("LossConfig.kd_source = 'online' needs train.teacher_path")
    from orca_jax.model.loading import load_model
    teacher = load_model(config.teacher_path, dtype=config.model.dtype)
    if teacher.config.vocab_size != config.model.vocab_size:
        raise UserError(f"teacher {config.teacher_path} has vocabulary {teacher.config.vocab_size}, the student "
                        f"{config.model.vocab_size}: logit distillation needs the same vocabulary")
    _, shardings = trainer.param_shardings(teacher.config, layout.mesh, layout.rules)
    return Teacher(teacher.config, jax.device_put(teacher.params, shardings), shardings)
