"""The sharded train step (gradient accumulation, CE + z-loss + distillation) and the loop
that runs one curriculum stage: restore, step, log, checkpoint, stop cleanly.

Sums, not means: the loss terms of every microbatch and device are added as
(sum, weight) and divided once by the batch's total loss weight, so splitting a batch
into microbatches or over devices changes nothing but rounding.

Given the loader's `source_names`, the step also reports each source's cross-entropy
(`loss/ce/<name>`, from the batch's `source_ids`), carried as (sum, weight) the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import time
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from orca_jax import partitioning
from orca_jax.errors import UserError
from orca_jax.model import decoder
from orca_jax.model.config import DecoderConfig
from orca_jax.train import losses
from orca_jax.train.optimizer import apply_learning_rate

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_weights")
TOPK_KEYS = ("teacher_topk_ids", "teacher_topk_logprobs")
SOURCE_KEYS = ("source_ids",)
SOURCE_LOSS_PREFIX = "loss/ce/"  # + a source name: that source's cross-entropy (NaN when absent from the batch)


class NonFiniteLossError(UserError):
    """The loss or gradient became NaN/inf; the last good checkpoint is kept."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Objective: (1 - kd_alpha) * CE + kd_alpha * tau^2 * KD + z_loss * z, per loss-weighted token.

    kd_source: None (plain CE), "online" (a frozen teacher model's logits) or "offline"
    (the batch's teacher_topk_ids / teacher_topk_logprobs).

    logits_chunk_size: compute the logits and every loss term this many positions at a time
    (recomputed in the backward pass), so the step never holds [batch, length, vocab] fp32
    logits; None or 0: all at once. Same loss and gradients up to rounding.
    """
    z_loss: float = 0.0
    kd_source: str | None = None
    kd_kind: str = "forward_kl"
    kd_alpha: float = 0.5
    kd_temperature: float = 1.0
    kd_beta: float = 0.5
    kd_missing_mass: str = "renormalize"
    logits_chunk_size: int | None = None

    def __post_init__(self):
        if self.kd_source not in (None, "online", "offline"):
            raise UserError(f"LossConfig.kd_source = {self.kd_source!r}: expected None, 'online' or 'offline'")
        if self.kd_kind not in losses.KD_KINDS:
            raise UserError(f"LossConfig.kd_kind = {self.kd_kind!r}: expected one of {losses.KD_KINDS}")
        if self.kd_missing_mass not in losses.MISSING_MASS:
            raise UserError(f"LossConfig.kd_missing_mass = {self.kd_missing_mass!r}: "
                            f"expected one of {losses.MISSING_MASS}")
        if not 0.0 <= self.kd_alpha <= 1.0 or self.kd_temperature <= 0:
            raise UserError("LossConfig: kd_alpha must be in [0, 1] and kd_temperature > 0")
        if self.logits_chunk_size is not None and self.logits_chunk_size < 0:
            raise UserError(f"LossConfig.logits_chunk_size = {self.logits_chunk_size}: expected a positive number "
                            "of positions, or None / 0 for unchunked logits")
        if self.logits_chunk_size and self.kd_source == "online":
            raise UserError("LossConfig.logits_chunk_size cannot be combined with kd_source = 'online': the "
                            "teacher's full logits are held anyway; use offline top-k distillation or no chunking")


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any


def loss_sums(cfg: LossConfig, logits, batch, teacher_logits=None, num_sources: int = 0) -> dict[str, jax.Array]:
    """Weighted sums of every loss term for one (micro)batch, and their objective; with
    `num_sources`, also the cross-entropy and weight sums per source `[num_sources]`."""
    w = batch["loss_weights"].astype(jnp.float32)
    weighted_nll = losses.token_cross_entropy(logits, batch["targets"]) * w
    sums = {"ce": jnp.sum(weighted_nll)}
    if num_sources:
        # one-hot over a small static count: a plain reduction, which shards like the batch
        # (padding's NO_SOURCE = -1 is an all-zero row)
        onehot = jax.nn.one_hot(batch["source_ids"], num_sources, dtype=jnp.float32)
        sums["ce_by_source"] = jnp.einsum("bt,bts->s", weighted_nll, onehot)
        sums["weight_by_source"] = jnp.einsum("bt,bts->s", w, onehot)
    objective = sums["ce"]
    if cfg.kd_source is not None:
        kd_args = dict(kind=cfg.kd_kind, temperature=cfg.kd_temperature, beta=cfg.kd_beta)
        if cfg.kd_source == "online":
            sums["kd"] = losses.kd_dense_sum(logits, teacher_logits, w, **kd_args)
        else:
            sums["kd"] = losses.kd_topk_sum(logits, batch["teacher_topk_ids"], batch["teacher_topk_logprobs"], w,
                                            missing_mass=cfg.kd_missing_mass, **kd_args)
        objective = (1.0 - cfg.kd_alpha) * sums["ce"] + cfg.kd_alpha * sums["kd"]
    if cfg.z_loss:
        sums["z"] = losses.z_loss_sum(logits, w)
        objective = objective + cfg.z_loss * sums["z"]
    sums["objective"] = objective
    return sums


def forward_loss_sums(model: decoder.Decoder, cfg: LossConfig, params, batch, teacher_logits=None,
                      num_sources: int = 0) -> dict[str, jax.Array]:
    """The student's forward pass and `loss_sums` on its logits, all at once or, with
    cfg.logits_chunk_size, chunk by chunk from the final hidden states."""
    inputs = (batch["inputs"], batch["positions"], batch["segment_ids"])
    if not cfg.logits_chunk_size:
        return loss_sums(cfg, model.apply({"params": params}, *inputs), batch, teacher_logits, num_sources)
    hidden = model.apply({"params": params}, *inputs, return_hidden=True)
    head, dtype = decoder.output_head(model.config, params), jnp.dtype(model.config.dtype)
    return losses.sum_over_chunks(
        lambda x, chunk: loss_sums(cfg, decoder.project(x, head, dtype), chunk, num_sources=num_sources),
        hidden, batch, cfg.logits_chunk_size)


def split_microbatches(batch: dict, num_microbatches: int, mesh, rules) -> dict:
    """[B, ...] -> [M, B/M, ...] taking every M-th row, so each device's microbatch rows are
    rows it already holds (no data moves between devices)."""
    batch_axes = partitioning.batch_sharding(mesh, rules).spec[0]

    def split(x):
        b = x.shape[0]
        y = x.reshape((b // num_microbatches, num_microbatches) + x.shape[1:]).swapaxes(0, 1)
        spec = PartitionSpec(None, batch_axes, *([None] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, spec))
    return {k: split(v) for k, v in batch.items()}


def make_train_step(model_config: DecoderConfig, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, loss_cfg: LossConfig, *, mesh, rules,
                    num_microbatches: int = 1, stage_start_step: int = 0,
                    teacher_config: DecoderConfig | None = None, source_names: Sequence[str] = ()) -> Callable:
    """train_step(state, batch, teacher_params) -> (state, metrics), not yet jitted.

    With `source_names` (the loader's), batches carry `source_ids` and the metrics each
    source's cross-entropy.

    A step whose loss or gradient is not finite leaves params and optimizer state as they
    were (metrics["finite"] says so); the loop then stops or skips."""
    model = decoder.Decoder(model_config)
    teacher = decoder.Decoder(teacher_config) if teacher_config is not None else None
    # Gradients and their accumulator pinned to the parameters' shardings (one shard per
    # device), whatever layout XLA's sharding propagation would pick for them.
    grad_shardings = param_shardings(model_config, mesh, rules)[1]
    like_params = functools.partial(jax.lax.with_sharding_constraint, shardings=grad_shardings)

    def microbatch_grads(params, teacher_params, mb):
        teacher_logits = None
        if teacher is not None:  # frozen: outside the differentiated function
            teacher_logits = teacher.apply({"params": teacher_params}, mb["inputs"], mb["positions"],
                                           mb["segment_ids"])

        def objective(p):
            sums = forward_loss_sums(model, loss_cfg, p, mb, teacher_logits, num_sources=len(source_names))
            return sums["objective"], sums
        (_, sums), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return like_params(grads), sums

    def train_step(state: TrainState, batch: dict, teacher_params):
        weight = jnp.sum(batch["loss_weights"].astype(jnp.float32))
        if num_microbatches == 1:
            grads, sums = microbatch_grads(state.params, teacher_params, batch)
        else:
            mbs = split_microbatches(batch, num_microbatches, mesh, rules)

            def body(carry, mb):
                # Tied to this microbatch, the (teacher's and student's) parameters are not
                # loop-invariant, so XLA cannot hoist their all-gathers out of the loop, which
                # would hold every layer's gathered weights for the whole accumulation; each
                # layer gathers its weights when it runs, as with one microbatch.
                params, frozen, mb = jax.lax.optimization_barrier((state.params, teacher_params, mb))
                g, s = microbatch_grads(params, frozen, mb)
                g_sum, s_sum = jax.tree_util.tree_map(jnp.add, carry, (g, s))
                return (like_params(g_sum), s_sum), None

            zero = jax.eval_shape(microbatch_grads, state.params, teacher_params,
                                  jax.tree_util.tree_map(lambda x: x[0], mbs))
            zero_grads, zero_sums = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), zero)
            (grads, sums), _ = jax.lax.scan(body, (like_params(zero_grads), zero_sums), mbs)
        # the single division: every term is a weighted sum over the whole global batch
        denom = jnp.maximum(weight, 1.0)
        grads = jax.tree_util.tree_map(lambda g: g / denom, grads)
        by_source = {}
        if source_names:
            ce, w = sums.pop("ce_by_source"), sums.pop("weight_by_source")
            ce = jnp.where(w > 0, ce / jnp.where(w > 0, w, 1.0), jnp.nan)
            by_source = {SOURCE_LOSS_PREFIX + name: ce[i] for i, name in enumerate(source_names)}
        means = {k: v / denom for k, v in sums.items()}
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(means["objective"]) & jnp.isfinite(grad_norm)

        directions, opt_state = optimizer.update(grads, state.opt_state, state.params)
        lr = schedule(state.step - stage_start_step)
        params = apply_learning_rate(state.params, directions, lr)
        keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                               opt_state=keep(opt_state, state.opt_state))
        metrics = {"loss": means["objective"], "grad_norm": grad_norm, "learning_rate": lr,
                   "loss_weight": weight, "finite": finite,
                   "nonpadding_tokens": jnp.sum(batch["segment_ids"] > 0),
                   **{f"loss/{k}": v for k, v in means.items() if k != "objective"}, **by_source}
        return new_state, metrics

    return train_step


class ShardedStep:
    """One compiled train step over a mesh: shardings from the logical-axis rules, donated state."""

    def __init__(self, step_fn: Callable, state_shardings, batch_keys, mesh, rules, teacher_shardings=None):
        self.mesh, self.rules = mesh, rules
        batch_sharding = partitioning.batch_sharding(mesh, rules)
        self.batch_shardings = {k: batch_sharding for k in batch_keys}
        self._jitted = jax.jit(step_fn, in_shardings=(state_shardings, self.batch_shardings, teacher_shardings),
                               out_shardings=(state_shardings, None), donate_argnums=0)

    def lower(self, state, batch, teacher_params=None):
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            return self._jitted.lower(state, batch, teacher_params)

    def __call__(self, state, batch, teacher_params=None):
        # Contexts matter at trace time: the model's activation constraints read them.
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            return self._jitted(state, batch, teacher_params)


def param_shardings(model_config: DecoderConfig, mesh, rules):
    """NamedShardings of the model's params, from their logical axis names and the rules."""
    abstract = jax.eval_shape(functools.partial(decoder.init_params, model_config), jax.random.key(0))
    boxed = jax.tree_util.tree_map(lambda a, spec: nn.LogicallyPartitioned(a, tuple(spec)),
                                   abstract, decoder.param_logical_axes(model_config))
    return abstract, partitioning.tree_shardings(boxed, mesh, rules)


def state_shardings(model_config: DecoderConfig, optimizer, mesh, rules):
    """(abstract TrainState, TrainState of NamedShardings) for this model and optimizer."""
    abstract_params, params_sharding = param_shardings(model_config, mesh, rules)
    abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    # moments mirror the params' shardings; counters and other scalars are replicated
    opt_shardings = optax.tree_map_params(optimizer, lambda _, s: s, abstract_opt, params_sharding,
                                          transform_non_params=lambda _: replicated)
    abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params, opt_state=abstract_opt)
    return abstract, TrainState(step=replicated, params=params_sharding, opt_state=opt_shardings)


def check_batch_divisible(global_batch_size: int, num_microbatches: int, mesh, rules) -> None:
    shards = partitioning.batch_shards(mesh, rules)
    if global_batch_size % (shards * num_microbatches):
        raise UserError(
            f"batch size {global_batch_size} must be divisible by the data-parallel shards ({shards}, "
            f"mesh {dict(mesh.shape)}) times the microbatches ({num_microbatches})")
    if global_batch_size % jax.process_count():
        raise UserError(f"batch size {global_batch_size} must be divisible by the {jax.process_count()} processes")


class GracefulStop:
    """Turns SIGTERM (preemption) into a flag the loop checks between steps."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, nothing to restore
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def agreed(self) -> bool:
        """Whether any process was asked to stop: all must save the same step together."""
        if jax.process_count() == 1:
            return self.requested
        return bool(np.max(multihost_utils.process_allgather(np.int32(self.requested))))

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def device_batches(loader: Iterator[dict], mesh, rules, keys) -> Iterator[dict]:
    """Host batches from the loader -> global device arrays with the batch sharding."""
    for batch in loader:
        missing = [k for k in keys if k not in batch]
        if missing:
            raise UserError(f"the data loader's batches lack {missing}; they have {sorted(batch)}")
        yield partitioning.global_batch({k: batch[k] for k in keys}, mesh, rules)


def to_host_scalars(metrics: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


@dataclasses.dataclass
class StageResult:
    state: TrainState
    last_metrics: dict[str, float]
    tokens_seen: int
    wall_seconds: float
    skipped_steps: int
    preempted: bool


class HostMetrics:
    """Each step's device metrics, held on the device and read back to the host in one transfer
    when `read` is called: reading waits for the step to finish, and a host that waits after
    every step cannot enqueue the next one while the device works.

    `read` hands every pending step's metrics, in step order, to what reads them per step
    (tokens seen, skipped steps, the monitor), exactly as reading each step would, and raises
    NonFiniteLossError at the first non-finite step unless `skip_nonfinite`."""

    def __init__(self, monitor, checkpointer, skip_nonfinite: bool, tokens: int):
        self.monitor, self.checkpointer, self.skip_nonfinite = monitor, checkpointer, skip_nonfinite
        self.tokens, self.skipped, self.last = tokens, 0, {}
        self._pending: list[tuple[int, dict, int]] = []  # (step, device metrics, batch slots)

    def add(self, step: int, device_metrics: dict, batch_slots: int) -> None:
        self._pending.append((step, device_metrics, batch_slots))

    def read(self) -> None:
        pending, self._pending = self._pending, []
        for (step, _, slots), values in zip(pending, jax.device_get([m for _, m, _ in pending])):
            metrics = to_host_scalars(values)
            if not metrics["finite"]:
                if not self.skip_nonfinite:
                    self.checkpointer.wait()
                    raise NonFiniteLossError(
                        f"loss is {metrics['loss']} (gradient norm {metrics['grad_norm']}) at step {step}; "
                        f"stopped, the last good checkpoint is kept in {self.checkpointer.directory} "
                        f"(set train.skip_nonfinite = True to skip such steps instead)")
                self.skipped += 1  # the step itself left params and optimizer state unchanged
            self.tokens += int(metrics["nonpadding_tokens"])
            self.monitor.step(step, metrics, slots)
            self.last = metrics


def run_steps(step_fn: ShardedStep, state: TrainState, loader, *, first_step: int, last_step: int,
              keys, teacher_params, checkpointer, progress: Callable[[int], dict], monitor,
              tokens_before: int = 0,
              skip_nonfinite: bool = False, eval_fn: Callable | None = None, eval_every: int | None = None,
              stop: GracefulStop | None = None, metrics_every_steps: int = 1) -> StageResult:
    """Steps first_step+1 .. last_step; checkpoint after each due step and on SIGTERM.

    Metrics are read back to the host every `metrics_every_steps` steps and at each of the
    monitor's log steps, and always before a checkpoint, an eval and the stage's end; a SIGTERM
    is honoured at the next such step: a checkpoint is only written once every step up to it is known finite.
    `progress(tokens_seen)` gives the JSON saved with each checkpoint (it reads the loader's
    state, which at that point has produced exactly the batches of the steps taken).
    Tokens count non-padding tokens since the stage began (`tokens_before` at `first_step`).
    """
    start = time.perf_counter()
    host = HostMetrics(monitor, checkpointer, skip_nonfinite, tokens_before)
    batches = device_batches(loader, step_fn.mesh, step_fn.rules, keys)
    for step in range(first_step + 1, last_step + 1):
        batch = next(batches, None)
        if batch is None:
            raise UserError(f"the data ran out at step {step} of {last_step}; use fewer steps or more epochs")
        state, device_metrics = step_fn(state, batch, teacher_params)
        host.add(step, device_metrics, int(np.prod(batch["inputs"].shape)))
        save = checkpointer.due(step)
        evaluate = eval_fn is not None and eval_every and step % eval_every == 0
        # a logged throughput window must end at a read: only then is the device known to be done
        read = save or evaluate or step == last_step or step % metrics_every_steps == 0 or step % monitor.log_every == 0
        if read:
            host.read()
        if save:
            checkpointer.save(step, state.params, state.opt_state, progress(host.tokens))
        if evaluate:
            monitor.scalars(step, {f"eval/{k}": v for k, v in eval_fn(state.params, step).items()})
        # at a stage's last step the stage simply ends (summary, stage checkpoint); the next
        # stage's first step then honours the request. Asked only at read steps, the same on
        # every process, so stopping adds no collective to the steps in between.
        if stop is not None and step < last_step and read and stop.agreed():
            checkpointer.save(step, state.params, state.opt_state, progress(host.tokens), force=True)
            checkpointer.wait()
            return StageResult(state, host.last, host.tokens, time.perf_counter() - start, host.skipped, True)
    return StageResult(state, host.last, host.tokens, time.perf_counter() - start, host.skipped, False)
