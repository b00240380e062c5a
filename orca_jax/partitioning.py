"""Device mesh (data, fsdp, tensor), logical-axis rules and shardings, multi-host setup.

Params and activations carry logical axis names (vocab, embed, mlp, heads, kv_heads,
head_dim, norm, batch, length); the rules here (MaxText-style, overridable in gin) map
them to the three mesh axes. Everything the trainer places on devices gets its
sharding from these functions, so one code path serves 1 CPU, 8 simulated CPUs,
several processes, a GPU host and a TPU pod.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from orca_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")

# Batch is split over both data-parallel axes (fsdp shards params *and* data, as in
# ZeRO-3); weights are split over fsdp along `embed` and over tensor along the
# per-head / hidden / vocab dimensions.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
)


@gin.configurable
def mesh_shape(data: int = -1, fsdp: int = 1, tensor: int = 1) -> tuple[int, int, int]:
    """Mesh axis sizes from gin; one of them may be -1 to take the remaining devices."""
    return (data, fsdp, tensor)


@gin.configurable
def logical_axis_rules(rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> tuple:
    """The logical-name -> mesh-axis rules, as a tuple of pairs (gin can replace them)."""
    out = []
    for name, target in rules:
        out.append((name, tuple(target) if isinstance(target, list) else target))
    return tuple(out)


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Fill a single -1 and check that the sizes multiply to the device count."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(MESH_AXES):
        raise UserError(f"mesh shape {shape}: expected {len(MESH_AXES)} sizes for axes {MESH_AXES}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise UserError(f"mesh shape {shape}: sizes must be positive, with at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise UserError(
                f"mesh shape {dict(zip(MESH_AXES, shape))}: the fixed axes ({known} devices) "
                f"do not divide the {num_devices} available devices")
        shape = tuple(num_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) != num_devices:
        raise UserError(
            f"mesh shape {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices, "
            f"but {num_devices} are available")
    return shape


def make_mesh(shape: Sequence[int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over all (or the given) devices with axes data, fsdp, tensor."""
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(mesh_shape() if shape is None else shape, len(devices))
    # Auto axes: shardings come from in/out shardings and logical constraints, and
    # XLA propagates the rest (explicit-sharding mode would type every op instead).
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def logical_to_sharding(logical_spec: PartitionSpec, mesh: Mesh, rules) -> NamedSharding:
    return NamedSharding(mesh, nn.logical_to_mesh_axes(tuple(logical_spec), rules))


def tree_shardings(boxed_tree: Any, mesh: Mesh, rules) -> Any:
    """NamedShardings for a tree of (abstract) values boxed by nn.with_logical_partitioning.

    Leaves without logical names are replicated. A dimension that its mesh axes do not
    divide is a configuration error, reported with the parameter's path.
    """
    specs = nn.get_partition_spec(boxed_tree)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    values = nn.unbox(boxed_tree)

    def check(path, value, sharding):
        for dim, axes in zip(value.shape, sharding.spec):
            if axes is None:
                continue
            size = math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)))
            if dim % size:
                raise UserError(
                    f"{jax.tree_util.keystr(path)} has shape {tuple(value.shape)}: dimension {dim} "
                    f"cannot be split over mesh axes {axes} of size {size}; change the mesh or the rules")
        return sharding

    return jax.tree_util.tree_map_with_path(check, values, shardings)


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
    """Sharding of [batch, length] input arrays."""
    return logical_to_sharding(PartitionSpec("batch", "length"), mesh, rules)


def batch_shards(mesh: Mesh, rules) -> int:
    """Into how many pieces the batch dimension is split on this mesh."""
    axes = batch_sharding(mesh, rules).spec[0]
    if axes is None:
        return 1
    return math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh, rules) -> dict[str, jax.Array]:
    """Assemble global arrays from this process's rows (process p holds rows p*n:(p+1)*n)."""
    sharding = batch_sharding(mesh, rules)
    out = {}
    for name, local in local_batch.items():
        local = np.asarray(local)
        global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
        spec = PartitionSpec(*sharding.spec[: local.ndim])
        out[name] = jax.make_array_from_process_local_data(NamedSharding(mesh, spec), local, global_shape)
    return out


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, auto_detect: bool = False) -> None:
    """Join a multi-process run. With `auto_detect` and no addresses, JAX's own cluster
    detection (SLURM, Open MPI, TPU pods, ...) supplies them; with neither, stay single-process.

    CPU collectives across processes go through gloo (the CPU backend JAX ships).
    """
    if coordinator_address is None and num_processes is None and process_id is None and not auto_detect:
        return
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") != "gloo":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
