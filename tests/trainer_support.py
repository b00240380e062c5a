"""Shared pieces of the trainer tests: a learnable toy task fed through the real PackedLoader,
a gin-configurable loader for it, and gin text for a tiny run."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import textwrap

import gin
import numpy as np

from orca_jax.data.loader import PackedLoader

VOCAB = 256

# The trainer tests compile the same tiny programs many times (one jit per run/stage/mesh);
# XLA's persistent cache turns every repeat into a load.
import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "orca_jax_test_xla_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def progression_examples(n: int, seed: int, min_len: int = 5, max_len: int = 14, topk: int | None = None):
    """Arithmetic progressions mod VOCAB (start, step in 1..3): after two tokens every next one is
    determined, so a tiny model's loss can fall far below log(VOCAB). The first two targets
    carry weight 0 (the "prompt")."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        ids = (int(rng.integers(0, VOCAB)) + int(rng.integers(1, 4)) * np.arange(length)) % VOCAB
        weights = np.ones(length, np.float32)
        weights[:2] = 0.0
        ex = {"ids": ids.astype(np.int32), "loss_weights": weights}
        if topk:
            logits = rng.normal(size=(length, VOCAB)).astype(np.float32)
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            ids_k = np.argsort(-logp, axis=-1)[:, :topk].astype(np.int32)
            ex["teacher_topk_ids"] = ids_k
            ex["teacher_topk_logprobs"] = np.take_along_axis(logp, ids_k, -1)
        out.append(ex)
    return out


@gin.configurable
def toy_loader(mixture_or_task_name: str, *, seq_len: int, global_batch_size: int, seed: int,
               process_index: int, process_count: int, num_epochs: int | None = None, num_examples: int = 400,
               topk: int | None = None):
    """Task names "toy-<seed>" give different example sets; "missing" has none (raises)."""
    from orca_jax.errors import UserError
    if not mixture_or_task_name.startswith("toy"):
        raise UserError(f"no prepared data for task {mixture_or_task_name!r}")
    data_seed = int(mixture_or_task_name.split("-")[1]) if "-" in mixture_or_task_name else 0
    return PackedLoader.from_examples(progression_examples(num_examples, data_seed, topk=topk), seq_len=seq_len,
                                      global_batch_size=global_batch_size, seed=seed, num_epochs=num_epochs,
                                      process_index=process_index, process_count=process_count)


TINY_GIN = """
include 'runs/base.gin'
include 'models/tiny.gin'
MIXTURE_OR_TASK_NAME = 'toy'
SEQUENCE_LENGTH = 32
BATCH_SIZE = 8
TRAIN_STEPS = 6
SEED = 0
train.loader_fn = @toy_loader
model_config.vocab_size = 256
Checkpointer.save_every_steps = 2
Monitor.progress_bar = False
Monitor.log_every = 1
learning_rate_schedule.peak_lr = 1e-2
learning_rate_schedule.warmup_steps = 2
"""

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_code(args: list[str], prelude: str = "") -> str:
    """Python source that runs `orca-jax ARGS` with toy_loader registered."""
    return textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
        import trainer_support  # registers toy_loader with gin
        {prelude}
        from orca_jax.cli import main
        sys.exit(main({[str(a) for a in args]!r}))
    """)


def cli_env(devices: int = 1) -> dict:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
                PYTHONPATH=REPO)


def run_cli(args: list[str], devices: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    """`orca-jax ARGS` in a fresh process with `devices` CPU devices."""
    return subprocess.run([sys.executable, "-c", cli_code(args)], cwd=REPO, env=cli_env(devices),
                          capture_output=True, text=True, timeout=timeout)


@functools.lru_cache(maxsize=1)
def initial_host_params():
    """The tiny model's seed-0 init on the host (compiled once per process, shared by meshes)."""
    import jax

    from orca_jax.model import decoder
    from orca_jax.model.config import get_preset
    return jax.device_get(decoder.init_params(get_preset("tiny").replace(vocab_size=VOCAB), jax.random.key(0)))


def one_step(mesh, num_microbatches: int, steps: int = 1, loss_cfg=None, global_batch_size: int = 8,
             seq_len: int = 32, process_index: int = 0, process_count: int = 1, self_teacher: bool = False):
    """Run `steps` train steps of the tiny model on `mesh` from a fixed init and fixed batches.

    Returns (list of metric dicts, {param path: host array}). The initial params are made on
    the host, so every mesh starts from the same numbers. `self_teacher`: an online teacher
    that is a frozen copy of the initial student."""
    import jax

    from orca_jax import partitioning
    from orca_jax.model.config import get_preset
    from orca_jax.train import trainer
    from orca_jax.train.optimizer import adamw_direction, learning_rate_schedule
    from orca_jax.train.summary import host_params

    config = get_preset("tiny").replace(vocab_size=VOCAB)
    rules = partitioning.logical_axis_rules()
    optimizer = adamw_direction(weight_decay=0.1)
    abstract, shardings = trainer.state_shardings(config, optimizer, mesh, rules)
    params = jax.device_put(initial_host_params(), shardings.params)
    state = trainer.TrainState(step=jax.device_put(np.int32(0), shardings.step), params=params,
                               opt_state=jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params))
    loss_cfg = loss_cfg or trainer.LossConfig(z_loss=1e-3)
    teacher_params = jax.device_put(initial_host_params(), shardings.params) if self_teacher else None
    step_fn = trainer.ShardedStep(
        trainer.make_train_step(config, optimizer, learning_rate_schedule(10, peak_lr=1e-4), loss_cfg, mesh=mesh,
                                rules=rules, num_microbatches=num_microbatches,
                                teacher_config=config if self_teacher else None),
        shardings, trainer.BATCH_KEYS, mesh, rules, shardings.params if self_teacher else None)
    loader = toy_loader("toy", seq_len=seq_len, global_batch_size=global_batch_size, seed=0,
                        process_index=process_index, process_count=process_count)
    metrics = []
    batches = trainer.device_batches(loader, mesh, rules, trainer.BATCH_KEYS)
    for _ in range(steps):
        state, m = step_fn(state, next(batches), teacher_params)
        metrics.append(trainer.to_host_scalars(m))
    return metrics, host_params(state.params)


def max_relative_difference(a: dict, b: dict) -> float:
    """max over parameter tensors of ||a - b|| / ||b|| (Frobenius norms; params share paths).

    Per tensor, not per element: Adam divides each gradient element by its own magnitude, so
    an element whose gradient is ~0 (a sum that cancels) turns rounding noise into a full step
    of its own, while the tensor as a whole agrees to fp32 rounding."""
    assert a.keys() == b.keys()
    return max(float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(b[k]), 1e-30)) for k in a)


def parse_tiny_gin(tmp_path, extra: str = "") -> None:
    """Parse TINY_GIN (+ extra lines) the way `orca-jax train` does, in this process."""
    from orca_jax.train import gin_setup
    path = os.path.join(str(tmp_path), "run.gin")
    with open(path, "w") as f:
        f.write(TINY_GIN + extra)
    gin_setup.parse([path], [f"MODEL_DIR = '{tmp_path}/unused'"])


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars {tag: [(step, value), ...]}, read with TensorFlow's own event reader."""
    import glob

    import pytest
    tf = pytest.importorskip("tensorflow")
    out = {}
    for path in glob.glob(f"{log_dir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


class PoisonedLoader:
    """A loader whose batch of step `at` (1-based) has NaN loss weights: that step's loss is NaN."""

    def __init__(self, inner, at):
        self.inner, self.at, self.count = inner, at, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = dict(next(self.inner))
        self.count += 1
        if self.count == self.at:
            batch["loss_weights"] = np.full_like(batch["loss_weights"], np.nan)
        return batch

    def state(self):
        return {"inner": self.inner.state(), "count": self.count}

    def restore(self, state):
        self.inner.restore(state["inner"])
        self.count = state["count"]


def poisoned_loader(at: int):
    """A train.loader_fn: toy_loader with NaN loss weights at step `at`."""
    return lambda name, **kwargs: PoisonedLoader(toy_loader(name, **kwargs), at)


class SigtermAt:
    """An eval hook that sends this process SIGTERM after step `step` (a preemption)."""

    def __init__(self, step: int):
        self.step, self.seen = step, []

    def __call__(self, params, step):
        from orca_jax.train.summary import params_sha256
        self.seen.append((step, params_sha256(params)))
        if step == self.step:
            os.kill(os.getpid(), __import__("signal").SIGTERM)
        return {}
