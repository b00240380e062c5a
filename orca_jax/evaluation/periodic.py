"""Benchmark evaluation during training, configured from gin (`train.periodic_eval`; an
example is in gin/runs/base.gin).

`train` knows the model config and tokenizer only at run time, so gin configures this
description and `train` turns it into the trainer's `eval_fn(params, step) -> scalars` hook.
"""

from __future__ import annotations

import dataclasses
import os

import gin

from orca_jax.data.system_messages import erased_system_message
from orca_jax.errors import UserError
from orca_jax.evaluation import benchmarks, runner
from orca_jax.evaluation.prompts import VARIANTS
from orca_jax.model.config import DecoderConfig


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PeriodicEval:
    """Every `every_steps` steps, greedy generation on the first `max_per_task` examples of each
    task of `benchmarks` (restricted to `tasks` when given), scored as `orca-jax eval` scores.

    `system`: a literal system message, or 'empty' / 'cautious' (Orca 2's cautious message),
    as `orca-jax eval --system` takes it."""
    every_steps: int
    data_dir: str
    benchmarks: tuple[str, ...] = ("bbh",)
    tasks: tuple[str, ...] | None = None
    max_per_task: int | None = None
    system: str = ""
    variant: str = "zero_shot"
    batch_size: int = 8
    max_new_tokens: int = 256

    def make_eval_fn(self, config: DecoderConfig, tokenizer, out_dir: str):
        """The trainer's hook, writing each evaluation to `out_dir/step_<step>/`. Reads the
        examples now, so bad settings or data fail before training starts."""
        for name in ("every_steps", "batch_size", "max_new_tokens", "max_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"PeriodicEval.{name} = {value}: expected a positive number")
        for name in ("benchmarks", "tasks"):
            if isinstance(getattr(self, name), str):  # a bare 'bbh' would read as the names 'b', 'b', 'h'
                raise UserError(f"PeriodicEval.{name} = {getattr(self, name)!r}: expected a tuple, e.g. ('bbh',)")
        if self.variant not in VARIANTS:
            raise UserError(f"PeriodicEval.variant = {self.variant!r}: expected one of {', '.join(VARIANTS)}")
        if not os.path.isdir(self.data_dir):
            raise UserError(f"PeriodicEval.data_dir {self.data_dir}: no such directory")
        examples = benchmarks.load_examples(self.data_dir, self._specs(), self.max_per_task)
        if not examples:
            raise UserError(f"PeriodicEval: no examples of {', '.join(self.benchmarks)} in data_dir {self.data_dir}")
        return runner.make_eval_fn(config, tokenizer, examples, out_dir, system=erased_system_message(self.system),
                                   variant=self.variant, batch_size=self.batch_size,
                                   max_new_tokens=self.max_new_tokens, progress=False)

    def _specs(self) -> list[str]:
        """`load_examples` specs: each benchmark whole, or `benchmark:task` for each of `tasks`
        the benchmark has (a task name must belong to at least one of them)."""
        if self.tasks is None:
            return list(self.benchmarks)
        unknown = [b for b in self.benchmarks if b not in benchmarks.BENCHMARKS]
        if unknown:
            raise UserError(f"PeriodicEval.benchmarks: unknown benchmark {unknown[0]!r} "
                            f"(known: {', '.join(benchmarks.BENCHMARKS)})")
        available = {b: benchmarks.available_tasks(self.data_dir, b) for b in self.benchmarks}
        unknown = [t for t in self.tasks if not any(t in tasks for tasks in available.values())]
        if unknown:
            known = ", ".join(f"{b}:{t}" for b, tasks in available.items() for t in tasks) or "none"
            raise UserError(f"PeriodicEval.tasks: unknown task {unknown[0]!r} in {', '.join(self.benchmarks)} "
                            f"under data_dir {self.data_dir} (known: {known})")
        return [f"{b}:{t}" for b, tasks in available.items() for t in self.tasks if t in tasks]

