"""Ahead-of-time plans for training runs: compile the real train step for a mesh of simulated
devices and report per-device memory, FLOPs, step time and curriculum wall time.

Nothing here touches data or weights: parameters, optimizer state and the batch are
`jax.ShapeDtypeStruct`s carrying the shardings the trainer would give them, and the train
step is the trainer's own (`trainer.make_train_step` + `trainer.ShardedStep`), lowered and
compiled for N CPU devices. Memory comes from the compiled executable's buffer assignment
(`memory_analysis()`, per device), FLOPs from `cost_analysis()` and from the analytic
6N-per-token count (plus attention, PaLM appendix B) that MFU is defined against.

API:
    hardware(devices, hbm_gib, peak_tflops, mfu, name)   gin: the target machine (partitioning presets)
    dataset_sizes(examples, mean_tokens, packing_efficiency)   gin: per-mixture sizes for stage estimates
    use_simulated_devices(n)        # before JAX starts: n CPU devices stand in for the target mesh
    make_plan(hbm_gib=None, peak_tflops=None, mfu=None) -> Plan   # after gin is parsed; uses jax.devices()
    Plan.to_dict(), format_plan(plan) -> str, Plan.check_fits()  (UserError naming the shortfall)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import gin
import jax
import jax.numpy as jnp
import numpy as np

from orca_jax import partitioning
from orca_jax.errors import UserError
from orca_jax.model.config import DecoderConfig
from orca_jax.train import curriculum, gin_setup, run_build
from orca_jax.train.monitor import train_flops_per_token

GIB = 1024 ** 3
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
# XLA:CPU's default concurrency-optimised scheduler runs every layer's rematerialised forward
# early, so all layers' activations are live at once and remat seems to save nothing; the
# memory-minimising scheduler orders them as GPU/TPU compilers do under memory pressure.
MEMORY_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Hardware:
    """The machine a run targets. Partitioning presets set these; the command line overrides them."""
    name: str = ""
    devices: int | None = None
    hbm_gib: float | None = None
    peak_tflops: float | None = None  # dense bf16 per device
    mfu: float = 0.4  # assumed model-FLOPs utilisation for the step-time estimate


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DatasetSizes:
    """Per-mixture example counts and mean tokens per example (chat template included), keyed by
    the stage's mixture_or_task_name; packing_efficiency is the non-padding share of packed rows."""
    examples: dict | None = None
    mean_tokens: dict | None = None
    packing_efficiency: float = 0.98


@dataclasses.dataclass
class StageEstimate:
    name: str
    mixture: str
    epochs: float | None
    examples: int | None
    steps: int | None
    tokens: int | None  # rows x sequence length actually processed (padding included)
    hours: float | None


@dataclasses.dataclass
class Plan:
    hardware: str
    devices: int
    mesh: dict
    model: dict
    sequence_length: int
    batch_size: int
    num_microbatches: int
    attention_impl: str
    params_gib: float
    optimizer_gib: float
    batch_gib: float
    arguments_gib: float
    outputs_gib: float
    aliased_gib: float
    temporaries_gib: float
    gathered_weights_gib: float
    total_gib: float
    hbm_gib: float | None
    xla_flops_per_device: float
    model_flops_per_step: float
    six_nd_flops_per_step: float
    peak_tflops: float | None
    mfu: float
    step_seconds: float | None
    tokens_per_second: float | None
    stages: list[StageEstimate]
    compile_seconds: float
    notes: list[str]

    @property
    def fits(self) -> bool:
        return self.hbm_gib is None or self.total_gib <= self.hbm_gib

    def check_fits(self) -> None:
        if not self.fits:
            raise UserError(shortfall_message(self.total_gib, self.hbm_gib, {
                "parameters": self.params_gib, "optimizer state": self.optimizer_gib, "batch": self.batch_gib,
                "temporaries": self.temporaries_gib}, self.devices, self.mesh))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fits"] = self.fits
        return d


def _gib(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.3g}"


def shortfall_message(need_gib: float, hbm_gib: float, parts: dict[str, float], devices: int, mesh: dict) -> str:
    detail = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items())
    return (f"does not fit: needs {_gib(need_gib)} GiB per device ({detail}) but the devices have {hbm_gib:g} GiB, "
            f"short by {_gib(need_gib - hbm_gib)} GiB on {devices} devices (mesh {mesh}); use more devices, "
            f"shard more (fsdp), remat, or more microbatches")


def use_simulated_devices(n: int) -> None:
    """Make JAX's CPU backend present `n` devices (the mesh being planned) and schedule for
    memory. Must run before JAX initialises a backend (XLA_FLAGS is read then)."""
    if n < 1:
        raise UserError(f"--devices {n}: expected a positive device count")
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith((DEVICE_COUNT_FLAG, MEMORY_SCHEDULER_FLAG))]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"{DEVICE_COUNT_FLAG}={n}", f"{MEMORY_SCHEDULER_FLAG}=false"])
    try:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backend already up (e.g. a second plan in one process)
        if jax.default_backend() != "cpu" or jax.device_count() != n:
            raise UserError(f"plan needs {n} CPU devices but JAX already started with {jax.device_count()} "
                            f"{jax.default_backend()} devices; run it in a fresh process") from None


def _per_device_bytes(tree, shardings) -> int:
    """Bytes one device holds of a sharded tree (the largest shard of each leaf)."""
    leaves = jax.tree_util.tree_leaves(tree)
    specs = jax.tree_util.tree_leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
    return sum(math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize for x, s in zip(leaves, specs))


def _with_shardings(tree, shardings):
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def abstract_batch(keys, batch_size: int, seq_len: int, sharding) -> dict:
    """ShapeDtypeStructs of a packed batch as the loader yields it."""
    return {k: jax.ShapeDtypeStruct((batch_size, seq_len), jnp.float32 if k == "loss_weights" else jnp.int32,
                                    sharding=sharding) for k in keys}


def gathered_weights_bytes(params, config: DecoderConfig, mesh) -> int:
    """All weights in the compute dtype, split only over `tensor`: what FSDP all-gathers per
    device over a step. XLA:CPU keeps each layer's gathered copy from forward to backward, so
    up to this much of the temporaries is weights, not activations."""
    itemsize = np.dtype(config.dtype).itemsize
    return sum(x.size for x in jax.tree_util.tree_leaves(params)) * itemsize // mesh.shape["tensor"]


def stage_estimates(stages, sizes: DatasetSizes, batch_size: int, seq_len: int,
                    step_seconds: float | None) -> list[StageEstimate]:
    out = []
    for s in stages:
        examples = (sizes.examples or {}).get(s.mixture_or_task_name)
        mean_tokens = (sizes.mean_tokens or {}).get(s.mixture_or_task_name)
        steps = s.train_steps
        if steps is None and s.epochs is not None and examples and mean_tokens:
            rows_per_epoch = math.ceil(examples * mean_tokens / (seq_len * sizes.packing_efficiency))
            steps = max(1, round(s.epochs * math.ceil(rows_per_epoch / batch_size)))
        tokens = steps * batch_size * seq_len if steps is not None else None
        hours = steps * step_seconds / 3600 if steps is not None and step_seconds else None
        out.append(StageEstimate(s.name, s.mixture_or_task_name, s.epochs, examples, steps, tokens, hours))
    return out


def make_plan(hbm_gib: float | None = None, peak_tflops: float | None = None, mfu: float | None = None) -> Plan:
    """Plan the gin-configured run on the current devices (parse gin first).

    Raises UserError before compiling when parameters, optimizer state and batch alone exceed
    `hbm_gib` per device; a plan whose compiled total exceeds it has `fits == False`."""
    hw = Hardware()
    hbm_gib = hbm_gib if hbm_gib is not None else hw.hbm_gib
    peak_tflops = peak_tflops if peak_tflops is not None else hw.peak_tflops
    mfu = mfu if mfu is not None else hw.mfu
    config = gin_setup.call(curriculum.RunConfig)
    model: DecoderConfig = config.model
    notes = []
    if model.attention_impl != "xla" and jax.default_backend() == "cpu":
        # GPU/TPU kernels cannot be compiled for CPU; XLA attention materialises the
        # [batch, heads, seq, seq] scores that flash kernels avoid, so temporaries are an upper bound.
        notes.append(f"attention compiled as 'xla' instead of {model.attention_impl!r} (CPU compile); "
                     f"temporaries include dense attention scores")
        model = model.replace(attention_impl="xla")
    seq_len, batch_size, num_microbatches = config.sequence_length, config.batch_size, config.num_microbatches
    if config.loss.kd_source is not None:
        raise UserError(f"plan: LossConfig.kd_source = {config.loss.kd_source!r} is not planned (only the "
                        f"cross-entropy step); plan with --gin.LossConfig.kd_source=None")

    layout = run_build.Layout.build(config, model)
    mesh = layout.mesh
    abstract, shardings = layout.state
    batch = abstract_batch(layout.batch_keys(), batch_size, seq_len, partitioning.batch_sharding(mesh, layout.rules))

    params_b = _per_device_bytes(abstract.params, shardings.params)
    opt_b = _per_device_bytes(abstract.opt_state, shardings.opt_state)
    batch_b = _per_device_bytes(batch, [b.sharding for b in batch.values()])
    mesh_dict = dict(mesh.shape)
    static_gib = (params_b + opt_b + batch_b) / GIB
    if hbm_gib is not None and static_gib > hbm_gib:
        raise UserError(shortfall_message(static_gib, hbm_gib, {
            "parameters": params_b / GIB, "optimizer state": opt_b / GIB, "batch": batch_b / GIB},
            mesh.size, mesh_dict) + " (before temporaries)")

    step_fn = layout.train_step(config.stages[0].schedule(1000))
    state = _with_shardings(abstract, shardings)
    start = time.perf_counter()
    compiled = step_fn.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if num_microbatches > 1:
        notes.append("XLA's FLOP count covers one microbatch of the accumulation loop")

    total_b = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
               + mem.temp_size_in_bytes + mem.generated_code_size_in_bytes)
    tokens_per_step = batch_size * seq_len
    model_flops = layout.flops_per_token() * tokens_per_step
    # the attention term grows with the sequence; at length 0 the count is the 6N of 6ND
    six_nd_flops = train_flops_per_token(model, 0) * tokens_per_step
    step_seconds = model_flops / (mesh.size * peak_tflops * 1e12 * mfu) if peak_tflops else None
    plan = Plan(
        hardware=hw.name, devices=mesh.size, mesh=mesh_dict,
        model={k: getattr(model, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                                             "num_heads", "num_kv_heads", "dtype", "remat_policy")},
        sequence_length=seq_len, batch_size=batch_size, num_microbatches=num_microbatches,
        attention_impl=model.attention_impl,
        params_gib=params_b / GIB, optimizer_gib=opt_b / GIB, batch_gib=batch_b / GIB,
        arguments_gib=mem.argument_size_in_bytes / GIB, outputs_gib=mem.output_size_in_bytes / GIB,
        aliased_gib=mem.alias_size_in_bytes / GIB, temporaries_gib=mem.temp_size_in_bytes / GIB,
        gathered_weights_gib=gathered_weights_bytes(abstract.params, model, mesh) / GIB,
        total_gib=total_b / GIB, hbm_gib=hbm_gib,
        xla_flops_per_device=float(cost.get("flops", float("nan"))),
        model_flops_per_step=model_flops, six_nd_flops_per_step=six_nd_flops,
        peak_tflops=peak_tflops, mfu=mfu, step_seconds=step_seconds,
        tokens_per_second=tokens_per_step / step_seconds if step_seconds else None,
        stages=stage_estimates(config.stages, DatasetSizes(), batch_size, seq_len, step_seconds),
        compile_seconds=compile_seconds, notes=notes)
    return plan


def format_plan(plan: Plan) -> str:
    m = plan.model
    lines = [
        f"plan: {plan.hardware or 'devices'} x{plan.devices}, mesh {plan.mesh}; compiled estimate, not a measured run",
        f"model: {m['num_layers']} layers, d {m['hidden_size']}, ffn {m['intermediate_size']}, heads "
        f"{m['num_heads']}/{m['num_kv_heads']}, vocab {m['vocab_size']}, {m['dtype']} compute, remat {m['remat_policy']}",
        f"batch: {plan.batch_size} x {plan.sequence_length} tokens, {plan.num_microbatches} microbatch(es)",
        "per-device memory (GiB):",
        f"  parameters {plan.params_gib:8.2f}   optimizer state {plan.optimizer_gib:8.2f}   batch {plan.batch_gib:6.3f}",
        f"  compiled: arguments {plan.arguments_gib:.2f} + outputs {plan.outputs_gib:.2f} - aliased "
        f"{plan.aliased_gib:.2f} + temporaries {plan.temporaries_gib:.2f} = {plan.total_gib:.2f}",
        f"  (all weights gathered in {m['dtype']}: {plan.gathered_weights_gib:.2f}; XLA:CPU holds them "
        f"from forward to backward; TPU/GPU compilers' schedules likely need less)",
    ]
    if plan.hbm_gib is not None:
        lines.append(f"  fits in {plan.hbm_gib:g} GiB: {'yes' if plan.fits else 'NO'} "
                     f"({plan.hbm_gib - plan.total_gib:+.2f} GiB headroom)")
    lines.append(f"FLOPs per step: model {plan.model_flops_per_step:.3e} (6ND {plan.six_nd_flops_per_step:.3e}); "
                 f"XLA per device {plan.xla_flops_per_device:.3e}")
    if plan.step_seconds:
        lines.append(f"step time at {plan.peak_tflops:g} TFLOP/s per device and MFU {plan.mfu:.0%}: "
                     f"{plan.step_seconds:.2f} s ({plan.tokens_per_second:,.0f} tokens/s)")
    for s in plan.stages:
        steps = f"{s.steps:,} steps" if s.steps is not None else "steps unknown (set DatasetSizes)"
        tokens = f", {s.tokens / 1e9:.2f}B tokens" if s.tokens is not None else ""
        hours = f", {s.hours:.1f} h" if s.hours is not None else ""
        lines.append(f"stage {s.name} ({s.mixture}, {s.epochs} epochs): {steps}{tokens}{hours}")
    lines.extend(f"note: {n}" for n in plan.notes)
    lines.append(f"compile time: {plan.compile_seconds:.1f} s")
    return "\n".join(lines)
